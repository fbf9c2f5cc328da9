"""LLM stages on vLLM through ``ray.data.llm``: continuous batching on GPU engine replicas.

For a role with ``backend: vllm`` each LLM stage of its group (e.g. disambiguate -> translate -> ov)
becomes one ``ray.data.llm`` processor pass: Preprocess -> PrepareMultimodal (media roles) ->
ChatTemplate -> Tokenize -> vLLM engine -> Detokenize -> Postprocess. The stage classes of
``pipelines.stages`` are reused without a backend (their ``setup`` is never called): ``request(row)``
builds the prompt, few-shot turns and media, ``accept(row, text)`` stores the answer, so both paths
give the same columns. Rows that are not "ok", that miss a column, whose request cannot be built, or
that need no request (``request`` returned None) skip the engine: their ``__inference_error__`` is set
to ``SKIP``, which every ``ray.data.llm`` stage passes through untouched. An engine error fails its
row with the reason (``core.stage.fail``), as ``LLMStage`` does for a failed request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from core.llm.base import LLMConfig, request_problem
from core.llm.openai_backend import chat_messages
from core.stage import OK, Stage, fail
from pipelines.stages import LLMStage

log = logging.getLogger(__name__)

SKIP = "emer:skip"  # __inference_error__ of rows that bypass the engine (Ray skips error rows)
ERROR = "__inference_error__"
COLUMNS = "__emer_columns"  # the row's own columns, kept by postprocess (Ray adds many of its own)
PASSES = ("messages", "sampling_params", ERROR, COLUMNS)


def bare_stage(cls: type[LLMStage], cfg: Any) -> LLMStage:
    """An instance of ``cls`` for ``request`` / ``accept`` only: no ``setup``, hence no backend."""
    stage = cls.__new__(cls)
    stage.cfg, stage.options, stage._shared = cfg, {}, []
    stage.configure()
    return stage


def sampling_params(llm: LLMConfig) -> dict[str, Any]:
    """vLLM ``SamplingParams`` kwargs from the role config."""
    return {
        "max_tokens": llm.max_new_tokens,
        "min_tokens": llm.min_new_tokens,
        "temperature": llm.temperature,
    }


def media_limits(cls: type[Stage], cfg: Any) -> dict[str, int]:
    """vLLM's ``limit_mm_per_prompt`` by what the stage needs: images up to the frames sent, one audio."""
    limits = {}
    if "frames" in cls.needs:
        limits["image"] = getattr(cfg, "video_prompt_frames", 0) or getattr(cfg, "frames", 16)
    if "audio" in cls.needs:
        limits["audio"] = 1
    return limits


def engine_kwargs(llm: LLMConfig, limits: dict[str, int]) -> dict[str, Any]:
    """The vLLM engine arguments of one role (names as vLLM calls them)."""
    kwargs: dict[str, Any] = {
        "dtype": llm.dtype,
        "tensor_parallel_size": llm.tensor_parallel_size,
        "pipeline_parallel_size": llm.pipeline_parallel_size,
    }
    if llm.max_model_len:
        kwargs["max_model_len"] = llm.max_model_len
    if limits:
        kwargs["limit_mm_per_prompt"] = limits
    return kwargs


def processor_config(
    cls: type[LLMStage], cfg: Any, resources: dict[str, float] | None = None, runtime_env: dict | None = None
):
    """The ``vLLMEngineProcessorConfig`` of stage ``cls`` (its role's model, batching and parallelism).

    ``resources``: custom Ray resources per GPU (e.g. ``{llm: 1}``), asked through the engine's
    placement bundles (one bundle of one GPU per tensor/pipeline worker)."""
    from ray.data.llm import vLLMEngineProcessorConfig

    llm = cfg.llm(cls.role_for(cfg))
    limits = media_limits(cls, cfg)
    extra = {}
    if resources:
        extra["placement_group_config"] = {"bundle_per_worker": {"GPU": 1, **resources}}
    return vLLMEngineProcessorConfig(
        model_source=llm.model,
        engine_kwargs=engine_kwargs(llm, limits),
        batch_size=llm.batch_size,
        concurrency=llm.concurrency,
        prepare_multimodal_stage={"enabled": bool(limits), "apply_sys_msg_formatting": True},
        should_continue_on_error=True,
        runtime_env=runtime_env,
        **extra,
    )


