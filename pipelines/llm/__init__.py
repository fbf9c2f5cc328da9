"""LLM backends behind one interface (``LLMBackend.generate(requests) -> list[LLMResult]``).

``create_backend(LLMConfig, role)`` returns the transformers, openai or vllm backend; ``tiny`` builds
random-weight checkpoints of the real model classes for tests and the offline demo.
"""

from pipelines.llm.base import (
    BACKENDS,
    ROLES,
    SAMPLE_RATE,
    LLMBackend,
    LLMConfig,
    LLMRequest,
    LLMResult,
    create_backend,
)

__all__ = ["BACKENDS", "ROLES", "SAMPLE_RATE", "LLMBackend", "LLMConfig", "LLMRequest", "LLMResult",
           "create_backend"]
