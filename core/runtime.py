"""Connect to a Ray cluster (``--address`` / ``RAY_ADDRESS``) or start the embedded local Ray.

The embedded default runs every Ray service on 127.0.0.1 only (dashboard, GCS, raylet, workers) and
prints the dashboard URL; beside another local Ray it takes a free dashboard port. Its workers
inherit this process's environment, so it has no runtime env (``start_local``); connected to a
cluster, the variables jobs need go into the runtime environment by value only when not secret (S3
endpoint, region, offline flags; ``runtime_env_for`` adds what the workers lack); secret ones
(credentials, LLM keys, a URL holding credentials: see ``core.secrets.is_secret``) never do: workers
inherit them from their node's environment.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
import tempfile

from core import storage
from core.config import Config, check_range
from core.secrets import is_secret

log = logging.getLogger(__name__)

LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray's single-machine mode (loopback only)

# Forwarded to workers when set on the driver (values never logged).
PASS_THROUGH_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "HF_HOME",
    "HF_HUB_OFFLINE",
    "DS_ACCELERATOR",
    "TORCH_EXTENSIONS_DIR",
    "EMER_DEBUG_CRASH_ON",  # crash and timeout tests' fault injection (pipelines.stages)
    "EMER_DEBUG_HANG_ON",
)
__all__ = [
    "PASS_THROUGH_ENV",
    "RayConfig",
    "init_ray",
    "is_secret",
    "runtime_env_for",
    "start_local",
    "worker_env",
]
# The environment of this process when it started the local Ray it uses, and that Ray's GCS address:
# the raylet and every worker inherit that environment (see ``start_local``).
_STARTED: dict[str, object] = {"gcs": "", "env": {}}


@dataclasses.dataclass(frozen=True)
class RayConfig(Config):
    """How to reach Ray. ``address`` empty = RAY_ADDRESS, or else start a local Ray."""

    address: str = ""
    num_cpus: int = 0  # local Ray only; 0 = all cores
    num_gpus: int = 0  # local Ray only
    dashboard: bool = True
    dashboard_port: int = 8265
    env_vars: list[str] = dataclasses.field(default_factory=list)  # extra names to pass through
    progress_bars: bool = True  # Ray Data's per-operator bars; off: our own progress lines only
    worker_logs: bool = True  # stream workers' stdout/stderr to the driver (off: only in Ray's log files)

    def problems(self) -> list[str]:
        out: list[str] = []
        check_range(out, "ray.num_cpus", self.num_cpus, 0, None)
        check_range(out, "ray.num_gpus", self.num_gpus, 0, None)
        check_range(out, "ray.dashboard_port", self.dashboard_port, 1024, 65535)
        return out


def worker_env(extra_names: list[str] | tuple[str, ...] = ()) -> dict[str, str]:
    """Non-secret pass-through variables that are set, by value, for the runtime environment.

    Secret ones (``core.secrets.is_secret``: a secret name, or a value holding a key or a URL with
    credentials in its userinfo or query string) are left out: Ray stores a runtime env's
    ``env_vars`` in its job table (served by the dashboard's job API) and writes them to
    ``runtime_env_agent.log``. Workers inherit them from their node's environment instead (a local
    Ray inherits the driver's; cluster nodes get them from their start commands or IAM).
    """
    names = list(PASS_THROUGH_ENV) + list(extra_names)
    return {n: os.environ[n] for n in names if os.environ.get(n) and not is_secret(n, os.environ[n])}


def start_local(**init_kwargs):
    """``ray.init(**init_kwargs)`` of a local Ray, without a job runtime env: its raylet and workers
    inherit this process's environment, recorded here for ``runtime_env_for``. A runtime env of any
    content makes Ray start every worker through a set-up process of its own (a second Python start
    per worker) and keeps its workers apart from those of other runtime envs."""
    import ray

    if "runtime_env" in init_kwargs:
        raise ValueError("start_local: the local Ray's workers inherit the environment; pass no runtime_env")
    env = dict(os.environ)
    ctx = ray.init(**init_kwargs)
    _STARTED.update(gcs=ray.get_runtime_context().gcs_address, env=env)
    return ctx


def runtime_env_for(wanted: dict[str, str]) -> dict | None:
    """A runtime env that gives the workers ``wanted``, or None where they have every value already
    (the job's runtime env, or the environment a local Ray started by this process inherited)."""
    import ray

    ctx = ray.get_runtime_context()
    job = (ctx.runtime_env or {}).get("env_vars") or {}
    inherited = _STARTED["env"] if _STARTED["gcs"] and _STARTED["gcs"] == ctx.gcs_address else {}
    have = {**inherited, **job}
    missing = {k: v for k, v in wanted.items() if have.get(k) != v}
    return {"env_vars": {**job, **missing}} if missing else None


def init_ray(cfg: RayConfig | None = None, quiet: bool = False):
    """Connect to ``cfg.address`` / RAY_ADDRESS, or start a local Ray on 127.0.0.1."""
    import ray
    import ray.data

    cfg = cfg or RayConfig()
    ray.data.DataContext.get_current().enable_progress_bars = cfg.progress_bars
    if not cfg.progress_bars:  # nor Ray Data's periodic progress log lines
        logging.getLogger("ray.data").setLevel(logging.WARNING)
    if ray.is_initialized():
        return ray.get_runtime_context()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = cfg.address or os.environ.get("RAY_ADDRESS", "")
    runtime_env = {"env_vars": worker_env(cfg.env_vars)}
    if not cfg.progress_bars:  # Ray Data inside workers too (e.g. a Ray Train worker's dataset shard)
        os.environ["RAY_DATA_DISABLE_PROGRESS_BARS"] = "1"
        runtime_env["env_vars"]["RAY_DATA_DISABLE_PROGRESS_BARS"] = "1"
    if address:
        log.info("connecting to Ray at %s", address)
        ctx = ray.init(address=address, runtime_env=runtime_env, log_to_driver=cfg.worker_logs)
    else:
        ctx = _start_local(cfg)  # its workers inherit this environment: no runtime env
    url = getattr(ctx, "dashboard_url", "") or ""
    if url and not quiet:
        print(
            f"Ray dashboard: http://{url}" if not url.startswith("http") else f"Ray dashboard: {url}",
            flush=True,
        )
    return ctx


def _start_local(cfg: RayConfig):
    """Start the embedded Ray with every service on 127.0.0.1, beside any other local Ray.

    Starts on this machine are serialised by a file lock, so two runs started at once do not both
    pick the same free dashboard port.
    """
    kwargs = {
        "log_to_driver": cfg.worker_logs,
        "include_dashboard": cfg.dashboard,
    }
    if cfg.num_cpus:
        kwargs["num_cpus"] = cfg.num_cpus
    if cfg.num_gpus:
        kwargs["num_gpus"] = cfg.num_gpus
    lock = os.path.join(tempfile.gettempdir(), f"emer-ray-start-{os.getuid()}.lock")
    with storage.file_lock(lock), _loopback_only():
        if cfg.dashboard:
            kwargs.update(dashboard_host="127.0.0.1", dashboard_port=dashboard_port(cfg.dashboard_port))
        return start_local(**kwargs)


def dashboard_port(wanted: int) -> int:
    """``wanted`` if it is free on 127.0.0.1, else a free port (another Ray or program holds it)."""
    if _port_free(wanted):
        return wanted
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log.warning("port %d is in use (another Ray on this machine?): the dashboard gets port %d", wanted, port)
    return port


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def _loopback_only():
    """While a local Ray starts, take 127.0.0.1 as this node's address, so that the GCS, raylet,
    object manager, workers and agents listen on loopback only (by default they listen on every
    interface). This is Ray's own single-machine mode (what it does on macOS and Windows); the
    started processes keep it, and this process gets its previous setting back."""
    from ray._private import ray_constants

    saved_env, saved = os.environ.get(LOCAL_ONLY_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[LOCAL_ONLY_ENV], ray_constants.ENABLE_RAY_CLUSTER = "0", False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved
        if saved_env is None:
            os.environ.pop(LOCAL_ONLY_ENV, None)
        else:
            os.environ[LOCAL_ONLY_ENV] = saved_env
