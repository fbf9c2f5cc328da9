"""``core.secrets``: which names and values are secret, and URLs with their credentials redacted."""

from __future__ import annotations

import pytest

from core import runtime
from core.secrets import is_secret_name, looks_like_key, redact_url


@pytest.mark.parametrize(
    "value",
    [
        "sk-proj-" + "a1B2c3D4e5F6g7H8i9J0",
        "sk-ant-api03-" + "xY9" * 8,
        "--annotate.text.api_key=sk-" + "Q1w2E3r4T5y6U7i8O9p0",
        "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz",
        "AKIA" + "ABCDEFGHIJKLMNOP",
        "ASIA" + "0123456789ABCDEF",
        "ghp_" + "a1" * 18,
        "github_pat_" + "11AAAAAAA0" * 3,
        "-----BEGIN OPENSSH PRIVATE KEY-----",
    ],
)
def test_key_shaped_values(value):
    assert looks_like_key(value)


@pytest.mark.parametrize(
    "value",
    [
        "s3://bucket/mask-generation-results-2024",  # "sk-" inside a word
        "sk-learn-compatible-estimators",  # no digit: a word, not a key
        "s3://b/sk-learn-results-2024-01",  # no upper-case letter: a path, not a key
        "hf_model_repository_files",
        "hf_hub_download",
        "AKIA-short",
        "false",
        "",
    ],
)
def test_ordinary_values(value):
    assert not looks_like_key(value)


def test_secret_names_are_classified_in_one_place():
    for name in ("HF_TOKEN", "OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD", "GCP_CREDENTIALS"):
        assert is_secret_name(name)
    for name in ("AWS_ENDPOINT_URL", "HF_HOME", "AWS_DEFAULT_REGION"):
        assert not is_secret_name(name)
    assert runtime.is_secret is is_secret_name  # core.runtime uses the same rule


def test_redact_url():
    assert redact_url("https://user:s3cr3t@example.com:8443/p?q=1") == "https://***@example.com:8443/p?q=1"
    assert redact_url("http://ghp_token@github.com/x") == "http://***@github.com/x"
    assert redact_url("http://127.0.0.1:8265") == "http://127.0.0.1:8265"
    assert redact_url("not a url") == "not a url"
