"""The one LLM interface of the annotation pipeline: config, request, result, backend base class.

A backend turns a list of ``LLMRequest`` (prompt text plus optional media: JPEG frames and/or a
16 kHz mono float32 waveform) into one ``LLMResult`` per request, in order. A failed request is data
(``LLMResult.error`` holds the reason), never an exception: one bad clip must not sink a batch.
``LLMConfig`` is the frozen config of every LLM call: one role (audio / video / text) of the
annotation section, or the evaluation's grouping / extraction LLM (``evaluate.llm``).
"""

from __future__ import annotations

import dataclasses
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from core.config import Config, check_choice, check_range
from core.llm.prompts import PROMPTS, render, system_for
from core.llm.telemetry import model_tag, observe_latency, record_results
from core.schema import SAMPLE_RATE
from core.secrets import redact_url

BACKENDS = ("transformers", "openai", "vllm", "signal")
INPUT_KINDS = ("text", "audio", "video", "omni", "asr")  # the kinds of input a backend is asked for
# asr: speech to text (core.llm.asr): request.audio, the prompt optional (a hint of words, names)
DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclasses.dataclass(frozen=True)
class LLMConfig(Config):
    """One LLM role. Keys are named as seen from the run config, e.g. ``annotate.audio.model``.

    backend: ``transformers`` (in-process HF model), ``openai`` (any OpenAI-compatible endpoint) or
    ``vllm`` (annotation only: a ``ray.data.llm`` vLLM engine stage, ``pipelines.vllm_stage``; needs the
    ``vllm`` extra and GPUs). model: a local folder or hub id (transformers / vllm), or the
    endpoint's model name (openai). concurrency: requests in flight per worker (openai) or engine
    replicas (vllm); the transformers backend runs one batch of ``batch_size`` at a time.
    prompts: per prompt name, an instruction text replacing the paper's default (see
    ``core.llm.prompts``); data fields (subtitle, clues) are always appended, quoted, by the renderer.
    examples: per prompt name, few-shot turns sent before the request, each
    ``{"input": {data field: value}, "output": "answer"}``; the input is rendered like a real request.
    The papers use none (zero-shot); a preset for a small model may add some (configs/demo.yaml).
    vllm only, named as vLLM calls them: max_model_len (0 = the model's), tensor_parallel_size and
    pipeline_parallel_size (GPUs per engine replica = their product); dtype is passed on too;
    engine_kwargs: any further vLLM engine argument (``enforce_eager``, ``gpu_memory_utilization``,
    ``max_num_seqs``...), engine_env: ``VLLM_*`` variables of the engine's actors
    (``VLLM_CPU_KVCACHE_SPACE``...). An engine replica's placement bundle per worker is the role's
    ``num_gpus`` GPUs plus its stage's CPUs and custom resources (``annotate.stages.<step>``), so the
    same code runs on CPU (``num_gpus: 0``) and GPU nodes.
    ``signal`` is no LLM: the annotation's audio / video clue roles only, measured by the
    ``pipelines.signals`` package (eGeMAPS; MTCNN + a facial-expression classifier) in their stage;
    ``model`` is then a free-text name of the components, and sampling and prompts are unused.
    """

    backend: str = "transformers"
    model: str = "Qwen/Qwen2-7B-Instruct"
    model_class: str = ""  # transformers class name; empty: the role's default
    revision: str = ""  # hub revision (branch, tag or commit) to load; empty: the default branch
    base_url: str = ""  # openai: endpoint, e.g. http://127.0.0.1:8000/v1; empty: api.openai.com
    api_key_env: str = "OPENAI_API_KEY"  # name of the variable holding the key; empty: no key
    max_new_tokens: int = 512
    min_new_tokens: int = 0
    temperature: float = 0.0  # 0: greedy
    batch_size: int = 4
    reuse_prefix: bool = True  # transformers, text: the batch's shared prompt head run once per step
    concurrency: int = 4
    timeout_s: float = 120.0
    max_retries: int = 4
    retry_backoff_s: float = 1.0  # first wait; doubles each retry, capped at 60 s
    max_retry_after_s: float = 300.0  # longest Retry-After waited for; a longer one fails the request
    stop_after_fatal: int = 8  # openai: after this many 401/403/404 in a row, send no more; 0 = never
    num_gpus: float = 0.0
    dtype: str = "auto"
    max_model_len: int = 0  # vllm: context length; 0 = the model's
    tensor_parallel_size: int = 1  # vllm: GPUs one engine shards each layer over
    pipeline_parallel_size: int = 1  # vllm: pipeline stages of one engine
    engine_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)  # vllm: more engine args
    engine_env: dict[str, str] = dataclasses.field(default_factory=dict)  # vllm: VLLM_* of its actors
    prompts: dict[str, str] = dataclasses.field(default_factory=dict)
    examples: dict[str, list] = dataclasses.field(default_factory=dict)
    cache_dir: str = ""  # answers of ``Completer`` calls, keyed by a hash of the request; local or s3://

    def problems(self) -> list[str]:
        out: list[str] = []
        check_choice(out, "backend", self.backend, BACKENDS)
        check_choice(out, "dtype", self.dtype, DTYPES)
        if not self.model.strip():
            out.append("model = '': must name a model (local folder, hub id or endpoint model name)")
        ranges = (
            ("max_new_tokens", 1, None),
            ("min_new_tokens", 0, None),
            ("batch_size", 1, None),
            ("concurrency", 1, 1024),
            ("max_retries", 0, 100),
            ("temperature", 0.0, 2.0),
            ("timeout_s", 0.001, None),
            ("retry_backoff_s", 0.0, 600.0),
            ("max_retry_after_s", 0.0, 3600.0),
            ("stop_after_fatal", 0, None),
            ("num_gpus", 0.0, None),
            ("max_model_len", 0, None),
            ("tensor_parallel_size", 1, 1024),
            ("pipeline_parallel_size", 1, 1024),
        )
        for key, lo, hi in ranges:
            check_range(out, key, getattr(self, key), lo, hi)
        if self.base_url and not self.base_url.startswith(("http://", "https://")):
            out.append(f"base_url = {redact_url(self.base_url)!r}: must start with http:// or https://")
        if self.min_new_tokens > self.max_new_tokens:
            out.append(
                f"min_new_tokens = {self.min_new_tokens}: must be <= max_new_tokens ({self.max_new_tokens})"
            )
        for name in self.prompts:
            if name not in PROMPTS:
                out.append(f"prompts.{name}: unknown prompt name; known: {', '.join(sorted(PROMPTS))}")
            elif not str(self.prompts[name]).strip():
                out.append(f"prompts.{name} = '': must be an instruction text (or leave the key out)")
        for name, shots in self.examples.items():
            out += _example_problems(name, shots)
        return out + _engine_problems(self.engine_kwargs, self.engine_env)

    def turns(self, name: str) -> list[tuple[str, str]]:
        """The few-shot (user, assistant) turns for prompt ``name``, rendered like real requests."""
        return [
            (render(name, self.prompts, **shot["input"]), str(shot["output"]))
            for shot in self.examples.get(name, [])
        ]


