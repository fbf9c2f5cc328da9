"""Speech to text, the ``asr`` input kind of the LLM layer: one ``LLMConfig``, two backends.

``create_backend(cfg, "asr")`` gives ``WhisperBackend`` for ``backend: transformers`` (a Whisper
checkpoint in-process: ``AutoModelForSpeechSeq2Seq`` and its processor, batched, on a GPU when the
role asks ``num_gpus``) or ``TranscriptionBackend`` for ``backend: openai`` (an OpenAI-compatible
``/v1/audio/transcriptions`` endpoint, e.g. ``vllm serve openai/whisper-large-v3``: the clip goes as
a 16-bit WAV file, with the same retries, fatal-error stop and key handling as chat completions).
A request is an ``LLMRequest`` whose ``audio`` is the clip (16 kHz mono float32) and whose optional
``prompt`` is a hint (names, words) where the endpoint takes one; the transcript is the result's
``text``. The language is Whisper's own detection. Tiny random-weight Whisper: ``core.llm.tiny_whisper``.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Sequence

from core.llm.base import LLMBackend, LLMConfig, LLMRequest, LLMResult
from core.llm.openai_backend import MalformedResponse, OpenAIBackend
from core.llm.transformers_backend import pick_device
from core.schema import SAMPLE_RATE

log = logging.getLogger(__name__)

DEFAULT_CLASS = "AutoModelForSpeechSeq2Seq"


def wav_bytes(audio) -> bytes:
    """16 kHz mono float32 -> the bytes of a 16-bit PCM WAV file."""
    import numpy as np
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(audio, -1.0, 1.0), SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


class WhisperBackend(LLMBackend):
    """A Whisper checkpoint (local folder or hub id) loaded once; ``generate`` transcribes in batches."""

    def __init__(self, cfg: LLMConfig, kind: str) -> None:
        super().__init__(cfg, kind)
        import torch
        import transformers

        name = cfg.model_class or DEFAULT_CLASS
        cls = getattr(transformers, name, None)
        if cls is None:
            raise ValueError(f"model_class = {name!r}: not a transformers class; use {DEFAULT_CLASS}")
        self.device = pick_device(cfg.num_gpus)
        rev = {"revision": cfg.revision} if cfg.revision else {}
        dtype = "auto" if cfg.dtype == "auto" else getattr(torch, cfg.dtype)
        try:
            self.model = cls.from_pretrained(cfg.model, dtype=dtype, **rev).to(self.device).eval()
            self.processor = transformers.AutoProcessor.from_pretrained(cfg.model, **rev)
        except OSError as err:
            raise OSError(
                f"cannot load asr model {cfg.model!r} with {name}: {err}. Set model to a local Whisper "
                "folder (or a hub id when online); a tiny test model: core.llm.tiny_whisper"
            ) from err
        limit = getattr(self.model.config, "max_target_positions", 448)
        self.max_new_tokens = max(1, min(cfg.max_new_tokens, limit - 4))  # the prompt tokens fit too

    def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        results: list[LLMResult | None] = [None] * len(requests)
        ready = []
        for i, req in enumerate(requests):
            problem = self.check_request(req)
            if problem:
                results[i] = LLMResult(error=problem)
            else:
                ready.append((i, req))
        self.record([r for r in results if r is not None])
        for start in range(0, len(ready), self.cfg.batch_size):
            chunk = ready[start : start + self.cfg.batch_size]
            began = time.perf_counter()
            answers = self._isolating([req for _, req in chunk])
            self.record(answers, time.perf_counter() - began)
            for (i, _), res in zip(chunk, answers):
                results[i] = res
        return [r if r is not None else LLMResult(error="internal: no result") for r in results]

    def _isolating(self, reqs: list[LLMRequest]) -> list[LLMResult]:
        """One batch; when it fails, request by request, so the error lands on its cause."""
        try:
            return self._run(reqs)
        except Exception as err:  # noqa: BLE001 - one bad clip must not sink the batch
            if len(reqs) == 1:
                return [LLMResult(error=f"transcription failed: {type(err).__name__}: {err}")]
            return [res for req in reqs for res in self._isolating([req])]

    def _run(self, reqs: list[LLMRequest]) -> list[LLMResult]:
        import torch

        audio = [r.audio for r in reqs]
        enc = self.processor(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt")
        feats = enc.input_features.to(self.device, self.model.dtype)
        gen = {"max_new_tokens": self.max_new_tokens, "do_sample": self.cfg.temperature > 0}
        if self.cfg.min_new_tokens:
            gen["min_new_tokens"] = min(self.cfg.min_new_tokens, self.max_new_tokens)
        if self.cfg.temperature > 0:
            gen["temperature"] = self.cfg.temperature
        with torch.inference_mode():
            out = self.model.generate(feats, **gen)
        texts = self.processor.batch_decode(out, skip_special_tokens=True)
        return [LLMResult(text=t.strip(), completion_tokens=int(out.shape[1])) for t in texts]


class TranscriptionBackend(OpenAIBackend):
    """``/v1/audio/transcriptions`` of an OpenAI-compatible endpoint, one WAV file per request."""

    def messages(self, req: LLMRequest) -> dict:  # type: ignore[override] - the request body here
        body: dict = {"file": ("clip.wav", wav_bytes(req.audio), "audio/wav")}
        if req.prompt and req.prompt.strip():
            body["prompt"] = req.prompt
        return body

    def _create(self, body: dict):  # type: ignore[override]
        start = time.perf_counter()
        try:
            return self._client.audio.transcriptions.create(
                model=self.cfg.model, response_format="json", temperature=self.cfg.temperature, **body
            )
        finally:
            self.observe_latency(time.perf_counter() - start)

    def parse(self, resp: object, attempts: int) -> LLMResult:
        text = resp if isinstance(resp, str) else getattr(resp, "text", None)
        if not isinstance(text, str):
            raise MalformedResponse(f"no transcript text in the answer ({type(resp).__name__})")
        return LLMResult(text=text.strip(), attempts=attempts)


ASR_CLASSES: dict[str, type[LLMBackend]] = {"transformers": WhisperBackend, "openai": TranscriptionBackend}