class Preprocess:
    """Row -> the row plus vLLM chat ``messages`` and ``sampling_params`` (or ``SKIP``)."""

    def __init__(self, cls: type[LLMStage], cfg: Any) -> None:
        self.stage = bare_stage(cls, cfg)
        self.sampling = sampling_params(self.stage.llm_cfg)

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        row.setdefault("outcome", OK)
        messages = self._messages(row) if row["outcome"] == OK else None
        row[COLUMNS] = [c for c in row if c not in PASSES]  # after request(): it may fill a column
        if messages is None:
            return {**row, ERROR: SKIP}
        return {**row, "messages": messages, "sampling_params": dict(self.sampling), ERROR: ""}

    def _messages(self, row: dict[str, Any]) -> list[dict] | None:
        st = self.stage
        missing = [c for c in st.needs if c not in row]
        if missing:
            fail(row, st.name, f"stage {st.name} needs columns {missing} that no earlier stage made")
            return None
        try:
            req = st.request(row)
        except Exception as err:  # noqa: BLE001 - a row whose input cannot be prepared fails alone
            fail(row, st.name, f"cannot build the {st.role} request: {type(err).__name__}: {err}")
            return None
        if req is None:
            return None
        problem = request_problem(req, st.kind)
        if problem is None:
            try:
                return chat_messages(req)
            except ValueError as err:
                problem = f"bad input: {err}"
        fail(row, st.name, f"{st.role} LLM ({_model(st.llm_cfg)}): {problem}")
        return None


class Postprocess:
    """Engine output -> our columns: ``accept(row, text)``, or the row failed with the engine's error.

    It runs after the processor, on every row: error and skipped rows bypass Ray's own postprocess,
    which therefore keeps rows whole (``keep``), so that a block's rows all have the same columns."""

    def __init__(self, cls: type[LLMStage], cfg: Any) -> None:
        self.stage = bare_stage(cls, cfg)

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        own = {c: row.get(c) for c in row[COLUMNS]}
        error = row.get(ERROR) or ""
        if error != SKIP and own.get("outcome", OK) == OK:
            st = self.stage
            if error:
                fail(own, st.name, f"{st.role} LLM ({_model(st.llm_cfg)}): vllm: {error}")
            else:
                st.accept(own, (row.get("generated_text") or "").strip())
        for c in (*self.stage.produces, "stage", "reason"):
            own.setdefault(c, None)
        return own


def _model(llm: LLMConfig) -> str:
    return f"{llm.backend}:{llm.model}"


def keep(row: dict[str, Any]) -> dict[str, Any]:
    """The processor's own postprocess: the row as the engine left it (``Postprocess`` follows)."""
    return row


def build_stage_processor(cls: type[LLMStage], cfg: Any, **config: Any):
    """The ``ray.data.llm`` processor of stage ``cls`` (``config``: see ``processor_config``)."""
    from ray.data.llm import build_processor

    return build_processor(
        processor_config(cls, cfg, **config),
        preprocess=Preprocess(cls, cfg),
        postprocess=keep,  # Postprocess runs after the processor, on every row (see vllm_stages)
    )


def vllm_stages(
    ds: Any,
    stages: Sequence[type[LLMStage]],
    cfg: Any,
    resources: dict[str, float] | None = None,
    runtime_env: dict | None = None,
    build: Callable[..., Any] | None = None,
) -> Any:
    """``ds`` through the LLM stages of one group, one processor pass each, in order (lazy): what
    ``map_stages`` gives for a group whose role runs on vLLM; the sink must follow in a ``map_stages``
    of its own. ``resources``: custom Ray resources per GPU (``stages.<group>.resources``);
    ``build``: the processor factory (default ``build_stage_processor``; tests give an engine-free one)."""
    for cls in stages:
        if not issubclass(cls, LLMStage):
            raise ValueError(f"stage {cls.name} is no LLM stage: it cannot run on vLLM")
        log.info("stage %s: vLLM processor for %s", cls.name, cfg.llm(cls.role_for(cfg)).model)
        processor = (build or build_stage_processor)(cls, cfg, resources=resources, runtime_env=runtime_env)
        ds = processor(ds).map(Postprocess(cls, cfg))
    return ds