# engine arguments made from the role's own keys: set there, never in ``engine_kwargs``
ENGINE_KEYS = {
    "model": "model",
    "dtype": "dtype",
    "max_model_len": "max_model_len",
    "tensor_parallel_size": "tensor_parallel_size",
    "pipeline_parallel_size": "pipeline_parallel_size",
    "limit_mm_per_prompt": "the stage (the frames / audio it sends)",
    "task_type": "the stage (generate)",
}
ENGINE_ENV = re.compile(r"VLLM_[A-Z0-9_]+")


def _engine_problems(kwargs: object, env: object) -> list[str]:
    if not isinstance(kwargs, dict):
        return [f"engine_kwargs = {kwargs!r}: must be a mapping of vLLM engine arguments"]
    out = [
        f"engine_kwargs.{k}: set by {ENGINE_KEYS[k]}; give it there, not in engine_kwargs"
        for k in kwargs
        if k in ENGINE_KEYS
    ]
    if not isinstance(env, dict):
        return [*out, f"engine_env = {env!r}: must be a mapping of VLLM_* variables to values"]
    for k, v in env.items():
        if not ENGINE_ENV.fullmatch(str(k)):
            out.append(f"engine_env.{k}: only vLLM's own variables (VLLM_...) may be set here")
        elif not isinstance(v, (str, int, float)) or isinstance(v, bool):
            out.append(f"engine_env.{k} = {v!r}: must be a string or a number")
    return out


def _example_problems(name: str, shots: object) -> list[str]:
    key = f"examples.{name}"
    if name not in PROMPTS:
        return [f"{key}: unknown prompt name; known: {', '.join(sorted(PROMPTS))}"]
    if not isinstance(shots, list):
        return [f"{key}: must be a list of {{input: {{...}}, output: ...}} examples"]
    tpl, out = PROMPTS[name], []
    fields = set(tpl.data) | set(tpl.params)
    for i, shot in enumerate(shots):
        ok = isinstance(shot, dict) and set(shot) == {"input", "output"} and isinstance(shot["input"], dict)
        if not ok or not isinstance(shot["output"], str):
            out.append(f"{key}[{i}]: must be a mapping with 'input' (a mapping) and 'output' (a string)")
        elif set(shot["input"]) != fields:
            out.append(f"{key}[{i}].input: must give exactly {', '.join(sorted(fields)) or 'nothing'}")
    return out


def request_for(cfg: LLMConfig, name: str, values: dict | None = None, **media: object) -> LLMRequest:
    """The request for prompt ``name`` in the role configured by ``cfg``: the rendered prompt, the
    injection guard as its system message (when the prompt carries data), the configured few-shot
    turns, and ``media`` (frames / audio / fps)."""
    return LLMRequest(
        prompt=render(name, cfg.prompts, **(values or {})),
        system=system_for(name),
        examples=cfg.turns(name),
        **media,
    )


