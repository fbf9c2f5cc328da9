"""The one LLM layer: config, request/result, backends, the answer-caching ``Completer``.

``create_backend(LLMConfig, kind)`` returns the transformers or openai backend
(``vllm`` runs as a Ray Data stage of the annotation: ``pipelines.vllm_stage``);
``Completer(LLMConfig)`` is the ``complete(prompts) -> answers`` callable evaluation uses;
``prompts`` holds the papers' prompts (one registry), ``labels`` the one label-list parser;
``tiny`` builds random-weight checkpoints of the real model classes for tests.
"""

from core.llm.backends import create_backend
from core.llm.base import (
    BACKENDS,
    INPUT_KINDS,
    LLMBackend,
    LLMConfig,
    LLMRequest,
    LLMResult,
)
from core.llm.complete import Completer

__all__ = [
    "BACKENDS",
    "INPUT_KINDS",
    "Completer",
    "LLMBackend",
    "LLMConfig",
    "LLMRequest",
    "LLMResult",
    "create_backend",
]
