#!/usr/bin/env bash
# Print one secret's value from AWS Secrets Manager, or fail loudly (non-zero, nothing on stdout).
#
#   usage: fetch_secret.sh SECRET_ID [REGION]
#
# The start commands of ray_cluster.yaml export its output for the Ray processes and stop when it
# fails, so no node ever runs with an empty OPENAI_API_KEY. The value is never printed to stderr.
set -euo pipefail

if [ $# -lt 1 ] || [ -z "$1" ]; then
  echo "usage: fetch_secret.sh SECRET_ID [REGION]" >&2
  exit 2
fi
secret_id=$1
region=${2:-${AWS_DEFAULT_REGION:-us-west-2}}

fail() {
  echo "fetch_secret.sh: cannot use secret '$secret_id' of AWS Secrets Manager ($region): $1." \
    "Fix: create it (aws secretsmanager create-secret --name $secret_id --secret-string ...)," \
    "allow this node's instance profile secretsmanager:GetSecretValue on it (cluster/iam/)," \
    "or drop the key's lines from ray_cluster.yaml if no stage uses the openai backend" >&2
  exit 1
}

command -v aws >/dev/null 2>&1 || fail "the aws CLI is not installed on this node"
if ! value=$(aws secretsmanager get-secret-value --region "$region" --secret-id "$secret_id" \
  --query SecretString --output text); then
  fail "the read failed (the aws error is above)"
fi
if [ -z "${value//[[:space:]]/}" ] || [ "$value" = "None" ]; then
  fail "its SecretString is empty or missing"
fi
printf '%s' "$value"