@dataclasses.dataclass
class LLMRequest:
    """One generation: prompt text (already rendered) and optional media.

    frames: JPEG-encoded frames in time order (video role / image-capable endpoints).
    audio: 16 kHz mono float32 waveform (audio role). fps: frames per second of the sampled frames
    (``len(frames) / clip duration``), used for temporal positions where the model has them.
    system: the system message (the prompts' injection guard), if any. examples: few-shot
    (user, assistant) turns sent before the prompt, text only.
    """

    prompt: str
    frames: list[bytes] | None = None
    audio: np.ndarray | None = None
    fps: float | None = None
    id: str = ""
    system: str | None = None
    examples: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        if self.frames is not None and not isinstance(self.frames, list):
            self.frames = list(self.frames)  # Ray Data hands numpy object arrays / tuples

    def __repr__(self) -> str:  # media would flood logs
        media = f", frames={len(self.frames)}" if self.frames else ""
        media += f", audio={self.audio.shape[0] / SAMPLE_RATE:.2f}s" if self.audio is not None else ""
        return f"LLMRequest(id={self.id!r}, prompt={self.prompt[:40]!r}...{media})"


def conversation(req: LLMRequest, content: object) -> list[dict]:
    """Chat messages for ``req`` with ``content`` (its prompt, possibly with media parts) as the last
    user turn: the system message first, then the few-shot turns, as every backend sends them."""
    messages: list[dict] = [{"role": "system", "content": req.system}] if req.system else []
    for user, assistant in req.examples:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return [*messages, {"role": "user", "content": content}]


@dataclasses.dataclass
class LLMResult:
    """The answer to one request: ``text`` on success, else ``error`` (a reason naming the cause)."""

    text: str | None = None
    error: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None


class LLMBackend(ABC):
    """Base of every backend. Heavy state (weights, clients) is made once in ``__init__``."""

    def __init__(self, cfg: LLMConfig, kind: str) -> None:
        if kind not in INPUT_KINDS:
            raise ValueError(f"kind {kind!r}: must be one of {', '.join(INPUT_KINDS)}")
        self.cfg = cfg
        self.kind = kind
        self.text_only = True  # an endpoint backend may accept media in any role
        self.steps: list[str] = []  # the annotation roles served (set by their stages), for metrics

    @abstractmethod
    def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        """One result per request, same order; never raises for a bad request."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients / memory; the default does nothing."""

    def metric_tags(self) -> dict[str, str]:
        """Tags of this backend's LLM metrics: ``role``, the annotation steps it serves (``steps``, e.g.
        ``disambiguate+ov`` when two steps share one loaded model; else its input kind) and its
        (shortened) model."""
        role = "+".join(self.steps) if self.steps else self.kind
        return {"role": role, "model": model_tag(self.cfg.model)}

    def record(self, results: Sequence[LLMResult], seconds: float | None = None) -> None:
        """Count ``results`` in the LLM metrics (requests, tokens, errors by kind, retries) and, when
        given, ``seconds`` as one call's latency. Every backend calls it once per answered request
        or batch, so all report the same way (``core.llm.telemetry``)."""
        record_results(self.metric_tags(), results, seconds)

    def observe_latency(self, seconds: float) -> None:
        """One call's latency alone (e.g. one HTTP attempt of a request that is retried)."""
        observe_latency(self.metric_tags(), seconds)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, model={self.cfg.model!r})"

    def check_request(self, req: LLMRequest) -> str | None:
        """Why ``req`` cannot be asked of this backend's input kind, or None."""
        return request_problem(req, self.kind, self.text_only)


def request_problem(req: LLMRequest, kind: str, text_only: bool = True) -> str | None:
    """Why ``req`` cannot be asked of a model of input ``kind`` (``INPUT_KINDS``), or None (every
    backend, and the vLLM Ray Data stage, checks requests with it). ``text_only``: text refuses media."""
    if kind == "asr" and req.audio is None:
        return "asr role needs request.audio (16 kHz mono float32)"
    if kind != "asr" and (not isinstance(req.prompt, str) or not req.prompt.strip()):
        return "empty prompt"
    if kind == "audio" and req.audio is None:
        return "audio role needs request.audio (16 kHz mono float32)"
    if kind == "video" and not req.frames:
        return "video role needs request.frames (JPEG bytes)"
    if kind == "omni" and (not req.frames or req.audio is None):
        return "omni role needs request.frames (JPEG bytes) and request.audio (16 kHz mono float32)"
    if kind == "text" and text_only and (req.frames or req.audio is not None):
        return "the text role takes no media; send frames / audio to the video / audio role"
    if req.audio is not None:
        a = req.audio
        if not isinstance(a, np.ndarray) or a.ndim != 1 or a.dtype != np.float32:
            return (
                f"audio must be a 1-D float32 numpy array at {SAMPLE_RATE} Hz, got "
                f"{type(a).__name__} {getattr(a, 'dtype', '')} shape {getattr(a, 'shape', '')}"
            )
        if a.size == 0 or not np.isfinite(a).all():
            return "audio is empty or holds NaN/inf samples"
    return None
