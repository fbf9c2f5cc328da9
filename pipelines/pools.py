"""Actor pools of the annotation job: which stages share a pool, what each actor asks, how big.

``stage_groups`` puts each step of ``pipelines.steps`` in its own pool (consecutive steps that may
share one, with equal model and resources, share one and one loaded model); ``stage_asks`` says what
one actor of each pool asks of Ray (an endpoint role, ``backend: openai``, asks no GPU and no
GPU-node ``llm`` slot); ``pool_sizes`` turns each pool's ``StageConfig`` (``Resources.bounds``) and
the cluster's free CPUs into (min, max) actors, max ``None`` meaning "as many as the autoscaler can
add".
"""

from __future__ import annotations

import math
from typing import Any

from core import placement
from core.resources import Resources
from pipelines import steps, vllm_stage
from pipelines.config import AnnotateConfig, StageConfig
from pipelines.stages import CheckStage, DecodeStage


def stage_groups(cfg: AnnotateConfig) -> list[tuple[list, StageConfig, Any]]:
    """Stages grouped by the actor pool they run in: (stage classes, resources, LLM config or None).

    Each step gets its own pool, except that consecutive steps that may share one (``share_pool``,
    the text steps) with the same model config and the same resources share one pool and one loaded
    model (as the demo's three text steps do).
    """
    groups: list[tuple[list, StageConfig, Any]] = [([DecodeStage, CheckStage], cfg.stages.decode, None)]
    shared = False  # may the last group take the next step
    for step in steps.run_steps(cfg):
        llm, res = cfg.llm(step.name), cfg.stages.of(step.name)
        if shared and step.share_pool and groups[-1][1] == res and same_model(groups[-1][2], llm):
            groups[-1][0].append(step.stage)
        else:
            groups.append(([step.stage], res, llm))
        shared = step.share_pool
    return groups


# what makes a vLLM engine: steps equal in these share one engine (their sampling and prompts differ
# per request); any other backend shares a loaded model only under an equal role config
ENGINE_FIELDS = (
    "backend",
    "model",
    "revision",
    "dtype",
    "max_model_len",
    "tensor_parallel_size",
    "pipeline_parallel_size",
    "engine_kwargs",
    "engine_env",
    "num_gpus",
    "concurrency",
    "batch_size",
)


def same_model(a, b) -> bool:
    """May two consecutive text steps with roles ``a`` and ``b`` share one pool and one model?"""
    if a == b:
        return True
    if a is None or b is None or a.backend != "vllm" or b.backend != "vllm":
        return False
    return all(getattr(a, k) == getattr(b, k) for k in ENGINE_FIELDS)


