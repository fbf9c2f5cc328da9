"""``Resources``: what each actor (or worker) of one Ray pool asks of the cluster, and the pool's size.

The one resource vocabulary of every pool emer starts — annotation stages, the filter, feature
extraction, inference and training workers — in Ray's own names, as NeMo Curator's stages declare
theirs: ``num_cpus`` and ``num_gpus`` per actor, ``resources`` for custom ones (``{decode: 1}`` on the
CPU nodes of ``ray_cluster.yaml``, ``{llm: 1}`` on its GPU nodes), and the pool's size: ``actors``
fixes it, or ``actors: 0`` lets it scale from ``min_actors`` (0 = 1) to ``max_actors`` (0 = unbounded,
the cluster's ``max_workers`` then bound it). A component nests it under a field (``filter.pool``,
``train.workers``, ...) or extends it (``annotate.stages.<step>``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from core.config import Config, check_range
from core.placement import remote_args


@dataclasses.dataclass(frozen=True)
class Resources(Config):
    """Per-actor asks (``num_cpus``, ``num_gpus``, custom ``resources``) and the pool size."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    resources: dict[str, float] = dataclasses.field(default_factory=dict)
    actors: int = 0  # a fixed pool size; 0 = scale between min_actors and max_actors
    min_actors: int = 0
    max_actors: int = 0

    def problems(self) -> list[str]:
        out: list[str] = []
        check_range(out, "num_cpus", self.num_cpus, 0.0, None)
        check_range(out, "num_gpus", self.num_gpus, 0.0, None)
        check_range(out, "actors", self.actors, 0, 4096)
        check_range(out, "min_actors", self.min_actors, 0, 4096)
        check_range(out, "max_actors", self.max_actors, 0, 4096)
        if self.actors and (self.min_actors or self.max_actors):
            out.append(
                f"actors = {self.actors} fixes the pool size: leave min_actors/max_actors at 0, or set "
                "actors = 0 for a pool that scales between them"
            )
        if self.min_actors and self.max_actors and self.min_actors > self.max_actors:
            out.append(f"min_actors = {self.min_actors}: must be <= max_actors ({self.max_actors})")
        for name, amount in self.resources.items():
            if not isinstance(amount, (int, float)) or isinstance(amount, bool) or amount < 0:
                out.append(f"resources.{name} = {amount!r}: must be a number >= 0")
        return out

    def bounds(self) -> tuple[int, int | None]:
        """(min, max) actors of the pool: ``actors`` > 0 is a fixed size; otherwise it autoscales from
        ``min_actors`` (at least 1) to ``max_actors``, 0 meaning unbounded (``None``): Ray Data adds an
        actor whenever the pool's actors are busy (2 tasks in flight each), as far as its resource
        budget allows, and the pending actors' resource demand makes the cluster autoscaler add nodes
        (up to the cluster's ``max_workers``). The cluster's current size is no bound: on an
        autoscaling cluster that starts with no worker nodes it is zero."""
        if self.actors > 0:
            return self.actors, self.actors
        lo = max(1, self.min_actors)
        return lo, (max(lo, self.max_actors) if self.max_actors > 0 else None)

    def per_actor(self) -> dict[str, float]:
        """What one actor asks, in Ray's resource names (``CPU``, ``GPU``, custom), zeros left out."""
        asks = {"CPU": float(self.num_cpus), "GPU": float(self.num_gpus), **self.resources}
        return {name: float(amount) for name, amount in asks.items() if amount}

    def remote_args(self, **extra: Any) -> dict[str, Any]:
        """``ray_remote_args`` asking for exactly these resources (GPUs and custom ones only if set)."""
        return remote_args(self.resources, num_cpus=self.num_cpus, num_gpus=self.num_gpus, **extra)
