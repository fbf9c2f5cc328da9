"""Actor pools of the annotation job: which stages share a pool, what each actor asks, how big.

``stage_groups`` puts each model role in its own pool (consecutive text steps with equal model and
resources share one, and one loaded model); ``stage_asks`` says what one actor of each pool asks of
Ray (an endpoint role, ``backend: openai``, asks no GPU and no GPU-node ``llm`` slot);
``pool_bounds`` turns ``StageConfig`` (actors, or min_actors..max_actors) and the cluster into
(min, max) bounds, max ``None`` meaning "as many as the autoscaler can add".
"""

from __future__ import annotations

import math
from typing import Any

from core import placement
from pipelines.config import KIND, AnnotateConfig, StageConfig
from pipelines.stages import (
    CheckStage,
    DecodeStage,
    DisambiguateStage,
    OVLabelStage,
    TranslateStage,
    llm_stage_classes,
)


def stage_groups(cfg: AnnotateConfig) -> list[tuple[list, StageConfig, Any]]:
    """Stages grouped by the actor pool they run in: (stage classes, resources, LLM config or None).

    Each model role gets its own pool, except that consecutive text steps with the same model config
    and the same resources share one pool and one loaded model (as the demo's three text steps do).
    """
    groups: list[tuple[list, StageConfig, Any]] = [([DecodeStage, CheckStage], cfg.stages.decode, None)]
    for cls in llm_stage_classes(cfg):
        role = cls.role_for(cfg)
        llm, res = cfg.llm(role), cfg.stages.of(role)
        last = groups[-1]
        if last[2] is not None and KIND.get(role) == "text" and (last[2], last[1]) == (llm, res):
            if last[0][-1] in TEXT_STAGES:
                last[0].append(cls)
                continue
        groups.append(([cls], res, llm))
    return groups


TEXT_STAGES = (DisambiguateStage, TranslateStage, OVLabelStage)


def pool_bounds(cfg: AnnotateConfig, groups) -> list[tuple[int, int | None]]:
    """(min, max) actors per group (max ``None``: unbounded), see ``StageConfig``."""
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
        return placement.pool_bounds(res.actors, res.min_actors, res.max_actors)
    if llm is not None:
        lo = max(1, res.min_actors)
        return lo, max(lo, res.max_actors)
    return None


def per_actor(res: StageConfig, llm) -> dict[str, float]:
    return {"CPU": res.num_cpus, "GPU": gpus(llm), **resources_of(res, llm)}


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
    return placement.remote_args(
        resources_of(res, llm),
        num_cpus=res.num_cpus,
        num_gpus=gpus(llm) or None,
        max_restarts=res.max_restarts,
        max_task_retries=0 if isolate else res.max_task_retries,
    )