def pool_sizes(groups) -> list[tuple[int, int | None]]:
    """(min, max) actors per group (max ``None``: unbounded), see ``StageConfig``: decode without
    custom resources gets the CPUs the other pools leave free."""
    import ray

    totals = ray.cluster_resources()
    bounds = [auto_bounds(res, llm) for _, res, llm in groups]
    used = sum(_cpus(stages, res, llm, b) for b, (stages, res, llm) in zip(bounds, groups) if b is not None)
    if groups and is_vllm(groups[-1][2]):  # the sink's own pool after a vLLM group (``min_asks``)
        used += groups[-1][1].num_cpus
    free = float(totals.get("CPU", 1)) - used
    out = []
    for b, (_, res, _) in zip(bounds, groups):
        if b is None:  # decode, no custom resources: the CPUs the other pools leave free
            n = max(1, int(free // max(res.num_cpus, 1e-3)))
            hi = res.max_actors or max(n, res.min_actors)
            b = (res.min_actors or min(n, hi), hi)
        out.append(b)
    return out


def _cpus(stages, res: StageConfig, llm, bounds: tuple[int, int | None]) -> float:
    """CPUs a pool holds at its largest bounded size (a vLLM group: what ``vllm_asks`` lists)."""
    if is_vllm(llm):
        return sum(per.get("CPU", 0.0) * n for _, per, n in vllm_asks(stages, res, llm))
    return (bounds[1] or bounds[0]) * res.num_cpus


def is_vllm(llm) -> bool:
    return llm is not None and llm.backend == "vllm"


# Ray's CPU stages around a media step's engine (ray.data.llm), one actor of 1 CPU each at least
MEDIA_CPU_STAGES = ("PrepareMultimodal", "ChatTemplate", "Tokenize", "Detokenize")


def vllm_asks(stages, res: StageConfig, llm) -> list[tuple[str, dict[str, float], int]]:
    """(what, one actor's asks, how many at least) of a vLLM group: one engine replica (its
    workers' bundles, ``vllm_stage.engine_bundle``); a media step's CPU stages; one CPU for the
    processors' pre/postprocess tasks."""
    name = "+".join(cls.name for cls in stages)
    engine = {k: v * vllm_stage.engine_workers(llm) for k, v in vllm_stage.engine_bundle(llm, res).items()}
    out = [(f"{name} vLLM engine replica", engine, 1)]
    if not vllm_stage.shares_engine(stages):
        out += [
            (f"{cls.name} {what} (ray.data.llm)", {"CPU": 1.0}, 1)
            for cls in stages
            for what in MEDIA_CPU_STAGES
        ]
    return [*out, (f"{name} pre/postprocess tasks", {"CPU": 1.0}, 1)]


def min_asks(groups, bounds) -> list[tuple[str, dict[str, float], int]]:
    """Every actor the job holds at once at its smallest: (pool, one actor's asks, count)."""
    out = []
    for (stages, res, llm), b in zip(groups, bounds):
        if is_vllm(llm):
            out += vllm_asks(stages, res, llm)
        else:
            out.append(("+".join(cls.name for cls in stages), per_actor(res, llm), b[0]))
    if groups and is_vllm(groups[-1][2]):
        out.append(("sink", {"CPU": float(groups[-1][1].num_cpus)}, 1))
    return out


class PoolsDontFit(ValueError):
    """The job's pools at their smallest need more than the (local) Ray has: it would wait forever."""


def check_room(groups, bounds, totals: dict[str, float]) -> None:
    """Raise ``PoolsDontFit`` naming every pool when, at their smallest, they need more of a resource
    than ``totals`` (the local Ray's) holds; a job that started anyway would deadlock, its last actors
    pending forever. (``cluster.fit`` checks a cluster yaml the same way before ``emer submit``.)"""
    asks = min_asks(groups, bounds)
    need: dict[str, float] = {}
    for _, per, n in asks:
        for k, v in per.items():
            need[k] = need.get(k, 0.0) + v * n
    short = {k: v for k, v in need.items() if v > float(totals.get(k, 0.0)) + 1e-9}
    if not short:
        return
    lacks = ", ".join(f"{k}: {v:g} (it has {float(totals.get(k, 0.0)):g})" for k, v in short.items())
    pools = "; ".join(f"{what} {n} x {_text(per)}" for what, per, n in asks)
    raise PoolsDontFit(
        f"annotate: the actor pools of this run need, at their smallest and all at once, {lacks} of "
        f"the local Ray; it would wait forever for actors that cannot start. Pools: {pools}. Start "
        "Ray with more (ray.num_cpus: logical CPUs may exceed the cores), or lower the asks "
        "(annotate.stages.<step>.num_cpus, .actors / .min_actors; a vLLM role's num_gpus)"
    )


def has_vllm(groups) -> bool:
    """Does a group run on vLLM? Only then can pools that do not fit all at once hang a local run:
    Ray Data runs plain map pools that do not fit one after another (a finished operator frees its
    actors: the demo's four 1-CPU pools on 2 CPUs), while ``ray.data.llm``'s stages wait for each
    other's actors (finding 5: a three-step group on 4 CPUs hung)."""
    return any(is_vllm(llm) for _, _, llm in groups)


def _text(per: dict[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in per.items()) + "}"


def is_local_ray() -> bool:
    """Did this process start the Ray it uses (no autoscaler can add what it lacks)?"""
    from ray._private import worker

    node = getattr(worker, "_global_node", None)
    return bool(node is not None and getattr(node, "head", False))


def auto_bounds(res: StageConfig, llm) -> tuple[int, int | None] | None:
    if res.actors or resources_of(res, llm) or gpus(llm):  # fixed, or grows with an autoscaling cluster
        return res.bounds()
    if llm is not None:
        lo = max(1, res.min_actors)
        return lo, max(lo, res.max_actors)
    return None


def actor_resources(res: StageConfig, llm) -> Resources:
    """What one actor of a pool asks: the stage's CPUs, its role's GPUs and the custom resources as
    they reach Ray (``gpus``, ``resources_of``)."""
    return Resources(num_cpus=res.num_cpus, num_gpus=gpus(llm), resources=resources_of(res, llm))


def per_actor(res: StageConfig, llm) -> dict[str, float]:
    return actor_resources(res, llm).per_actor()


def gpus(llm) -> float:
    """GPUs per actor of a model stage: the role's ``num_gpus``; none for an endpoint role (openai),
    whose actors only send requests, whatever a placement preset asks."""
    return 0.0 if llm is None or llm.backend == "openai" else llm.num_gpus


def stage_asks(cfg: AnnotateConfig) -> dict[str, dict[str, Any]]:
    """What one actor of each pool asks, by role ("decode" for the CPU pool): its GPUs and custom
    resources as they reach Ray (an endpoint role asks no GPU and no ``llm`` slot)."""
    out: dict[str, dict[str, Any]] = {}
    for stages, res, llm in stage_groups(cfg):
        roles = ["decode"] if llm is None else [cls.role_for(cfg) for cls in stages]
        for role in roles:
            out[role] = {"gpus": gpus(llm), "resources": resources_of(res, llm)}
    return out


def resources_of(res: StageConfig, llm) -> dict[str, float]:
    """Custom resources per actor: the stage's, less the GPU-node ``llm`` slot for an endpoint role."""
    if llm is not None and llm.backend == "openai":
        return {k: float(v) for k, v in res.resources.items() if k != placement.LLM}
    return {k: float(v) for k, v in res.resources.items()}


def pool_text(bounds: tuple[int, int | None]) -> str:
    lo, hi = bounds
    return str(lo) if lo == hi else f"{lo}-{hi if hi is not None else 'unbounded'}"


def batch_size_for(configured: int, rows: int, actors: int) -> int:
    """The configured batch, smaller when there are too few rows to keep every actor busy."""
    return max(1, min(configured, math.ceil(rows / max(1, actors))))


def remote_for(res: StageConfig, llm, isolate: bool = False) -> dict[str, Any]:
    """The ``ray_remote_args`` of one pool's actors (``isolate``: no task retries, so a crash
    re-runs nothing behind the crash isolation's back)."""
    return actor_resources(res, llm).remote_args(
        max_restarts=res.max_restarts, max_task_retries=0 if isolate else res.max_task_retries
    )
