"""Shared fixtures: a session-scoped local Ray, a real S3 endpoint (moto's server), sample clips, and
a real OpenAI-compatible server (``transformers serve`` of SmolLM2, see ``served_helpers``).

The environment for the test run is set here, before Ray or DeepSpeed are imported: token auth on
with a per-session token in RAY_AUTH_TOKEN (so ~/.ray/auth_token is never written), a per-session
checkpoint key in EMER_CHECKPOINT_KEY, usage stats off, DeepSpeed on CPU, a stable
TORCH_EXTENSIONS_DIR (its C++ ops compile once), and offline Hugging Face.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Token auth stays on, as in production; the session's token comes from the environment, so Ray
# never writes ~/.ray/auth_token.
os.environ["RAY_AUTH_MODE"] = "token"
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
# The HMAC key that seals training checkpoints (affect_model.train.integrity), per session, from the
# environment as on a cluster's nodes; Ray's workers inherit it (a secret: never in a runtime env).
os.environ.setdefault("EMER_CHECKPOINT_KEY", secrets.token_hex(32))
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ["DS_ACCELERATOR"] = "cpu"
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(ROOT / ".cache" / "torch_extensions"))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# One intra-op thread per process: on the 2-core box torch's default threads fight Ray's workers
# (a tiny generate measured 5.8 s with 2 threads under load, 0.06 s with 1).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.pop("RAY_ADDRESS", None)

SHARED = Path(os.environ.get("EMER_SHARED_DIR", ROOT.parent / "shared"))
TEST_NUM_CPUS = 4  # logical CPUs for the test Ray (2 physical cores): trainer + 2 workers + data
# Test files whose pass depends on timing across a whole cluster (nodes started with `ray start`,
# autoscaling, lost nodes, metrics scraped mid-run): marked `serial`, which `make test` runs alone
# after the other tests ran in two processes (beside another test's Ray they missed their windows).
SERIAL = {
    "tests/cluster/test_cluster_submit.py",
    "tests/cluster/test_cluster_multinode.py",
    "tests/pipelines/test_autoscaling.py",
    "tests/pipelines/test_node_loss.py",
    "tests/pipelines/test_metrics_export.py",
    "tests/core/test_local_ray.py",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if Path(item.path).relative_to(ROOT).as_posix() in SERIAL:
            item.add_marker(pytest.mark.serial)
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    if not has_gpu:
        skip = pytest.mark.skip(reason="needs a CUDA GPU (none on this machine)")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def emer(capsys):
    """Run ``emer`` through its real entry point; returns (exit code, stdout, stderr)."""
    from emer.cli import main

    def run(*argv) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return rc, out, err

    return run


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"reference data folder {SHARED} is absent (set EMER_SHARED_DIR to use another)")
    return SHARED


@pytest.fixture(scope="session")
def ray_local(s3):
    """A local Ray for the whole session, stopped by handle at the end (never `ray stop`).

    It starts after the ``s3`` endpoint so that workers inherit the ``AWS_*`` credentials from the
    environment (secret values are never put into a runtime env)."""
    import ray

    from core.runtime import start_local

    if not ray.is_initialized():  # no runtime env: the workers inherit the environment set above
        start_local(num_cpus=TEST_NUM_CPUS, include_dashboard=False, log_to_driver=True)
    yield ray
    ray.shutdown()


# Actors a finished Ray Train run must not leave behind: while alive, their Ray Data executors keep
# a share of the session's CPUs reserved, and later Ray Data jobs hang on the rest.
TRAIN_LEFTOVERS = ("TrainController", "DatasetManager", "SplitCoordinator")


def live_actors(classes: tuple[str, ...]) -> list[str]:
    """Class names of the live actors of ``classes`` (through GCS: the test Ray has no dashboard)."""
    from ray._private import state

    return sorted(
        a["ActorClassName"]
        for a in state.actors().values()
        if a["State"] != "DEAD" and a["ActorClassName"] in classes
    )


@pytest.fixture(autouse=True)
def no_leftover_train_actors(request):
    """A test on the session Ray fails if a training run's actors outlive it (they die shortly
    after their last handle goes, so this waits up to 10 s)."""
    yield
    if "ray_local" not in request.fixturenames:
        return
    import ray

    if not ray.is_initialized():
        return
    deadline = time.monotonic() + 10
    while (left := live_actors(TRAIN_LEFTOVERS)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, f"{request.node.nodeid} left Ray Train actors alive: {left}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class S3Endpoint:
    endpoint: str
    bucket: str

    def uri(self, prefix: str = "") -> str:
        return f"s3://{self.bucket}/{prefix}".rstrip("/")


@pytest.fixture(scope="session")
def s3():
    """moto's S3 server on 127.0.0.1 with a bucket; AWS_* variables point boto3/pyarrow/Ray at it."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    from core import storage

    storage.boto3_client().create_bucket(Bucket="emer-test")
    yield S3Endpoint(endpoint, "emer-test")
    server.stop()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def sample_clips(tmp_path_factory):
    """The generated MER-style sample set (8 clips + broken inputs + subtitles.csv)."""
    from pipelines.samples import generate_samples

    return generate_samples(tmp_path_factory.mktemp("samples"), n=8, seed=0)


@pytest.fixture(scope="session")
def episodes(tmp_path_factory):
    """The long generated episodes of ``emer samples`` (``pipelines.episodes``; need espeak-ng)."""
    from pipelines.episodes import write_episodes
    from pipelines.speech import find_espeak

    if find_espeak() is None:
        pytest.skip("espeak-ng is not on PATH: the episodes' speech needs it (apt-get install espeak-ng)")
    return write_episodes(tmp_path_factory.mktemp("episodes"), seed=0)


@pytest.fixture(scope="session")
def models_cache() -> Path:
    """The models cache of the embedded default (``emer models prepare``, run by ``make test``)."""
    from emer.models import models_dir

    root = models_dir()
    if not (root / "smollm2-135m-instruct" / ".complete").is_file():
        pytest.skip(f"no SmolLM2 in the models cache {root}: run `emer models prepare` (make test does)")
    return root


@pytest.fixture(scope="module")
def served_smollm2(tmp_path_factory):
    """``transformers serve`` of the models cache's SmolLM2-135M-Instruct folder on 127.0.0.1 (a free
    port) for one test module; skipped when the folder or the command is absent. Yields a
    ``served_helpers.Served`` (``base_url``, ``model`` as /v1/models reports it, ``log_path``)."""
    from served_helpers import served_skip_reason, smollm2_folder, start_served, stop_served

    folder = smollm2_folder()
    reason = served_skip_reason(folder)
    if reason:
        pytest.skip(reason)
    try:
        served = start_served(folder, tmp_path_factory.mktemp("served") / "transformers-serve.log")
    except RuntimeError as err:
        pytest.fail(str(err), pytrace=False)
    yield served
    stop_served(served)
