"""Placement by resources: which nodes a stage's actors land on and how many run at once.

The cluster launcher config (``ray_cluster.yaml``) gives each worker type a custom resource:
CPU workers carry ``decode`` (one slot per core), GPU workers carry ``llm`` (one per GPU). A stage
asks for such a resource only when its config says so (``annotate.decode.resources: {decode: 1}``
in the cluster preset); the defaults ask for none, so a laptop run never waits for a node that
does not exist.

``remote_args`` builds the ``ray_remote_args`` of a ``map_batches`` call; ``spread`` says over how
many actors a run's rows are split (a pool's bounds: ``core.resources.Resources.bounds``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

DECODE = "decode"  # custom resource on CPU worker nodes (one per core)
LLM = "llm"  # custom resource on GPU worker nodes (one per GPU)


def remote_args(
    resources: Mapping[str, float] | None = None,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """``ray_remote_args`` asking for exactly what is configured (custom resources only if set)."""
    args: dict[str, Any] = dict(extra)
    if num_cpus is not None:
        args["num_cpus"] = num_cpus
    if num_gpus:
        args["num_gpus"] = num_gpus
    custom = {k: float(v) for k, v in (resources or {}).items() if v}
    if custom:
        args["resources"] = custom
    return args


def fit_count(per_actor: Mapping[str, float], totals: Mapping[str, float]) -> int:
    """How many actors asking ``per_actor`` fit in ``totals`` (0 if a resource is missing)."""
    counts = [
        math.floor(totals.get(name, 0.0) / amount + 1e-9) for name, amount in per_actor.items() if amount
    ]
    return min(counts) if counts else 0


def spread(
    bounds: tuple[int, int | None],
    per_actor: Mapping[str, float],
    totals: Mapping[str, float] | None = None,
) -> int:
    """How many actors of a pool with ``bounds`` to spread a run's rows over (for its batch size):
    the max when bounded, else as many as fit in the cluster now (``ray.cluster_resources()`` unless
    ``totals`` is given), at least the min."""
    lo, hi = bounds
    if hi is not None:
        return hi
    if totals is None:
        import ray

        totals = ray.cluster_resources()
    return max(lo, fit_count(per_actor, totals) if per_actor else 0)
