"""The embedded local Ray: every service listens on 127.0.0.1 only, with token auth on, and a second
local run started beside a first one works (it gets a free dashboard port)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

DRIVER = textwrap.dedent("""
    import json, sys, time
    import psutil, ray
    from core.runtime import RayConfig, init_ray

    ctx = init_ray(RayConfig(num_cpus=1, progress_bars=False), quiet=True)
    assert ray.get(ray.remote(lambda: 41 + 1).remote()) == 42
    procs = [psutil.Process()] + psutil.Process().children(recursive=True)
    listening = set()
    for p in procs:
        try:
            for c in p.net_connections(kind="inet"):
                if c.status == psutil.CONN_LISTEN:
                    listening.add((p.name(), c.laddr.ip, c.laddr.port))
        except psutil.Error:
            pass
    print(json.dumps({"dashboard": ctx.dashboard_url, "listening": sorted(listening)}), flush=True)
    time.sleep(float(sys.argv[1]))  # both runs are up at the same time
    ray.shutdown()
""")

LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


@pytest.mark.timeout(240)
def test_two_local_runs_at_once_listen_on_loopback_only(tmp_path):
    """Before: the second run died on "Failed to bind to 127.0.0.1:8265", and the GCS, raylet and
    workers listened on every interface."""
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(
        PYTHONPATH=str(ROOT),
        HOME=str(tmp_path),
        RAY_USAGE_STATS_ENABLED="0",
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=os.environ.get("RAY_AUTH_TOKEN", "0" * 32),
    )
    runs = [
        subprocess.Popen(
            [sys.executable, str(script), "8"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [r.communicate(timeout=200) for r in runs]
    for run, (_, err) in zip(runs, results):
        assert run.returncode == 0, err[-2000:]
    reports = [json.loads(out.strip().splitlines()[-1]) for out, _ in results]
    ports = {r["dashboard"].rsplit(":", 1)[1] for r in reports}
    assert len(ports) == 2, reports  # two dashboards, one each
    for r in reports:
        names = {name for name, _, _ in r["listening"]}
        assert {"gcs_server", "raylet"} <= names, r["listening"]
        public = [x for x in r["listening"] if x[1] not in LOOPBACK]
        assert not public, f"listening beyond loopback: {public}"
    assert not (tmp_path / ".ray" / "auth_token").exists()  # the token came from the environment
