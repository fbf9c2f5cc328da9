"""Test helpers: a real Ray head started with ``ray start`` in its own session, stopped by that session.

``RayHead`` runs ``ray start --head`` on 127.0.0.1 with a private ``--temp-dir``, a private HOME (so
``~/.ray/auth_token`` is never written to the real home), token auth through ``RAY_AUTH_MODE`` /
``RAY_AUTH_TOKEN`` in its environment, and free ports for the dashboard and the metrics export.
``stop()`` ends exactly the processes of that session (SIGTERM, then SIGKILL) — never ``ray stop`` —
and removes the temp dir.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
RAY = str(VENV_BIN / "ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_pids(sid: int) -> list[int]:
    """Pids whose session id is ``sid`` (read from /proc; Linux only)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == sid and int(entry) != os.getpid():
            pids.append(int(entry))
    return pids


def kill_session(sid: int, grace: float = 5.0) -> None:
    """SIGTERM every process of session ``sid``, then SIGKILL what is left after ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        for pid in session_pids(sid):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while session_pids(sid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not session_pids(sid):
            return


class RayHead:
    """A ``ray start --head`` on 127.0.0.1, with token auth unless ``token=None``."""

    def __init__(
        self,
        token: str | None = "generate",
        num_cpus: int = 2,
        env: dict[str, str] | None = None,
        resources: dict[str, float] | None = None,
        system_config: dict | None = None,
    ) -> None:
        self.token = secrets.token_hex(24) if token == "generate" else token
        self.num_cpus = num_cpus
        self.resources = resources or {}
        self.system_config = system_config or {"metrics_report_interval_ms": 1000}
        self.tmp = Path(tempfile.mkdtemp(prefix="emrh", dir="/tmp"))  # short: socket paths < 108 chars
        self.home = self.tmp / "home"
        self.home.mkdir()
        # Every fixed default port (8265, 52365, 10001, …) may be taken by another Ray on this machine.
        (
            self.dashboard_port,
            self.metrics_port,
            self.agent_port,
            self.agent_grpc_port,
            self.env_agent_port,
            self.client_port,
        ) = (free_port() for _ in range(6))
        self.sid: int | None = None
        self.env = self._env(env or {})

    def _env(self, extra: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env.update(
            HOME=str(self.home),
            PATH=f"{VENV_BIN}:{env.get('PATH', '')}",
            RAY_USAGE_STATS_ENABLED="0",
            RAY_AUTH_MODE="token" if self.token else "disabled",
            PYTHONUNBUFFERED="1",
        )
        if self.token:
            env["RAY_AUTH_TOKEN"] = self.token
        env.update(extra)
        return env

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def start(self, timeout: float = 120) -> RayHead:
        cmd = [
            RAY,
            "start",
            "--head",
            "--port=0",
            "--node-ip-address=127.0.0.1",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}",
            f"--metrics-export-port={self.metrics_port}",
            f"--dashboard-agent-listen-port={self.agent_port}",
            f"--dashboard-agent-grpc-port={self.agent_grpc_port}",
            f"--runtime-env-agent-port={self.env_agent_port}",
            f"--ray-client-server-port={self.client_port}",
            f"--num-cpus={self.num_cpus}",
            f"--temp-dir={self.tmp / 'ray'}",
            "--disable-usage-stats",
            f"--system-config={json.dumps(self.system_config)}",
        ]
        if self.resources:
            cmd.append(f"--resources={json.dumps(self.resources)}")
        proc = subprocess.Popen(
            cmd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.sid = proc.pid
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise
        if proc.returncode != 0:
            self.stop()
            raise RuntimeError(f"ray start failed ({proc.returncode}):\n{out[-3000:]}")
        self.wait_http(timeout)
        return self

    def wait_http(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.http_status("/api/version", auth=True) == 200:
                return
            time.sleep(0.5)
        raise TimeoutError(f"dashboard {self.url} did not answer in {timeout}s")

    def http_status(self, path: str, auth: bool = False, token: str | None = None) -> int:
        headers = {}
        if token or (auth and self.token):
            headers["Authorization"] = f"Bearer {token or self.token}"
        try:
            with urllib.request.urlopen(
                urllib.request.Request(self.url + path, headers=headers), timeout=10
            ) as resp:
                return resp.status
        except urllib.error.HTTPError as err:
            return err.code
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return 0

    def get_json(self, path: str):
        req = urllib.request.Request(
            self.url + path, headers={"Authorization": f"Bearer {self.token}"} if self.token else {}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def metrics_text(self) -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
                return r.read().decode()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return ""

    def client_env(self, **extra: str) -> dict[str, str]:
        """Environment for an ``emer`` command talking to this head (address and token)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env.update(
            HOME=str(self.home),
            RAY_ADDRESS=self.url,
            RAY_USAGE_STATS_ENABLED="0",
            RAY_AUTH_MODE="token" if self.token else "disabled",
        )
        if self.token:
            env["RAY_AUTH_TOKEN"] = self.token
        env.update(extra)
        return env

    def stop(self) -> None:
        """Kill the processes of the head's session, then remove its temp dir (logs, home)."""
        if self.sid is not None:
            kill_session(self.sid)
            self.sid = None
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> RayHead:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def emer(args: list[str], env: dict[str, str], timeout: float = 300, cwd: Path = ROOT):
    """Run the ``emer`` CLI in a subprocess; returns the CompletedProcess (text)."""
    return subprocess.run(
        [str(VENV_BIN / "emer"), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def tiny_llm_overrides(tiny: dict[str, str], resources: str | None = None) -> list[str]:
    """Dotted flags that run the three LLM roles on the tiny checkpoints (one actor each)."""
    out = []
    for role, path in tiny.items():
        out += [
            f"--annotate.{role}.model={path}",
            f"--annotate.{role}.max_new_tokens=8",
            f"--annotate.{role}.min_new_tokens=4",
            f"--annotate.stages.{role}.actors=1",
        ]
        if resources:
            out.append(f"--annotate.stages.{role}.resources={resources}")
    return out


def subprocess_env(**extra: str) -> dict[str, str]:
    """The test environment for child processes, without any Ray address; token auth on with the
    session's token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(
        RAY_USAGE_STATS_ENABLED="0",
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=os.environ["RAY_AUTH_TOKEN"],
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        DS_ACCELERATOR="cpu",
        PYTHONUNBUFFERED="1",
        RAY_DEDUP_LOGS="0",
    )
    env.update(extra)
    return env
