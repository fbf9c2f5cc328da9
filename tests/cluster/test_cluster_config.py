"""The shipped cluster files: ``ray_cluster.yaml`` passes Ray's own cluster-config validation and keeps
the security settings; the KubeRay manifest and the Grafana dashboard agree with the code."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from pathlib import Path

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
    rules = launcher["provider"]["security_group"]["IpPermissions"]
    assert [(r["FromPort"], r["ToPort"]) for r in rules] == [(22, 22)]  # SSH only, no dashboard/GCS port
    text = CLUSTER_YAML.read_text()
    assert not re.search(r"(AKIA[0-9A-Z]{12,}|sk-[A-Za-z0-9]{16,}|aws_secret_access_key)", text, re.I)


def test_setup_installs_emer_with_the_pinned_ray(launcher):
    import ray

    setup = " ".join(launcher["setup_commands"])
    assert "-e ~/emer" in setup and f"ray[default,data,train]=={ray.__version__}" in setup
    assert {".venv", ".git"} <= set(launcher["rsync_exclude"])


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
