"""Submit any ``emer`` command to a Ray cluster as a Ray job, and run it there.

Client side (``emer submit``): ``build_submission`` turns ``emer <subcommand> [args…]`` into a Ray
job: the entrypoint runs this module on the cluster (``python -m emer.job_entry --env-names … --
<subcommand> [args…]``); the runtime environment carries the project folder (``working_dir``: only
the files git tracks plus ``--ship`` paths, see ``cluster.shipping``; a secret-looking file among them
is refused) and the non-secret pass-through variables (S3 endpoint, region, offline flags) by value.
Secret variables (``core.secrets.is_secret``: names with KEY, SECRET, TOKEN, PASSWORD, CREDENTIAL: S3
keys, LLM API keys; and values that hold a key or a URL with credentials in its userinfo or query
string, e.g. ``AWS_ENDPOINT_URL=http://ak:pw@host``) travel **by name only**: Ray 2.60 keeps a
runtime env's ``env_vars`` in the job table (served by the dashboard API) and writes them to
``runtime_env_agent.log``, so their values must never go there.
The job's driver inherits them from the head node's environment instead (the Ray processes were
started with them, or an IAM instance profile provides S3 access), and the entrypoint checks by name
that they are present. A command line that holds the value of any secret-named variable set locally,
a key-shaped string or a URL with credentials (``--annotate.text.base_url=http://u:pw@…``,
``…?api_key=…``; ``core.secrets.secret_problem``) is refused before anything is sent, naming the flag.

Cluster side (``python -m emer.job_entry``, in the application layer): ``entry_main`` reports which required
names are set
(names only), fails early with the fix when one is missing, then runs ``emer.cli.main``.

Connection: ``--address`` / ``RAY_ADDRESS`` (the dashboard URL, e.g. the ``ray dashboard`` SSH
tunnel on http://127.0.0.1:8265) and the token from ``RAY_AUTH_TOKEN`` / ``RAY_AUTH_TOKEN_PATH`` /
``~/.ray/auth_token``, sent as ``Authorization: Bearer``.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
import re
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlparse

from cluster import shipping
from core.runtime import PASS_THROUGH_ENV
from core.secrets import is_secret, is_secret_name, redact_url, secret_problem

log = logging.getLogger(__name__)

__all__ = ["build_submission", "client", "follow", "is_secret", "submit", "wait"]

# Found by the AWS credential chain without the variable (instance profile, ~/.aws): missing is OK.
CHAIN_FALLBACK = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
MIN_SECRET_LEN = 8  # shorter values (flags such as "false") are not recognisable as secrets in text
LOCATION_SUFFIXES = ("_PATH", "_FILE", "_DIR")
AGENT_WAIT_S = 60.0  # a fresh head's job agent registers a few seconds after the dashboard answers


def project_root() -> Path | None:
    """The emer source folder this module runs from (has pyproject.toml), or None for an installed copy."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() and (root / "cluster").is_dir() else None


# ---------------------------------------------------------------- connection


def dashboard_address(address: str | None = None) -> str:
    """The Jobs API URL from ``address`` or ``RAY_ADDRESS``; explains the fix for a wrong one."""
    addr = (address or os.environ.get("RAY_ADDRESS", "")).strip().rstrip("/")
    if not addr:
        raise ValueError(
            "no cluster address: pass --address http://127.0.0.1:8265 (after `ray dashboard "
            "ray_cluster.yaml` opened the SSH tunnel) or set RAY_ADDRESS"
        )
    if addr.startswith("ray://") or addr == "auto":
        raise ValueError(
            f"--address {redact_url(addr)}: `emer submit` talks to the dashboard's Jobs API; use its "
            "http:// URL (default port 8265), not a ray:// or GCS address"
        )
    if "://" not in addr:
        addr = "http://" + addr
    parsed = urlparse(addr)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"--address {redact_url(addr)}: must look like http://HOST:8265")
    if parsed.port == 6379:
        raise ValueError(
            f"--address {redact_url(addr)}: 6379 is the GCS port; the Jobs API is the dashboard (8265)"
        )
    return addr


