"""The discrete task of MER-UniBench: one ground-truth emotion per sample, OV predictions, hit rate.

Definition (MER-UniBench, AffectGPT "A New Dataset, Model, and Benchmark", seed 002 / arXiv
2501.16566, basic emotion recognition on MER2023 / MER2024 / MELD / IEMOCAP; the seed text is the
abstract only, so the details follow the benchmark's released evaluation): for each of the five
emotion wheels, the one-hot label and every predicted OV label are mapped to their *level-1*
wheel cluster (``core.wheel``: form -> base words -> wheel words -> cluster, as for the OV
metrics). A sample is a hit in that wheel when the label's cluster is among the prediction's
clusters. The wheel's hit rate is the mean over its scored samples; the reported hit rate is the
mean of the five wheels' rates.

Edge cases, as the released evaluation treats them: a ground-truth label that reaches no cluster
of a wheel leaves the sample out of *that wheel* (counted in ``excluded``); a predicted label that
reaches no cluster is ignored; an empty (or entirely unmapped) prediction is a miss.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from core.wheel import WHEELS, Wheel

LEVEL = "level1"  # the benchmark scores hits on level-1 clusters only


@dataclasses.dataclass
class WheelHits:
    """One wheel: per sample, True (hit), False (miss) or None (label outside this wheel)."""

    wheel: str
    hits: list[bool | None]

    @property
    def scored(self) -> int:
        return sum(h is not None for h in self.hits)

    @property
    def rate(self) -> float:
        return _mean([h for h in self.hits if h is not None])


def _mean(values: Sequence[bool | float]) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def wheel_hits(wheel: Wheel, gt: Sequence[str], pred: Sequence[list[str]]) -> list[WheelHits]:
    """The hits of every wheel present in ``wheel`` (in wheel order)."""
    out = []
    for w in (w for w in WHEELS if w in wheel.clusters):
        hits: list[bool | None] = []
        for label, labels in zip(gt, pred):
            target = wheel.cluster(label, w, LEVEL)
            if not target:
                hits.append(None)
                continue
            clusters = {wheel.cluster(p, w, LEVEL) for p in labels} - {""}
            hits.append(target in clusters)
        out.append(WheelHits(w, hits))
    return out


def hit_summary(
    wheel: Wheel, names: Sequence[str], gt: Sequence[str], pred: Sequence[list[str]]
) -> tuple[dict, list[dict]]:
    """(summary, per-sample rows). Summary: hit_rate (mean over wheels), wheels (rate, samples,
    excluded), classes (per ground-truth label: rate averaged over the wheels that score it)."""
    per = wheel_hits(wheel, gt, pred)
    rated = [p.rate for p in per if p.scored]
    summary: dict = {
        "task": "hit",
        "level": LEVEL,
        "hit_rate": _mean(rated),
        "samples": len(gt),
        "wheels": {
            p.wheel: {"hit_rate": p.rate, "samples": p.scored, "excluded": len(gt) - p.scored} for p in per
        },
        "classes": _classes(per, gt),
        "empty_predictions": sum(1 for labels in pred if not labels),
        "unscored_samples": sum(1 for i in range(len(gt)) if all(p.hits[i] is None for p in per)),
    }
    rows = []
    for i, name in enumerate(names):
        cells = {p.wheel: p.hits[i] for p in per}
        scored = [h for h in cells.values() if h is not None]
        rows.append({"name": name, "gt": gt[i], "pred": list(pred[i]), "hit": _mean(scored), **cells})
    return summary, rows


def _classes(per: list[WheelHits], gt: Sequence[str]) -> dict[str, dict]:
    out = {}
    for label in sorted(set(gt)):
        idx = [i for i, g in enumerate(gt) if g == label]
        rates = [_mean([p.hits[i] for i in idx if p.hits[i] is not None]) for p in per]
        rates = [r for r in rates if not np.isnan(r)]
        out[label] = {"hit_rate": _mean(rates), "samples": len(idx), "wheels_scored": len(rates)}
    return out
