"""Does a run config fit the cluster of ``ray_cluster.yaml``? Checked before ``emer submit`` sends it.

A node type offers the CPUs and GPUs of its EC2 instance type (Ray's AWS provider fills them in the
same way; ``INSTANCE_TYPES`` lists the ones this project uses) plus its explicit ``resources``, which
win (the head's ``CPU: 0``); it comes up to ``max_workers`` times (the head once). A run config asks:

- per annotation stage (every field of ``annotate.stages``, so new stages are covered): one actor
  asks ``num_cpus`` CPUs, the role's ``num_gpus`` GPUs (the ``LLMConfig`` of the same name in
  ``annotate``, if any) and its custom ``resources``; the pool holds ``actors`` actors, or with
  ``actors: 0`` from 1 up to ``max_actors``; a ``backend: vllm`` group asks what
  ``pipelines.pools.vllm_asks`` lists: 1 to ``concurrency`` engine replicas (each its workers'
  bundles), a media step's ``ray.data.llm`` CPU actors and one CPU for its pre/postprocess tasks;
- training: ``train.workers`` (a ``core.resources.Resources``: ``actors`` workers, each asking its
  ``num_cpus``, ``num_gpus`` and custom ``resources``); ``emer features`` / ``emer infer``: their
  ``pool`` (the same type) likewise.

Each ask must fit on one node type; its largest count must fit in what those node types offer at
their ``max_workers``; the smallest counts of the pools of one job (they run at the same time) must
fit together, resource by resource. ``check_fit`` raises one ``FitError`` listing every problem with
the config key, the ask, the node types and the fix.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from pipelines import pools

log = logging.getLogger(__name__)

DEFAULT_YAML = Path(__file__).resolve().parents[1] / "ray_cluster.yaml"

# vCPUs and GPUs of the EC2 instance types the launcher config uses (AWS's published counts).
INSTANCE_TYPES: dict[str, dict[str, float]] = {
    "m6i.xlarge": {"CPU": 4},
    "m6i.2xlarge": {"CPU": 8},
    "m6i.4xlarge": {"CPU": 16},
    "g5.xlarge": {"CPU": 4, "GPU": 1},
    "g5.2xlarge": {"CPU": 8, "GPU": 1},
    "g5.12xlarge": {"CPU": 48, "GPU": 4},
    "g5.48xlarge": {"CPU": 192, "GPU": 8},
    "p4d.24xlarge": {"CPU": 96, "GPU": 8},
    "p4de.24xlarge": {"CPU": 96, "GPU": 8},
    "p5.48xlarge": {"CPU": 192, "GPU": 8},
}

# ``emer`` subcommand -> the sections whose asks it places on the cluster.
COMMAND_SECTIONS: dict[str, tuple[str, ...]] = {
    "annotate": ("annotate",),
    "train": ("train",),
    "features": ("features",),
    "infer": ("infer",),
}
ALL_SECTIONS = ("annotate", "train", "features", "infer")


class FitError(ValueError):
    """The run config asks for more than the cluster's node types can give."""


@dataclasses.dataclass(frozen=True)
class NodeType:
    name: str
    resources: dict[str, float]
    max_workers: int

    def describe(self) -> str:
        res = ", ".join(f"{k}: {v:g}" for k, v in sorted(self.resources.items())) or "nothing"
        return f"{self.name} {{{res}}} x{self.max_workers}"


@dataclasses.dataclass(frozen=True)
class Ask:
    """``min_count``..``max_count`` units of ``per_unit`` resources, named by config ``key``."""

    key: str
    per_unit: dict[str, float]
    min_count: int
    max_count: int
    note: str = ""  # where a part of the ask comes from, e.g. "GPU from annotate.audio.num_gpus"

    def describe(self) -> str:
        res = ", ".join(f"{k}: {v:g}" for k, v in self.per_unit.items() if v)
        count = (
            f"{self.max_count}" if self.min_count == self.max_count else f"{self.min_count}-{self.max_count}"
        )
        return f"{self.key}: {count} x {{{res}}}" + (f" ({self.note})" if self.note else "")


def node_types(cluster_yaml: str | Path = DEFAULT_YAML) -> list[NodeType]:
    """The node types of a cluster launcher config, with the resources each node offers."""
    launcher = yaml.safe_load(Path(cluster_yaml).read_text())
    head = launcher.get("head_node_type")
    out = []
    for name, spec in (launcher.get("available_node_types") or {}).items():
        itype = (spec.get("node_config") or {}).get("InstanceType", "")
        explicit = {k: float(v) for k, v in (spec.get("resources") or {}).items()}
        inferred = dict(INSTANCE_TYPES.get(itype, {}))
        if "CPU" not in explicit and not inferred:
            raise FitError(
                f"{cluster_yaml}: node type {name}: instance type {itype!r} is not in "
                "cluster.fit.INSTANCE_TYPES; add it there, or give `resources: {CPU: n, GPU: m}`"
            )
        count = 1 if name == head else int(spec.get("max_workers", 0))
        out.append(NodeType(name, {**inferred, **explicit}, count))
    return out


def _fits(per_unit: Mapping[str, float], node: Mapping[str, float]) -> int:
    """Units of ``per_unit`` one node holds (0 if any resource is short)."""
    needed = {k: v for k, v in per_unit.items() if v > 0}
    if not needed:
        return 10**9
    return min(math.floor(node.get(k, 0.0) / v + 1e-9) for k, v in needed.items())


