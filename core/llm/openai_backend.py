"""OpenAI-compatible endpoint backend (OpenAI, vLLM / SGLang servers, gateways) via the ``openai`` client.

Requests run in a thread pool of ``cfg.concurrency``; each has its own timeout and its own retry loop
(the client's built-in retries are off so the behaviour is explicit): 408/429/5xx, timeouts,
connection errors and malformed answers are retried with exponential backoff (``retry_backoff_s``
doubling, capped at 60 s; a numeric ``Retry-After`` header wins up to ``max_retry_after_s``, and a
longer one ends the request at once rather than retrying before the server allows); other
errors (400, 401, 403, 404, 409, 422 ...) fail at once; after ``stop_after_fatal`` answers of
401/403/404 in a row (a wrong key, model or endpoint) no more requests are sent: they fail with that
reason. Exhausted retries give an ``LLMResult`` with the last reason, not an exception.
Frames go as base64 JPEG ``image_url`` parts, audio as an ``input_audio`` WAV part.
Metrics (``LLMBackend.record``): every request once (tokens, retries, error kind), every HTTP
attempt's seconds in ``emer_llm_latency_seconds``.
The key is read from the variable named by ``cfg.api_key_env``; it is scrubbed from every error
string and never logged or shown in a repr.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from core.failures import FATAL_HINT, FatalStreak
from core.llm.base import LLMBackend, LLMConfig, LLMRequest, LLMResult, conversation
from core.schema import SAMPLE_RATE
from core.secrets import redact_url

logger = logging.getLogger(__name__)

RETRY_STATUS = {408, 429}
MAX_BACKOFF_S = 60.0
JPEG_MAGIC = b"\xff\xd8\xff"


class MalformedResponse(Exception):
    """The endpoint answered 2xx but not with a usable chat completion."""


def read_api_key(env_name: str, base_url: str = "") -> str:
    """The key from ``env_name`` ('' when no key is configured); the error names the variable only.

    A missing key is an error for the OpenAI API itself (no ``base_url``); a self-hosted endpoint
    (``base_url`` set) is called without one, and answers 401 if it does need one.
    """
    if not env_name:
        return ""
    key = os.environ.get(env_name, "")
    if not key and not base_url:
        raise ValueError(
            f"environment variable {env_name} is not set: export the endpoint's API key in it, "
            "point base_url at an OpenAI-compatible server, or set api_key_env to ''"
        )
    if not key:
        logger.info("$%s is not set: calling %s without an API key", env_name, redact_url(base_url))
    return key


def backoff_s(
    attempt: int, base: float, retry_after: float | None = None, max_retry_after: float = MAX_BACKOFF_S
) -> float:
    """Seconds before retry ``attempt`` (0-based): base * 2**attempt + up to 10 % jitter, capped at
    60 s. A numeric Retry-After up to ``max_retry_after`` wins (the server knows best); one above it
    is not waited for here (``_with_retries`` gives up instead of retrying early)."""
    if retry_after is not None and 0 <= retry_after <= max_retry_after:
        return retry_after
    return min(MAX_BACKOFF_S, base * (2**attempt) * (1 + 0.1 * random.random()))


def encode_wav(audio) -> str:
    """16 kHz mono float32 -> base64 of a 16-bit PCM WAV file."""
    import numpy as np
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(audio, -1.0, 1.0), SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return base64.b64encode(buf.getvalue()).decode("ascii")


class OpenAIBackend(LLMBackend):
    """Chat completions against ``cfg.base_url`` with model ``cfg.model``."""

    def __init__(self, cfg: LLMConfig, kind: str) -> None:
        super().__init__(cfg, kind)
        import openai

        self._secret = read_api_key(cfg.api_key_env, cfg.base_url)
        self._client = openai.OpenAI(
            api_key=self._secret or "no-key",
            base_url=cfg.base_url or None,
            timeout=cfg.timeout_s,
            max_retries=0,
        )
        self.sleep: Callable[[float], None] = time.sleep  # replaceable in tests
        self._fatal = FatalStreak(cfg.stop_after_fatal)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        url = redact_url(self.cfg.base_url)
        return f"OpenAIBackend(kind={self.kind!r}, model={self.cfg.model!r}, base_url={url!r})"

    def close(self) -> None:
        self._client.close()

    def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        if not requests:
            return []
        with ThreadPoolExecutor(max_workers=min(self.cfg.concurrency, len(requests))) as pool:
            return list(pool.map(self._one, requests))

    # ------------------------------------------------------------------ one request

    def _one(self, req: LLMRequest) -> LLMResult:
        problem = self.check_request(req)
        if problem is None:
            try:
                messages = self.messages(req)
            except ValueError as err:
                problem = f"bad input: {err}"
        if problem is not None:
            res = LLMResult(error=problem)
        else:
            res = self._send(req, messages)
        self.record([res])  # latency is observed per HTTP attempt, in _create
        return res

    def _send(self, req: LLMRequest, messages: list[dict]) -> LLMResult:
        with self._lock:
            refused = self._fatal.tripped()
        if refused:  # the endpoint refused the last requests for good: do not send more
            return LLMResult(error=f"not sent: {refused}; {FATAL_HINT}")
        res = self._with_retries(req, messages)
        with self._lock:
            self._fatal.observe(not res.ok, res.error)
        return res

    def _create(self, messages: list[dict]):
        """One HTTP request; its seconds go into the latency histogram, answered or not."""
        start = time.perf_counter()
        try:
            return self._client.chat.completions.create(
                model=self.cfg.model,
                messages=messages,
                max_tokens=self.cfg.max_new_tokens,
                temperature=self.cfg.temperature,
            )
        finally:
            self.observe_latency(time.perf_counter() - start)

    def _with_retries(self, req: LLMRequest, messages: list[dict]) -> LLMResult:
        import openai

        reason = ""
        for attempt in range(self.cfg.max_retries + 1):
            retry_after = None
            try:
                return self.parse(self._create(messages), attempt + 1)
            except (openai.APITimeoutError, openai.APIConnectionError) as err:
                reason = f"{type(err).__name__}: {err}"
            except (MalformedResponse, openai.APIResponseValidationError, ValueError) as err:
                reason = f"malformed response: {type(err).__name__}: {err}"  # ValueError: body not JSON
            except openai.APIStatusError as err:
                reason = f"HTTP {err.status_code}: {_status_text(err)}"
                if err.status_code not in RETRY_STATUS and err.status_code < 500:
                    return LLMResult(error=self._scrub(reason), attempts=attempt + 1)
                retry_after = _retry_after(err)
                if retry_after is not None and retry_after > self.cfg.max_retry_after_s:
                    reason += (
                        f"; the endpoint asks to retry after {retry_after:g} s, more than "
                        f"max_retry_after_s = {self.cfg.max_retry_after_s:g}: not retried early (raise "
                        "max_retry_after_s to wait, or lower the request rate)"
                    )
                    return LLMResult(error=self._scrub(reason), attempts=attempt + 1)
            except Exception as err:  # noqa: BLE001 - anything else is this request's failure, not the batch's
                return LLMResult(error=self._scrub(f"{type(err).__name__}: {err}"), attempts=attempt + 1)
            if attempt < self.cfg.max_retries:
                wait = backoff_s(attempt, self.cfg.retry_backoff_s, retry_after, self.cfg.max_retry_after_s)
                logger.info(
                    "request %s: %s; retry %d/%d in %.2f s",
                    req.id or "?",
                    self._scrub(reason)[:200],
                    attempt + 1,
                    self.cfg.max_retries,
                    wait,
                )
                self.sleep(wait)
        reason = self._scrub(f"gave up after {self.cfg.max_retries + 1} attempts: {reason}")
        logger.warning("request %s: %s", req.id or "?", reason[:300])
        return LLMResult(error=reason, attempts=self.cfg.max_retries + 1)

    def messages(self, req: LLMRequest) -> list[dict]:
        return chat_messages(req)

    def parse(self, resp: object, attempts: int) -> LLMResult:
        """The result of one answered request (``MalformedResponse`` when it is not usable)."""
        return _parse(resp, attempts)

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text


def chat_messages(req: LLMRequest) -> list[dict]:
    """OpenAI-format chat messages for ``req``.

    The system message and few-shot turns first (``conversation``); in the last user turn media parts
    come first (JPEG frames as ``image_url`` data URLs, audio as a WAV ``input_audio``), then the
    prompt text; without media the content is the plain prompt string.
    """
    parts: list[dict] = []
    for k, frame in enumerate(req.frames or []):
        data = bytes(frame) if isinstance(frame, (bytes, bytearray, memoryview)) else b""
        if not data.startswith(JPEG_MAGIC):
            raise ValueError(f"frame {k} is not JPEG bytes")
        url = "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")
        parts.append({"type": "image_url", "image_url": {"url": url}})
    if req.audio is not None:
        wav = {"data": encode_wav(req.audio), "format": "wav"}
        parts.append({"type": "input_audio", "input_audio": wav})
    if not parts:
        return conversation(req, req.prompt)
    return conversation(req, [*parts, {"type": "text", "text": req.prompt}])


def _parse(resp: object, attempts: int) -> LLMResult:
    choices = getattr(resp, "choices", None)
    if not choices:
        raise MalformedResponse(f"no choices in the answer ({type(resp).__name__})")
    message = getattr(choices[0], "message", None)
    text = getattr(message, "content", None)
    if not isinstance(text, str):
        refusal = getattr(message, "refusal", None)
        raise MalformedResponse(f"no message text{f' (refusal: {refusal})' if refusal else ''}")
    usage = getattr(resp, "usage", None)
    return LLMResult(
        text=text.strip(),
        attempts=attempts,
        prompt_tokens=getattr(usage, "prompt_tokens", None),
        completion_tokens=getattr(usage, "completion_tokens", None),
    )


def _status_text(err) -> str:
    """The error message, plus the body's ``detail`` where the server is not OpenAI-shaped (FastAPI
    servers such as ``transformers serve`` answer ``{"detail": ...}``, which openai does not read)."""
    body = err.body if isinstance(getattr(err, "body", None), dict) else {}
    detail = body.get("detail")
    if detail and str(detail) not in err.message:
        return f"{err.message}: {str(detail)[:300]}"
    return err.message


def _retry_after(err) -> float | None:
    try:
        return float(err.response.headers.get("retry-after"))
    except (AttributeError, TypeError, ValueError):
        return None
