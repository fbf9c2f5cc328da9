"""Test-side helper of the cluster scenarios (``cluster_scenario.py``): running a scenario in its own
process session, ended by that session afterwards (never ``ray stop``: other Rays on this machine
stay). Their input, the sample set a few times over, comes from ``clip_copies``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def session_pids(sid: int) -> list[int]:
    """Pids whose session id is ``sid`` (from /proc; Linux)."""
    pids = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:
            pids.append(int(entry))
    return pids


def end_session(sid: int) -> None:
    """SIGKILL what is left of the scenario's session (the fake nodes' raylets, workers)."""
    for pid in session_pids(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while session_pids(sid) and time.monotonic() < deadline:
        time.sleep(0.2)


def run_scenario(scenario: str, tmp_path: Path, args: list[str], timeout: float = 400) -> dict:
    """Run ``cluster_scenario.py SCENARIO ARGS`` (own session, own RAY_TMPDIR); returns its report."""
    report = tmp_path / "report.json"
    ray_tmp = tempfile.mkdtemp(prefix="emas", dir="/tmp")  # short: unix socket paths < 108 chars
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(
        RAY_TMPDIR=ray_tmp,
        RAY_USAGE_STATS_ENABLED="0",
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=os.environ["RAY_AUTH_TOKEN"],
        RAY_DEDUP_LOGS="0",
        RAY_FAKE_CLUSTER="1",  # the fake_multinode provider refuses to run without it
        AUTOSCALER_UPDATE_INTERVAL_S="1",
        PYTHONPATH=os.pathsep.join([str(ROOT), str(HERE), str(HERE.parent)]),  # HERE.parent: llm_fixtures
        PYTHONUNBUFFERED="1",
    )
    cmd = [sys.executable, str(HERE / "cluster_scenario.py"), scenario, *args, "--report", str(report)]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    finally:
        end_session(proc.pid)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    (tmp_path / "scenario.log").write_text(out)
    assert proc.returncode == 0 and report.exists(), out[-6000:]
    result = json.loads(report.read_text())
    print(json.dumps(result, indent=1))
    return result
