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
from pipelines import steps
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
        if shared and step.share_pool and (groups[-1][2], groups[-1][1]) == (llm, res):
            groups[-1][0].append(step.stage)
        else:
            groups.append(([step.stage], res, llm))
        shared = step.share_pool
    return groups


def pool_sizes(groups) -> list[tuple[int, int | None]]:
    """(min, max) actors per group (max ``None``: unbounded), see ``StageConfig``: decode without
    custom resources gets the CPUs the other pools leave free."""
    import ray

    totals = ray.cluster_resources()
    bounds = [auto_bounds(res, llm) for _, res, llm in groups]
    used = sum((b[1] or b[0]) * res.num_cpus for b, (_, res, _) in zip(bounds, groups) if b is not None)
    free = float(totals.get("CPU", 1)) - used
    out = []
    for b, (_, res, _) in zip(bounds, groups):
        if b is None:  # decode, no custom resources: the CPUs the other pools leave free
            n = max(1, int(free // max(res.num_cpus, 1e-3)))
            hi = res.max_actors or max(n, res.min_actors)
            b = (res.min_actors or min(n, hi), hi)
        out.append(b)
    return out


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
