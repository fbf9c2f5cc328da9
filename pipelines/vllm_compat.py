"""vLLM compatibility for Ray 2.60's ``ray.data.llm``: the hook that lets media rows through.

Ray 2.60's PrepareMultimodal stage imports ``parse_chat_messages_async`` from
``vllm.entrypoints.chat_utils``; vLLM 0.32 moved that module to ``vllm.renderers.chat_utils`` and the
0.33 wheel (the GPU nodes' pin in ``ray_cluster.yaml``) lacks the old path too, so every audio / video
/ omni row failed with "vLLM is not installed or failed to import". ``install()`` aliases the old name
to the new module (only where the old one is missing), in the actor that needs it: ``pipelines.
vllm_engine`` calls it before Ray's stage imports vLLM; it is also usable as a Ray
``worker_process_setup_hook`` (``pipelines.vllm_compat.install``).
"""

from __future__ import annotations

import importlib
import logging
import sys

log = logging.getLogger(__name__)

OLD = "vllm.entrypoints.chat_utils"
NEW = "vllm.renderers.chat_utils"
NEEDED = ("parse_chat_messages_async",)  # what Ray 2.60 imports from OLD


def install() -> str:
    """Make ``OLD`` importable: "native" (vLLM has it), "aliased" (to ``NEW``) or "no vllm"."""
    try:
        importlib.import_module(OLD)
        return "native"
    except ModuleNotFoundError as err:
        if err.name == "vllm":
            return "no vllm"
        if err.name != OLD:
            raise
    module = importlib.import_module(NEW)
    missing = [name for name in NEEDED if not hasattr(module, name)]
    if missing:
        raise ImportError(f"{NEW} lacks {missing}: this vLLM does not fit Ray's ray.data.llm (pin a pair)")
    sys.modules[OLD] = module
    importlib.import_module("vllm.entrypoints").chat_utils = module
    log.info("vllm compat: %s aliased to %s", OLD, NEW)
    return "aliased"
