"""``create_backend``: the backend class named by an ``LLMConfig``, for one role.

Kept apart from ``core.llm.base`` (which every backend imports) so that the base imports no backend.
The backends defer their heavy libraries (torch, transformers, vllm, openai) to construction time.
"""

from __future__ import annotations

from core.llm.base import LLMBackend, LLMConfig
from core.llm.openai_backend import OpenAIBackend
from core.llm.transformers_backend import TransformersBackend
from core.llm.vllm_backend import VLLMBackend

_CLASSES: dict[str, type[LLMBackend]] = {
    "transformers": TransformersBackend,
    "openai": OpenAIBackend,
    "vllm": VLLMBackend,
}


def create_backend(cfg: LLMConfig, role: str) -> LLMBackend:
    """The backend named by ``cfg.backend`` for ``role`` (text / audio / video)."""
    return _CLASSES[cfg.backend](cfg, role)
