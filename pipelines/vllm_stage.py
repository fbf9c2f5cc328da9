"""LLM stages on vLLM through ``ray.data.llm``: continuous batching on engine replicas (GPU or CPU).

For a role with ``backend: vllm`` its group's text steps (e.g. disambiguate -> translate -> ov) share
ONE engine: one processor pass whose engine stage runs the steps in order inside its actor
(``pipelines.vllm_engine``). A media step (audio / video / omni clues) is one ``ray.data.llm``
processor pass of Ray's own: Preprocess -> PrepareMultimodal -> ChatTemplate -> Tokenize -> vLLM
engine -> Detokenize -> Postprocess (the row side: ``pipelines.vllm_rows``). The stage classes of
``pipelines.stages`` are reused without a backend (their ``setup`` is never called): ``request(row)``
builds the prompt, few-shot turns and media, ``accept(row, text)`` stores the answer, so both paths
give the same columns. Rows that are not
"ok", that miss a column, whose request cannot be built, or that need no request (``request`` returned
None) skip the engine: their ``__inference_error__`` is set to ``SKIP``, which every ``ray.data.llm``
stage passes through untouched. An engine error fails its row with the reason (``core.stage.fail``),
as ``LLMStage`` does for a failed request; an engine that cannot start fails the run with its error
(engine actors are never restarted). Placement (one bundle per engine worker) and engine arguments
come from the role's config (``engine_bundle``, ``engine_kwargs``), so the CPU test runs the code the
GPU nodes run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from core.llm.base import LLMConfig
from core.stage import Stage
from pipelines.stages import LLMStage
from pipelines.vllm_rows import (  # noqa: F401 - the row side, named here too
    COLUMNS,
    ERROR,
    PASSES,
    SKIP,
    Admit,
    Postprocess,
    Preprocess,
    bare_stage,
    keep,
    model_name,
    sampling_params,
)

log = logging.getLogger(__name__)


def media_limits(cls: type[Stage], cfg: Any) -> dict[str, int]:
    """vLLM's ``limit_mm_per_prompt`` by what the stage needs: images up to the frames sent, one audio."""
    limits = {}
    if "frames" in cls.needs:
        limits["image"] = getattr(cfg, "video_prompt_frames", 0) or getattr(cfg, "frames", 16)
    if "audio" in cls.needs:
        limits["audio"] = 1
    return limits


def engine_kwargs(llm: LLMConfig, limits: dict[str, int]) -> dict[str, Any]:
    """The vLLM engine arguments of one role (names as vLLM calls them): its own keys, then
    ``engine_kwargs`` (``enforce_eager``, ``gpu_memory_utilization``...)."""
    kwargs: dict[str, Any] = {
        "dtype": llm.dtype,
        "tensor_parallel_size": llm.tensor_parallel_size,
        "pipeline_parallel_size": llm.pipeline_parallel_size,
    }
    if llm.max_model_len:
        kwargs["max_model_len"] = llm.max_model_len
    if limits:
        kwargs["limit_mm_per_prompt"] = limits
    return {**kwargs, **llm.engine_kwargs}


def engine_bundle(llm: LLMConfig, res: Any = None) -> dict[str, float]:
    """One engine worker's placement bundle (``tensor_parallel_size * pipeline_parallel_size`` per
    replica): the role's ``num_gpus``, the stage's CPUs (``res.num_cpus``) and custom resources."""
    cpus = float(getattr(res, "num_cpus", 1.0))
    bundle = {"CPU": cpus, "GPU": float(llm.num_gpus), **dict(getattr(res, "resources", None) or {})}
    return {k: float(v) for k, v in bundle.items() if v or k == "CPU"}


def engine_workers(llm: LLMConfig) -> int:
    return llm.tensor_parallel_size * llm.pipeline_parallel_size


def engine_env(llm: LLMConfig, runtime_env: dict | None) -> dict | None:
    """``runtime_env`` plus the role's ``engine_env`` (``VLLM_*``) in its ``env_vars``."""
    if not llm.engine_env:
        return runtime_env
    env = dict(runtime_env or {})
    env["env_vars"] = {**(env.get("env_vars") or {}), **{k: str(v) for k, v in llm.engine_env.items()}}
    return env


def processor_config(
    cls: type[LLMStage] | Sequence[type[LLMStage]], cfg: Any, res: Any = None, runtime_env: dict | None = None
):
    """The ``vLLMEngineProcessorConfig`` of stage ``cls`` (or of a shared engine's steps): its role's
    model, engine arguments, batching and replicas, the placement bundle from config
    (``engine_bundle``), the role's ``engine_env`` in the runtime env."""
    from ray.data.llm import vLLMEngineProcessorConfig

    classes = list(cls) if isinstance(cls, (list, tuple)) else [cls]
    llm = cfg.llm(classes[0].role_for(cfg))
    limits: dict[str, int] = {}
    for k in classes:
        limits |= media_limits(k, cfg)
    return vLLMEngineProcessorConfig(
        model_source=llm.model,
        engine_kwargs=engine_kwargs(llm, limits),
        batch_size=llm.batch_size,
        concurrency=llm.concurrency,
        prepare_multimodal_stage={"enabled": bool(limits), "apply_sys_msg_formatting": True},
        should_continue_on_error=True,
        runtime_env=engine_env(llm, runtime_env),
        placement_group_config={"bundle_per_worker": engine_bundle(llm, res)},
        log_engine_metrics=False,  # Ray's Prometheus stat logger needs ray.serve; our metrics count rows
    )


