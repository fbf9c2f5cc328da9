"""The LLM metrics every backend reports the same way: requests, tokens, errors by kind, retries, latency.

``LLMBackend.record(results, seconds)`` (``core.llm.base``) calls ``record_results`` with the
backend's tags (``role``: the backend's role, ``model``: the configured model, a local folder
shortened to its name). ``error_kind`` turns an ``LLMResult.error`` reason into a short tag
(``http_429``, ``timeout``, ``connection``, ``malformed``, ``bad_input``, ``not_sent``, ``generate``,
``other``): the reasons stay free text for people, the metric keeps a small set of values.
Outside Ray every call is a no-op (``core.metrics``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from core import metrics

_GAVE_UP = re.compile(r"^gave up after \d+ attempts: ")
_HTTP = re.compile(r"\bHTTP (\d{3})\b")
# Reasons the backends give for a request that could not be built (``LLMBackend.check_request``, bad media).
_BAD_INPUT = (
    "bad input",
    "empty prompt",
    "role needs request",
    "takes no media",
    "audio must be",
    "audio is empty",
)


def error_kind(reason: str | None) -> str:
    """A short, low-cardinality tag for a failure reason (see the module docstring)."""
    text = _GAVE_UP.sub("", str(reason or ""))
    if text.startswith("not sent"):
        return "not_sent"
    http = _HTTP.search(text)
    if http:
        return f"http_{http.group(1)}"
    if "Timeout" in text or "timed out" in text.lower():
        return "timeout"
    if "ConnectionError" in text or "APIConnectionError" in text:
        return "connection"
    if text.startswith("malformed response"):
        return "malformed"
    if text.startswith(_BAD_INPUT) or any(m in text for m in _BAD_INPUT[2:]):
        return "bad_input"
    if "generate failed" in text:
        return "generate"
    return "other"


def model_tag(model: str) -> str:
    """The ``model`` tag: a hub id or endpoint model name as is, a local folder or URI by its last part."""
    if model.startswith(("/", ".", "~", "s3://")):
        return model.rstrip("/").rsplit("/", 1)[-1] or model
    return model


def record_results(tags: Mapping[str, Any], results: Sequence[Any], seconds: float | None = None) -> None:
    """Count ``results`` (``LLMResult``): requests, prompt/completion tokens, errors by kind, retries
    (attempts beyond the first); ``seconds``, when given, is one call's latency."""
    if not results and seconds is None:
        return
    tags = dict(tags)
    metrics.counter("emer_llm_requests").inc(len(results), tags)
    prompt = sum(r.prompt_tokens or 0 for r in results)
    completion = sum(r.completion_tokens or 0 for r in results)
    metrics.counter("emer_llm_tokens").inc(prompt, {**tags, "kind": "prompt"})
    metrics.counter("emer_llm_tokens").inc(completion, {**tags, "kind": "completion"})
    kinds: dict[str, int] = {}
    for r in results:
        if not r.ok:
            kind = error_kind(r.error)
            kinds[kind] = kinds.get(kind, 0) + 1
    for kind, n in kinds.items():
        metrics.counter("emer_llm_errors").inc(n, {**tags, "kind": kind})
    metrics.counter("emer_llm_retries").inc(sum(max(0, (r.attempts or 1) - 1) for r in results), tags)
    if seconds is not None:
        observe_latency(tags, seconds)


def observe_latency(tags: Mapping[str, Any], seconds: float) -> None:
    """One LLM call's seconds into ``emer_llm_latency_seconds``."""
    metrics.histogram("emer_llm_latency_seconds").observe(seconds, dict(tags))