def auth_token() -> str | None:
    """The Ray auth token from RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token (not printed)."""
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return os.environ["RAY_AUTH_TOKEN"].strip()
    path = os.environ.get("RAY_AUTH_TOKEN_PATH", "")
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise ValueError(f"RAY_AUTH_TOKEN_PATH={path}: no such file")
        return p.read_text().strip() or None
    default = Path.home() / ".ray" / "auth_token"
    if os.environ.get("RAY_AUTH_MODE", "").lower() != "disabled" and default.is_file():
        return default.read_text().strip() or None
    return None


def auth_headers() -> dict[str, str]:
    token = auth_token()
    return {"Authorization": f"Bearer {token}"} if token else {}


def client(address: str | None = None):
    """A ``JobSubmissionClient`` for the cluster, with the token header when one is configured."""
    from ray.job_submission import JobSubmissionClient

    url = dashboard_address(address)
    headers = auth_headers()
    host = urlparse(url).hostname or ""
    if not headers and host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "no Ray auth token (RAY_AUTH_TOKEN / ~/.ray/auth_token) for %s: a cluster reachable "
            "without one runs anybody's code; see docs/cluster.md",
            host,
        )
    return JobSubmissionClient(url, headers=headers)


# ---------------------------------------------------------------- building a submission


@dataclass
class Submission:
    entrypoint: str
    runtime_env: dict[str, Any]
    metadata: dict[str, str]
    env_names: list[str] = field(default_factory=list)  # secret names the job needs (by name)


