"""``create_backend``: the backend class named by an ``LLMConfig``, for one input kind.

Kept apart from ``core.llm.base`` (which every backend imports) so that the base imports no backend.
The backends defer their heavy libraries (torch, transformers, openai) to construction time.
``vllm`` is no in-process backend: it runs as a ``ray.data.llm`` stage of the annotation pipeline
(``pipelines.vllm_stage``), so asking for it here is an error that says where to use it instead;
so is ``signal`` (no LLM: the annotation's clue stages measure the clip, ``pipelines.signals``).
"""

from __future__ import annotations

from core.llm.asr import ASR_CLASSES
from core.llm.base import LLMBackend, LLMConfig
from core.llm.openai_backend import OpenAIBackend
from core.llm.transformers_backend import TransformersBackend

_CLASSES: dict[str, type[LLMBackend]] = {
    "transformers": TransformersBackend,
    "openai": OpenAIBackend,
}

VLLM_ONLY_IN_ANNOTATION = (
    "backend = 'vllm' runs only as a Ray Data stage of the annotation pipeline (ray.data.llm, GPU "
    "nodes with the vllm extra); for any other LLM call (e.g. evaluate.llm) start `vllm serve MODEL` "
    "and use backend = 'openai' with base_url = 'http://HOST:8000/v1'"
)


SIGNAL_ONLY_IN_CLUES = (
    "backend = 'signal' is no language model: it measures the audio / video of a clip in the "
    "annotation's audio and video clue stages (pipelines.signals); give this role an LLM backend"
)


def create_backend(cfg: LLMConfig, kind: str) -> LLMBackend:
    """The backend named by ``cfg.backend`` for input ``kind`` (``INPUT_KINDS``)."""
    if cfg.backend == "vllm":
        raise ValueError(VLLM_ONLY_IN_ANNOTATION)
    if cfg.backend == "signal":
        raise ValueError(SIGNAL_ONLY_IN_CLUES)
    if kind == "asr":  # speech to text: Whisper in-process, or an endpoint's /v1/audio/transcriptions
        return ASR_CLASSES[cfg.backend](cfg, kind)
    return _CLASSES[cfg.backend](cfg, kind)
