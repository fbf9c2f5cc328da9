"""A real OpenAI-compatible server for the tests: ``transformers serve`` of a local checkpoint folder.

``start_served(folder, log_path)`` runs ``transformers serve FOLDER --host 127.0.0.1 --port P`` as a
subprocess (argument list; stdout and stderr to ``log_path``), waits until ``GET /v1/models`` answers
and returns a ``Served`` with the ``base_url`` and the model name the server reports. A server started
with a folder as its model is pinned to it: it loads the folder before it listens, lists it in
``/v1/models`` under the path exactly as given, and answers 400 to any other ``model`` in a request.
``stop_served`` terminates it (SIGTERM, then SIGKILL); ``Served.kill`` is the crash of a test.

The SmolLM2 folder is the models cache's (``emer models prepare`` / ``make models``; ``$EMER_MODELS``
or ``<project>/.cache/models``); ``served_skip_reason`` says why the server cannot run here.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

SMOLLM2 = "smollm2-135m-instruct"
START_DEADLINE_S = 120.0
ANSWERED = '"POST /v1/chat/completions HTTP/1.1" 200'  # uvicorn's access-log line of one answer


def smollm2_folder() -> Path:
    """Where the models cache keeps SmolLM2-135M-Instruct (complete only with its marker)."""
    from emer.models import models_dir

    return models_dir() / SMOLLM2


def serve_executable() -> str | None:
    """The ``transformers`` command of this interpreter's environment (else the one on PATH)."""
    local = Path(sys.executable).parent / "transformers"
    return str(local) if local.is_file() else shutil.which("transformers")


def served_skip_reason(folder: Path) -> str | None:
    if not (folder / ".complete").is_file():
        return (
            f"SmolLM2 folder {folder} is absent or incomplete: build it with `emer models prepare` "
            "(or `make models`), or point $EMER_MODELS at a models cache that holds it"
        )
    if serve_executable() is None:
        return "the `transformers` command is not installed (pip install 'transformers[serving]')"
    missing = [m for m in ("fastapi", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        return f"`transformers serve` needs {', '.join(missing)}: pip install 'transformers[serving]'"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclasses.dataclass
class Served:
    """A running ``transformers serve``: its endpoint, reported model name, process and log."""

    base_url: str  # http://127.0.0.1:P/v1
    model: str  # the id /v1/models reports (requests must name it)
    process: subprocess.Popen
    log_path: Path
    command: list[str]
    startup_s: float

    def log_tail(self, chars: int = 4000) -> str:
        return log_tail(self.log_path, chars)

    def answered(self) -> int:
        """Chat completions the server has answered with 200 so far (from its access log)."""
        try:
            return self.log_path.read_text(errors="replace").count(ANSWERED)
        except FileNotFoundError:
            return 0

    def kill(self) -> None:
        """SIGKILL, as a crashed or pre-empted server; waits until the process is gone."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)


def log_tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return "(no log written)"


def _get_models(base_url: str) -> list[dict] | None:
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=2.0) as resp:
            return json.loads(resp.read()).get("data") or []
    except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
        return None


def start_served(
    folder: Path,
    log_path: Path,
    *,
    port: int | None = None,
    deadline_s: float = START_DEADLINE_S,
    threads: int = 2,
) -> Served:
    """Start ``transformers serve`` of ``folder`` on 127.0.0.1; raise with the log tail when it does not
    answer ``/v1/models`` within ``deadline_s`` or exits first.

    ``threads``: torch's intra-op threads in the server. One: on a busy 2-core machine two threads
    measured 2.5-5x slower per request than one (4 requests of 24 tokens: 29-63 s against 9-12 s).
    """
    exe = serve_executable()
    if exe is None:
        raise RuntimeError(
            "the `transformers` command is not installed (pip install 'transformers[serving]')"
        )
    port = port or free_port()
    command = [exe, "serve", str(folder), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",  # the folder is local; never reach for the Hub
        "HF_HUB_DISABLE_UPDATE_CHECK": "1",  # the CLI would look for a newer transformers on PyPI
        "OMP_NUM_THREADS": str(threads),
        "PYTHONUNBUFFERED": "1",
    }
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
    base_url = f"http://127.0.0.1:{port}/v1"
    end = started + deadline_s
    while True:
        models = _get_models(base_url)
        if models:
            served = Served(
                base_url, models[0]["id"], process, log_path, command, time.perf_counter() - started
            )
            return served
        if process.poll() is not None:
            raise RuntimeError(
                f"`{' '.join(command)}` exited with {process.returncode} before answering; "
                f"log {log_path}:\n{log_tail(log_path)}"
            )
        if time.perf_counter() > end:
            stop_process(process)
            raise RuntimeError(
                f"`{' '.join(command)}` did not answer {base_url}/models within {deadline_s:.0f} s; "
                f"log {log_path}:\n{log_tail(log_path)}"
            )
        time.sleep(0.25)


def stop_process(process: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace_s``."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)


def stop_served(served: Served, grace_s: float = 10.0) -> None:
    stop_process(served.process, grace_s)