def _stage_asks(annotate: Any) -> list[Ask]:
    """One ask per actor pool of the run (``pipelines.pools``: the roles it uses, the text steps
    inheriting ``stages.text``, an endpoint role asking no GPU and no ``llm`` slot)."""
    out = []
    for stages, res, llm in pools.stage_groups(annotate):
        role = "decode" if llm is None else stages[0].role_for(annotate)
        key = role if llm is None or getattr(annotate.stages, role, None) is not None else "text"
        if pools.is_vllm(llm):  # engine replicas (1..concurrency) and ray.data.llm's CPU actors
            for what, per, n in pools.vllm_asks(stages, res, llm):
                hi = llm.concurrency if what.endswith("engine replica") else n
                out.append(Ask(f"annotate.stages.{key}", per, n, hi, f"{what}, from annotate.{role}"))
            continue
        per = {
            "CPU": float(res.num_cpus),
            **{k: v for k, v in pools.per_actor(res, llm).items() if k != "CPU"},
        }
        lo, hi = (res.actors, res.actors) if res.actors else (max(1, res.min_actors), max(1, res.max_actors))
        gpus = per.get("GPU", 0.0)
        note = (
            f"GPU from annotate.{role if getattr(annotate, role, None) else 'text'}.num_gpus" if gpus else ""
        )
        out.append(Ask(f"annotate.stages.{key}", per, lo, hi, note))
    return out


def asks(run: Any, sections: Iterable[str] = ALL_SECTIONS) -> dict[str, list[Ask]]:
    """Per section (one job each), what ``run`` (a ``RunConfig``) asks of the cluster."""
    sections = set(sections)
    out: dict[str, list[Ask]] = {}
    if "annotate" in sections:
        out["annotate"] = _stage_asks(run.annotate)
    t = run.train
    pools = {"train": ("train.workers", t.workers), "features": ("train.features.pool", t.features.pool)}
    pools["infer"] = ("train.infer.pool", t.infer.pool)
    for name, (key, res) in pools.items():
        if name in sections:
            per = {"CPU": float(res.num_cpus), **res.per_actor()}
            out[name] = [Ask(f"{key}.actors", per, res.actors, res.actors)]
    return out


def _ask_problems(ask: Ask, types: list[NodeType]) -> list[str]:
    hosts = [(t, _fits(ask.per_unit, t.resources)) for t in types if _fits(ask.per_unit, t.resources) > 0]
    if not hosts:
        return [
            f"{ask.describe()}: no node type has room for one (lower the ask, or add a node type "
            "with these resources to the cluster yaml)"
        ]
    capacity = sum(t.max_workers * n for t, n in hosts)
    if ask.max_count > capacity:
        where = ", ".join(f"{t.name} {n} per node x{t.max_workers}" for t, n in hosts)
        return [
            f"{ask.describe()}: at most {capacity} fit ({where}); lower {_count_key(ask)} to "
            f"{capacity} or raise max_workers of {', '.join(t.name for t, _ in hosts)}"
        ]
    return []


def _count_key(ask: Ask) -> str:
    """The key that sets how many units ``ask`` wants."""
    if ask.key.startswith("annotate.stages."):
        return f"{ask.key}.actors (or .max_actors)"
    return ask.key


def _together_problems(job: str, job_asks: list[Ask], types: list[NodeType]) -> list[str]:
    offered: dict[str, float] = {}
    for t in types:
        for k, v in t.resources.items():
            offered[k] = offered.get(k, 0.0) + v * t.max_workers
    asked: dict[str, float] = {}
    for a in job_asks:
        for k, v in a.per_unit.items():
            asked[k] = asked.get(k, 0.0) + v * a.min_count
    short = {k: v for k, v in asked.items() if v > offered.get(k, 0.0) + 1e-9}
    out = []
    for k, v in short.items():
        keys = ", ".join(a.key for a in job_asks if a.per_unit.get(k))
        out.append(
            f"{job}: its pools run at once and need {k}: {v:g} together (at their smallest), the "
            f"cluster offers {offered.get(k, 0.0):g}; lower the asks of {keys}"
        )
    return out


def fit_problems(run: Any, types: list[NodeType], sections: Iterable[str] = ALL_SECTIONS) -> list[str]:
    """Every reason ``run`` does not fit ``types`` (empty: it fits)."""
    out: list[str] = []
    for job, job_asks in asks(run, sections).items():
        for ask in job_asks:
            out += _ask_problems(ask, types)
        out += _together_problems(job, job_asks, types)
    return out


def check_fit(
    run: Any,
    cluster_yaml: str | Path = DEFAULT_YAML,
    sections: Iterable[str] = ALL_SECTIONS,
    label: str = "",
) -> None:
    """Raise one ``FitError`` naming every ask of ``run`` that ``cluster_yaml`` cannot place."""
    types = node_types(cluster_yaml)
    problems = fit_problems(run, types, sections)
    if problems:
        what = f"run config {label}" if label else "the run config"
        raise FitError(
            f"{what} does not fit {cluster_yaml} (node types: {'; '.join(t.describe() for t in types)}):\n"
            + "\n".join(f"  - {p}" for p in problems)
            + "\n(check skipped with `emer submit --skip-fit-check`)"
        )
    log.info("fit check: %s fits %s", label or "the run config", cluster_yaml)
