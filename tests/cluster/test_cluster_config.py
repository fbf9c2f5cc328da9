"""The shipped cluster files: ``ray_cluster.yaml`` passes Ray's own cluster-config validation and keeps
the security settings; the KubeRay manifest and the Grafana dashboard agree with the code."""

from __future__ import annotations

import copy
import fnmatch
import json
import re
import shlex
import subprocess
from pathlib import Path
from unittest.mock import ANY, MagicMock, patch

import jsonschema
import pytest
import yaml

from core import metrics, placement

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_YAML = ROOT / "ray_cluster.yaml"


@pytest.fixture(scope="module")
def launcher() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def test_ray_cluster_yaml_passes_rays_validation(launcher):
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(launcher)  # what `ray up` does before it touches AWS
    validate_config(prepared)
    assert prepared["provider"]["type"] == "aws"
    bad_type = {"min_workers": 0, "resources": {"decode": -1}}  # negative resource, no node_config
    broken = dict(launcher, available_node_types={**launcher["available_node_types"], "cpu_worker": bad_type})
    with pytest.raises(jsonschema.ValidationError):  # the validation really checks
        validate_config(prepare_config(broken))


def test_node_types_carry_the_resources_the_stages_ask_for(launcher):
    types = launcher["available_node_types"]
    head = types[launcher["head_node_type"]]
    assert head["resources"] == {"CPU": 0}  # no heavy tasks on the head
    workers = {name: t for name, t in types.items() if name != launcher["head_node_type"]}
    decode = [t for t in workers.values() if placement.DECODE in t["resources"]]
    llm = [t for t in workers.values() if placement.LLM in t["resources"]]
    assert len(decode) == 1 and len(llm) == 1 and decode[0] is not llm[0]
    assert not decode[0]["node_config"]["InstanceType"].startswith(("g", "p"))  # CPU instances decode
    assert llm[0]["node_config"]["InstanceType"].startswith(("g", "p"))  # GPU instances hold the models
    assert all(t["min_workers"] == 0 and t["max_workers"] > 0 for t in workers.values())  # from 0
    assert launcher["idle_timeout_minutes"] > 0


def _start_commands(launcher) -> list[str]:
    commands = launcher["head_start_ray_commands"] + launcher["worker_start_ray_commands"]
    return [" ".join(c.split()) for c in commands if "ray start" in c]


def test_security_settings(launcher):
    starts = _start_commands(launcher)
    assert len(starts) == 2
    for cmd in starts:  # token auth for every Ray process, the token from a file, never inline
        assert "export RAY_AUTH_MODE=token" in cmd
        assert cmd.index("RAY_AUTH_MODE=token") < cmd.index("ray start")
        assert "RAY_AUTH_TOKEN_PATH=" in cmd and "RAY_AUTH_TOKEN=" not in cmd
        assert "0.0.0.0" not in cmd
    head = next(c for c in starts if "--head" in c)
    assert "--dashboard-host=127.0.0.1" in head  # reached through `ray dashboard` (SSH tunnel) only
    assert "~/.ray/auth_token" in launcher["file_mounts"]
    assert "security_group" not in launcher["provider"]  # Ray would add SSH from 0.0.0.0/0 (see below)
    text = CLUSTER_YAML.read_text()
    assert not re.search(r"(AKIA[0-9A-Z]{12,}|sk-[A-Za-z0-9]{16,}|aws_secret_access_key)", text, re.I)


def test_setup_installs_emer_with_the_pinned_ray(launcher):
    import ray

    setup = " ".join(launcher["setup_commands"])
    assert "-e ~/emer" in setup and f"ray[default,data,train]=={ray.__version__}" in setup
    assert {".venv", ".git"} <= set(launcher["rsync_exclude"])