def pass_through_names(extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    names: list[str] = []
    for name in list(PASS_THROUGH_ENV) + list(extra):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(f"--env {name!r}: not an environment variable name")
        if name not in names:
            names.append(name)
    return names


def secret_env_values() -> dict[str, str]:
    """Values of every secret-named variable in the environment that could be recognised in text.

    Values shorter than ``MIN_SECRET_LEN`` (``TOKENIZERS_PARALLELISM=false``) and those of names that
    hold a location (``RAY_AUTH_TOKEN_PATH``: ``*_PATH``, ``*_FILE``, ``*_DIR``) are left out.
    """
    return {
        name: value
        for name, value in os.environ.items()
        if is_secret_name(name)
        and len(value.strip()) >= MIN_SECRET_LEN
        and not name.upper().endswith(LOCATION_SUFFIXES)
    }


def check_no_secret_values(command: list[str], names: list[str] = ()) -> None:
    """Refuse a command line that holds a secret (it would land in the job's entrypoint and metadata).

    Checked: the value of every secret-named variable set here (not only the pass-through ``names``)
    and every argument by ``core.secrets.secret_problem`` (a key-shaped string, a URL with
    credentials in its userinfo or query string). The error names the variable or the flag, never
    the value.
    """
    values = secret_env_values()
    for name in names:  # pass-through names the user chose, even if not secret-named
        if is_secret(name, os.environ.get(name, "")) and os.environ.get(name):
            values.setdefault(name, os.environ[name])
    for name, value in sorted(values.items()):
        if any(value.strip() in arg for arg in command):
            raise ValueError(
                f"the command line contains the value of ${name}; pass it through the "
                f"environment instead (`--env {name}`), never as an argument"
            )
    for i, arg in enumerate(command):
        problem = secret_problem(arg)
        if problem:
            raise ValueError(
                f"{_flag_of(command, i)} {problem} (value not shown): the command line lands in Ray's "
                "job table and logs. Give the URL without credentials and put the secret in an "
                "environment variable on the cluster's nodes (an LLM key: annotate.text.api_key_env; "
                "S3: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY), passed with `--env NAME`; see "
                "docs/cluster.md, 'Secrets'"
            )


def _flag_of(command: list[str], i: int) -> str:
    """How to name argument ``i`` in an error: its ``--flag`` (``--flag=value`` or ``--flag value``)."""
    arg = command[i]
    if arg.startswith("-") and "=" in arg:
        return arg.split("=", 1)[0]
    if i > 0 and command[i - 1].startswith("-") and "=" not in command[i - 1]:
        return f"the value of {command[i - 1]}"
    return f"argument {i} of the command line"


def build_submission(
    command: list[str],
    extra_env: list[str] | tuple[str, ...] = (),
    working_dir: str | Path | None = None,
    python: str = "python",
    metadata: dict[str, str] | None = None,
    ship: list[str] | tuple[str, ...] = (),
) -> Submission:
    """The entrypoint, runtime env and metadata that run ``emer <command…>`` on the cluster.

    ``working_dir`` travels as git tracks it, plus the untracked paths in ``ship``
    (``cluster.shipping``); a secret-looking file among them is refused (ValueError).
    """
    if not command or command[0].startswith("-"):
        raise ValueError("emer submit needs an emer subcommand, e.g. `emer submit annotate --input …`")
    if command[0] in ("submit", "jobs"):
        raise ValueError(f"`emer submit {command[0]}` makes no sense; run `emer {command[0]}` locally")
    names = pass_through_names(extra_env)
    check_no_secret_values([python, *command], names)
    set_here = {n: os.environ[n] for n in names if os.environ.get(n)}
    # one check (core.secrets.is_secret): a secret name or value (a URL with credentials) goes by name
    secret_names = [n for n, value in set_here.items() if is_secret(n, value)]
    env_values = {n: value for n, value in set_here.items() if not is_secret(n, value)}
    env_values.setdefault("PYTHONUNBUFFERED", "1")
    runtime_env: dict[str, Any] = {"env_vars": env_values}
    if working_dir:
        runtime_env["working_dir"] = str(working_dir)
        runtime_env["excludes"] = shipping.working_dir_excludes(working_dir, ship)
    elif ship:
        raise ValueError("--ship adds files to the working dir: drop --no-working-dir")
    wrapper = [python, "-m", "emer.job_entry"]
    if secret_names:
        wrapper += ["--env-names", ",".join(secret_names)]
    entrypoint = shlex.join(wrapper + ["--"] + list(command))
    meta = {
        "emer_command": command[0],
        "emer_env_names": ",".join(secret_names),
        "emer_submitted_by": _user(),
        **(metadata or {}),
    }
    return Submission(entrypoint, runtime_env, meta, secret_names)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"


def submit(
    sub: Submission,
    address: str | None = None,
    submission_id: str | None = None,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    resources: dict[str, float] | None = None,
) -> str:
    """Submit and return the submission id."""
    kwargs: dict[str, Any] = {}
    if num_cpus is not None:
        kwargs["entrypoint_num_cpus"] = num_cpus
    if num_gpus:
        kwargs["entrypoint_num_gpus"] = num_gpus
    if resources:
        kwargs["entrypoint_resources"] = resources
    jc = client(address)
    deadline = time.monotonic() + AGENT_WAIT_S
    while True:
        try:
            return jc.submit_job(
                entrypoint=sub.entrypoint,
                runtime_env=sub.runtime_env,
                metadata=sub.metadata,
                submission_id=submission_id,
                **kwargs,
            )
        except RuntimeError as err:  # a cluster that just started has no job agent registered yet
            if "No available agent" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(1.0)


# ---------------------------------------------------------------- following a job


async def _tail(jc, job_id: str, out: TextIO) -> None:
    async for chunk in jc.tail_job_logs(job_id):
        out.write(chunk)
        out.flush()


def follow(jc, job_id: str, out: TextIO | None = None) -> str:
    """Stream the job's logs to ``out`` until it ends; return its final status name."""
    out = out or sys.stdout
    try:
        asyncio.run(_tail(jc, job_id, out))
    except RuntimeError as err:  # the websocket dropped: fall back to polling
        log.warning("log stream of %s interrupted (%s); waiting for the job to end", job_id, err)
    return wait(jc, job_id)


def wait(jc, job_id: str, timeout: float | None = None, poll: float = 1.0) -> str:
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        status = str(jc.get_job_status(job_id).value)
        if status in TERMINAL:
            return status
        if deadline is not None and time.monotonic() > deadline:
            return status
        time.sleep(poll)


# ---------------------------------------------------------------- cluster side


def check_env(names: list[str]) -> list[str]:
    """Names the job needs that the node lacks and that nothing else can provide."""
    present = [n for n in names if os.environ.get(n)]
    missing = [n for n in names if not os.environ.get(n)]
    if names:
        print(
            f"emer job: environment from the cluster node: set: {', '.join(present) or '-'}; "
            f"not set: {', '.join(missing) or '-'}",
            flush=True,
        )
    return [n for n in missing if n not in CHAIN_FALLBACK]