def build_stage_processor(cls: type[LLMStage], cfg: Any, **config: Any):
    """The ``ray.data.llm`` processor of stage ``cls`` (``config``: see ``processor_config``): Ray's
    stages (PrepareMultimodal with the compatibility hook, chat template, tokenize, engine,
    detokenize); the engine actor is never restarted (``no_restarts``)."""
    from ray.data.llm import build_processor

    from pipelines.vllm_engine import compat_stages  # heavy: ray.llm's stage classes

    processor = build_processor(
        processor_config(cls, cfg, **config),
        preprocess=Preprocess(cls, cfg),
        postprocess=keep,  # Postprocess runs after the processor, on every row (see vllm_stages)
    )
    compat_stages(processor)
    no_restarts(processor)
    return processor


def build_engine_processor(stages: Sequence[type[LLMStage]], cfg: Any, **config: Any):
    """ONE engine for the text steps ``stages`` of one model (``pipelines.vllm_engine``): a processor
    whose only stage runs the steps in order inside the engine's actor."""
    import ray.data
    from ray.llm._internal.batch.processor.base import Processor

    from pipelines.vllm_engine import StepsEngineStage  # heavy: ray.llm's stage classes

    pc = processor_config(list(stages), cfg, **config)
    engine = StepsEngineStage(
        fn_constructor_kwargs=dict(
            steps=list(stages),
            cfg=cfg,
            batch_size=pc.batch_size,
            max_concurrent_batches=pc.max_concurrent_batches,
            model=pc.model_source,
            engine_kwargs=pc.engine_kwargs,
            placement_group_config=pc.placement_group_config,
            should_continue_on_error=True,
            log_engine_metrics=pc.log_engine_metrics,
        ),
        map_batches_kwargs=dict(
            zero_copy_batch=True,
            compute=ray.data.ActorPoolStrategy(**pc.get_concurrency(autoscaling_enabled=True)),
            max_concurrency=pc.max_concurrent_batches,
            runtime_env=pc.runtime_env,
        ),
    )
    processor = Processor(pc, [engine], preprocess=Admit(), postprocess=keep)
    no_restarts(processor)
    return processor


def no_restarts(processor: Any) -> None:
    """Engine actors are never restarted: an engine that cannot start (or dies) fails the run with
    its error, where Ray Data's default (``max_restarts=-1``) restarted it forever."""
    for name in processor.list_stage_names():
        if "Engine" in name:
            processor.get_stage_by_name(name).map_batches_kwargs["max_restarts"] = 0


def shares_engine(stages: Sequence[type[LLMStage]]) -> bool:
    """Text steps run on one shared engine (``build_engine_processor``); media steps go through
    Ray's processor (its PrepareMultimodal stage turns our image / audio parts into engine inputs)."""
    return all(cls.kind == "text" for cls in stages)


def vllm_stages(
    ds: Any,
    stages: Sequence[type[LLMStage]],
    cfg: Any,
    res: Any = None,
    runtime_env: dict | None = None,
    build: Callable[..., Any] | None = None,
) -> Any:
    """``ds`` through the LLM stages of one group (lazy): what ``map_stages`` gives for a group whose
    role runs on vLLM; the sink must follow in a ``map_stages`` of its own. Text steps share ONE
    engine (one processor pass, ``build_engine_processor``); a media step is one processor pass of
    its own. ``res``: the group's ``StageConfig`` (CPUs and custom resources of each engine worker);
    ``build``: the processor factory of one stage (default ``build_stage_processor``; tests give an
    engine-free one), which also makes text steps run one pass each."""
    for cls in stages:
        if not issubclass(cls, LLMStage):
            raise ValueError(f"stage {cls.name} is no LLM stage: it cannot run on vLLM")
    model = cfg.llm(stages[0].role_for(cfg)).model
    if build is None and shares_engine(stages):
        log.info("stages %s: one vLLM engine for %s", "+".join(c.name for c in stages), model)
        processor = build_engine_processor(stages, cfg, res=res, runtime_env=runtime_env)
        return processor(ds).map(Postprocess(list(stages), cfg, shared=True))
    for cls in stages:
        log.info("stage %s: vLLM processor for %s", cls.name, cfg.llm(cls.role_for(cfg)).model)
        processor = (build or build_stage_processor)(cls, cfg, res=res, runtime_env=runtime_env)
        ds = processor(ds).map(Postprocess(cls, cfg))
    return ds