def test_vllm_is_installed_on_gpu_nodes_only(launcher):
    """A node type's worker_setup_commands replace the common ones (Ray's autoscaler), so the GPU
    type repeats them, then installs the vllm pin of pyproject's extra; no other node gets vllm."""
    import tomllib

    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["vllm"]
    (pin,) = [d.split("#")[0].strip() for d in extra]
    assert re.fullmatch(r"vllm==\d+\.\d+\.\d+", pin)
    gpu = launcher["available_node_types"]["gpu_worker"]["worker_setup_commands"]
    common = launcher["setup_commands"]
    assert gpu[: len(common)] == common and gpu[len(common) :] == [f'~/venv/bin/pip install -q "{pin}"']
    others = [launcher[k] for k in ("setup_commands", "head_setup_commands", "worker_setup_commands")]
    others += [
        t.get("worker_setup_commands", [])
        for n, t in launcher["available_node_types"].items()
        if n != "gpu_worker"
    ]
    assert not any("vllm" in c for cmds in others for c in cmds)
    docs = list(yaml.safe_load_all((ROOT / "cluster" / "kuberay-rayjob.yaml").read_text()))
    spec = next(d for d in docs if d["kind"] == "RayJob")["spec"]["rayClusterSpec"]
    images = {
        g["groupName"]: g["template"]["spec"]["containers"][0]["image"] for g in spec["workerGroupSpecs"]
    }
    images["head"] = spec["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]
    assert {n for n, image in images.items() if "vllm" in image} == {"gpu-llm"}


# Mounts `ray up` adds itself (ray/autoscaler/_private/commands.py): the SSH key Ray made for the
# cluster (~/.ssh/ray-autoscaler_<region>.pem) and the bootstrap config; rsync_exclude applies to them.
RAY_OWN_MOUNTS = {
    "~/ray_bootstrap_key.pem": "~/.ssh/ray-autoscaler_us-west-2.pem",
    "~/ray_bootstrap_config.yaml": "/tmp/ray-bootstrap-x",
}


def test_the_cluster_launcher_syncs_no_secret_files(launcher):
    """#13/1: `ray up` rsyncs a bundle of git-tracked files (make cluster-bundle), never the folder."""
    from cluster import shipping

    bundle = launcher["file_mounts"]["~/emer"]
    assert Path(bundle) == Path("build/cluster-bundle")  # not "." (untracked .env, keys, tokens…)
    assert re.search(
        rf"^cluster-bundle:.*\n\t.*-m cluster\.shipping bundle {re.escape(str(Path(bundle)))}$",
        (ROOT / "Makefile").read_text(),
        re.M,
    )
    excluded = launcher["rsync_exclude"]  # defence in depth, if the mount is ever pointed at "."
    assert set(shipping.SECRET_FILE_PATTERNS) - {"*.pem", "auth_token"} <= set(excluded)
    assert ".gitignore" in launcher["rsync_filter"]
    mounts = {**launcher["file_mounts"], **RAY_OWN_MOUNTS}  # rsync_exclude must not drop these
    for remote, local in mounts.items():
        for name in (Path(remote).name, Path(local).name):
            assert not [p for p in excluded if fnmatch.fnmatch(name, p)], (remote, local)


def _ray_security_group_step(config: dict) -> tuple[dict, list[dict]]:
    """Ray's own security-group step of `ray up` (aws/config.py ``_configure_security_group``) on fake
    EC2 clients: the configured node types and every inbound rule Ray would authorize."""
    from ray.autoscaler._private.aws import config as aws_config

    config = copy.deepcopy(config)
    for node_type in config["available_node_types"].values():  # as _configure_subnet leaves them
        node_type["node_config"].setdefault("SubnetIds", ["subnet-test"])
    groups: list[MagicMock] = []
    ec2, client = MagicMock(), MagicMock()
    ec2.subnets.filter.return_value = [MagicMock(vpc_id="vpc-test")]
    ec2.security_groups.filter.side_effect = lambda **kw: list(groups)
    client.create_security_group.side_effect = lambda **kw: groups.append(
        MagicMock(id="sg-made-by-ray", group_name=kw["GroupName"], vpc_id=kw["VpcId"], ip_permissions=[])
    )
    with (
        patch.object(aws_config, "_resource", return_value=ec2),
        patch.object(aws_config, "_client", return_value=client),
    ):
        configured = aws_config._configure_security_group(config)
    rules = [r for g in groups for c in g.authorize_ingress.call_args_list for r in c.kwargs["IpPermissions"]]
    return configured, rules


def _world_open_ssh(rules: list[dict]) -> list[dict]:
    return [
        r
        for r in rules
        if r.get("IpProtocol") in ("-1", "tcp")
        and (r.get("IpProtocol") == "-1" or r["FromPort"] <= 22 <= r["ToPort"])
        and {"0.0.0.0/0", "::/0"}
        & {x.get("CidrIp", x.get("CidrIpv6")) for x in r.get("IpRanges", []) + r.get("Ipv6Ranges", [])}
    ]


def test_ssh_is_not_open_to_the_world(launcher):
    """#13/3: Ray adds a 0.0.0.0/0 SSH rule to any group it builds (_create_default_inbound_rules), so
    every node type names the pre-made group of cluster/security-group-ingress.json instead."""
    configured, rules = _ray_security_group_step(launcher)
    assert not _world_open_ssh(rules), rules
    ingress = json.loads((ROOT / "cluster" / "security-group-ingress.json").read_text())
    for name, node_type in configured["available_node_types"].items():
        assert node_type["node_config"]["SecurityGroupIds"] == [ingress["GroupId"]], name
    assert not _world_open_ssh(ingress["IpPermissions"])
    ssh = [r for r in ingress["IpPermissions"] if r.get("IpRanges")]
    assert [(r["FromPort"], r["ToPort"]) for r in ssh] == [(22, 22)]  # SSH only from outside the group
    assert [x["CidrIp"] for x in ssh[0]["IpRanges"]] == ["203.0.113.0/24"]  # documented placeholder
    inside = [r for r in ingress["IpPermissions"] if r.get("UserIdGroupPairs")]
    assert inside == [
        {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": ingress["GroupId"], "Description": ANY}]}
    ]
    # the check is real: without our group Ray builds its own, with SSH from anywhere
    no_group = copy.deepcopy(launcher)
    for node_type in no_group["available_node_types"].values():
        node_type["node_config"].pop("SecurityGroupIds", None)
    assert _world_open_ssh(_ray_security_group_step(no_group)[1])


IAM = ROOT / "cluster" / "iam"


def _policy(name: str) -> list[dict]:
    doc = json.loads((IAM / f"{name}-policy.json").read_text())
    assert doc["Version"] == "2012-10-17"
    return doc["Statement"]


def _listed(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def test_nodes_get_least_privilege_instance_profiles(launcher):
    """#13/4: the head names its own profile, so Ray creates no default role (EC2 + S3 full access)."""
    from ray.autoscaler._private.aws import config as aws_config

    types = launcher["available_node_types"]
    profiles = {
        name: t["node_config"].get("IamInstanceProfile", {}).get("Arn", "") for name, t in types.items()
    }
    arn = r"arn:aws:iam::\d{12}:instance-profile/(emer-ray-[a-z]+)"
    assert all(re.fullmatch(arn, a) for a in profiles.values()), profiles
    head = re.fullmatch(arn, profiles.pop(launcher["head_node_type"]))[1]
    workers = {re.fullmatch(arn, a)[1] for a in profiles.values()}
    assert head == "emer-ray-head" and workers == {"emer-ray-worker"}
    iam = MagicMock()
    with (
        patch.object(aws_config, "_client", return_value=iam),
        patch.object(aws_config, "_resource", return_value=iam),
    ):
        configured = aws_config._configure_iam_role(copy.deepcopy(launcher) | {"head_node": {}})
    assert not iam.mock_calls and configured["head_node"] == {}  # Ray made and attached nothing
    for name in ("head", "worker"):
        for st in _policy(name):
            actions, resources = _listed(st["Action"]), _listed(st["Resource"])
            assert (
                st["Effect"] == "Allow" and "*" not in actions and not any(a.endswith(":*") for a in actions)
            )
            if any(a.startswith("s3:") for a in actions):
                assert "*" not in resources and all(
                    r.startswith("arn:aws:s3:::YOUR-BUCKET") for r in resources
                )
            if "secretsmanager:GetSecretValue" in actions:
                assert resources == [
                    "arn:aws:secretsmanager:us-west-2:123456789012:secret:emer/openai-api-key-??????",
                    "arn:aws:secretsmanager:us-west-2:123456789012:secret:emer/checkpoint-key-??????",
                ]
    head_actions = {a for st in _policy("head") for a in _listed(st["Action"])}
    assert {
        "ec2:RunInstances",
        "ec2:TerminateInstances",
        "ec2:DescribeInstances",
        "ec2:CreateTags",
    } <= head_actions
    passes = [st for st in _policy("head") if "iam:PassRole" in _listed(st["Action"])]
    assert [_listed(st["Resource"]) for st in passes] == [["arn:aws:iam::123456789012:role/emer-ray-worker"]]
    terminate = next(st for st in _policy("head") if "ec2:TerminateInstances" in _listed(st["Action"]))
    assert terminate["Condition"] == {
        "StringEquals": {"ec2:ResourceTag/ray-cluster-name": launcher["cluster_name"]}
    }
    worker_actions = {a.split(":")[0] for st in _policy("worker") for a in _listed(st["Action"])}
    assert worker_actions == {"s3", "secretsmanager"}


SECRET_ID = "emer/openai-api-key"


def _fake_bin(tmp_path: Path, aws_body: str) -> Path:
    """A PATH folder with a fake `aws` (``aws_body``) and a fake `ray` that records what it got."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    scripts = {
        "aws": f'#!/bin/sh\necho "$@" >> "{tmp_path}/aws.args"\n{aws_body}\n',
        "ray": f'#!/bin/sh\necho "key=${{OPENAI_API_KEY-unset}} $*" >> "{tmp_path}/ray.started"\n',
    }
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return bin_dir


def _run_start(cmd: str, tmp_path: Path, aws_body: str) -> subprocess.CompletedProcess:
    """One of ray_cluster.yaml's start commands in bash, with ~/emer = this repository."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    if not (home / "emer").exists():
        (home / "emer").symlink_to(ROOT)
    env = {
        "PATH": f"{_fake_bin(tmp_path, aws_body)}:/usr/bin:/bin",
        "HOME": str(home),
        "RAY_HEAD_IP": "10.0.0.1",
    }
    return subprocess.run(["bash", "-c", cmd], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "aws_body",
    [
        'echo "An error occurred (AccessDeniedException) when calling GetSecretValue" >&2; exit 254',
        "echo ''",  # the secret exists but is empty
        "echo None",  # no SecretString (a binary secret)
    ],
)
def test_a_failed_secret_read_stops_the_node_start(launcher, tmp_path, aws_body):
    """#13/7: no node starts Ray with an empty OPENAI_API_KEY; the error names the secret."""
    starts = [
        c
        for c in launcher["head_start_ray_commands"] + launcher["worker_start_ray_commands"]
        if "ray start" in c
    ]
    assert len(starts) == 2
    for cmd in starts:
        res = _run_start(cmd, tmp_path, aws_body)
        assert not (tmp_path / "ray.started").exists()  # Ray never started without the key
        assert res.returncode != 0, res.stdout + res.stderr
        assert SECRET_ID in res.stderr and "secretsmanager:GetSecretValue" in res.stderr  # what and the fix
    assert not any("2>/dev/null" in c for c in starts)  # no error hidden
    script = subprocess.run(
        ["bash", str(ROOT / "cluster" / "fetch_secret.sh"), SECRET_ID, "us-west-2"],
        env={"PATH": f"{_fake_bin(tmp_path, aws_body)}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert script.returncode != 0 and script.stdout == "" and SECRET_ID in script.stderr


def test_a_read_secret_reaches_the_ray_processes_only(launcher, tmp_path):
    value = "sk-emertest-" + "9f8e7d6c5b4a" * 2
    for cmd in launcher["head_start_ray_commands"] + launcher["worker_start_ray_commands"]:
        if "ray start" in cmd:
            res = _run_start(cmd, tmp_path, f"echo {value}")
            assert res.returncode == 0, res.stderr
            assert value not in res.stdout + res.stderr
    started = (tmp_path / "ray.started").read_text().splitlines()
    assert len(started) == 2 and all(line.startswith(f"key={value} start ") for line in started)
    assert f"--secret-id {SECRET_ID}" in (tmp_path / "aws.args").read_text()


def test_kuberay_rayjob_manifest():
    from emer.cli import build_parser, split_overrides
    from emer.runconfig import load_run_config

    docs = list(yaml.safe_load_all((ROOT / "cluster" / "kuberay-rayjob.yaml").read_text()))
    job = next(d for d in docs if d["kind"] == "RayJob")
    spec = job["spec"]["rayClusterSpec"]
    assert spec["authOptions"]["mode"] == "token"
    assert spec["headGroupSpec"]["serviceType"] == "ClusterIP"
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert all(g["minReplicas"] == 0 for g in groups.values())
    assert json.loads(json.loads(groups["cpu-decode"]["rayStartParams"]["resources"])) == {"decode": 8}
    assert json.loads(json.loads(groups["gpu-llm"]["rayStartParams"]["resources"])) == {"llm": 1}
    for pod in [spec["headGroupSpec"]] + list(groups.values()):
        for c in pod["template"]["spec"]["containers"]:  # secrets only by reference
            assert all("valueFrom" in e for e in c.get("env", []) if "KEY" in e["name"])
    # the entrypoint is `emer submit`'s wrapper and its arguments parse into a valid run config
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:3] == ["python", "-m", "emer.job_entry"]
    command = argv[argv.index("--") + 1 :]
    rest, overrides = split_overrides(command)
    args = build_parser().parse_args(rest)
    assert args.command == "annotate" and args.output.startswith("s3://")
    cfg = load_run_config(args.config, overrides)
    assert cfg.annotate.stages.decode.resources == {"decode": 1}
    assert cfg.annotate.stages.text.resources == {"llm": 1}


def _selects(selector: dict, labels: dict) -> bool:
    """Whether a Kubernetes label selector (matchLabels / matchExpressions In, Exists) selects ``labels``."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        if e["operator"] == "In" and labels.get(e["key"]) not in e["values"]:
            return False
        if e["operator"] == "Exists" and e["key"] not in labels:
            return False
    return True


def test_kuberay_manifest_has_no_open_ports_or_silent_empty_secret():
    """#13 in the KubeRay manifest: every Ray pod (not only the head) is closed to other namespaces, a
    missing LLM Secret stops the pods instead of starting them without the key, no folder is shipped."""
    text = (ROOT / "cluster" / "kuberay-rayjob.yaml").read_text()
    docs = list(yaml.safe_load_all(text))
    job = next(d for d in docs if d["kind"] == "RayJob")
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    for node_type in ("head", "worker"):  # the labels KubeRay puts on its pods
        pod = {"ray.io/node-type": node_type, "ray.io/is-ray-node": "yes"}
        assert [p for p in policies if _selects(p["spec"]["podSelector"], pod)], node_type
    for p in policies:
        assert "Ingress" in p["spec"]["policyTypes"]
        assert not [f for rule in p["spec"]["ingress"] for f in rule.get("from", []) if "ipBlock" in f]
    assert not [
        d for d in docs if d["kind"] == "Service" and d["spec"].get("type") in ("LoadBalancer", "NodePort")
    ]
    spec = job["spec"]["rayClusterSpec"]
    pods = [spec["headGroupSpec"]] + spec["workerGroupSpecs"]
    refs = [
        e["valueFrom"]["secretKeyRef"]
        for g in pods
        for c in g["template"]["spec"]["containers"]
        for e in c.get("env", [])
        if "valueFrom" in e
    ]
    assert refs and not [r for r in refs if r.get("optional")]
    assert '--from-literal=api-key="${OPENAI_API_KEY:?' in text  # an empty key is never stored
    runtime_env = yaml.safe_load(job["spec"]["runtimeEnvYAML"])
    assert "working_dir" not in runtime_env and "py_modules" not in runtime_env  # code comes with the image


def test_cluster_preset_asks_for_the_resources_the_node_types_carry(launcher):
    from emer.runconfig import load_run_config

    carried = {k for t in launcher["available_node_types"].values() for k in t["resources"]} - {"CPU"}
    stages = load_run_config("cluster").annotate.stages
    asked = {role: getattr(stages, role).resources for role in ("decode", "audio", "video", "text")}
    assert asked["decode"] == {placement.DECODE: 1}
    assert all(asked[role] == {placement.LLM: 1} for role in ("audio", "video", "text"))
    assert {k for r in asked.values() for k in r} == carried


def _dashboard_exprs() -> list[str]:
    dash = json.loads((ROOT / "cluster" / "grafana_dashboard.json").read_text())
    assert dash["uid"] and dash["panels"]
    return [t["expr"] for p in dash["panels"] for t in p["targets"]]


def test_grafana_dashboard_reads_the_declared_metrics():
    exprs = " ".join(_dashboard_exprs())
    used = set(re.findall(r"ray_(emer_[a-z0-9_]+?)(?:_total|_bucket)?\{", exprs))
    assert used == set(metrics.METRICS), used ^ set(metrics.METRICS)
    for name in metrics.METRICS:
        assert metrics.prometheus_name(name) in exprs
