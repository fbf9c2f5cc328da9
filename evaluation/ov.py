"""Set-level Accuracy_s / Recall_s / Avg (AffectGPT eq. 1-3, MER2024 section 3.4), vectorised.

Every label is first mapped to a group id (its synonym group, or a wheel cluster). Per sample,
with G the ground-truth ids and P the predicted ids: accuracy = |G∩P| / |P|, recall = |G∩P| / |G|;
an empty P scores 0 for both; a sample whose G is empty cannot be scored and is skipped (counted).
The per-sample values are averaged; Avg = (accuracy + recall) / 2.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence

import numpy as np


@dataclasses.dataclass
class Encoded:
    """Labels as (sample index, group id) pairs: one entry per mapped label."""

    n: int
    g_sample: np.ndarray
    g_id: np.ndarray
    p_sample: np.ndarray
    p_id: np.ndarray


@dataclasses.dataclass
class SetScores:
    accuracy: float
    recall: float
    avg: float
    samples: int  # scored samples (ground truth non-empty after mapping)
    skipped_empty_gt: int
    empty_predictions: int  # scored samples whose mapped prediction is empty
    per_accuracy: np.ndarray  # per scored sample
    per_recall: np.ndarray
    scored: np.ndarray  # bool mask over all samples

    def summary(self) -> dict:
        return {
            "accuracy": self.accuracy,
            "recall": self.recall,
            "avg": self.avg,
            "samples": self.samples,
            "skipped_empty_gt": self.skipped_empty_gt,
            "empty_predictions": self.empty_predictions,
        }

    @property
    def f(self) -> float:
        s = self.accuracy + self.recall
        return 2 * self.accuracy * self.recall / s if s > 0 else 0.0


def flatten(lists: Sequence[Sequence[str]]) -> tuple[np.ndarray, list[str]]:
    """(sample index per label, labels in order)."""
    lens = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
    return np.repeat(np.arange(len(lists), dtype=np.int64), lens), list(itertools.chain.from_iterable(lists))


def encode(
    gt: Sequence[Sequence[str]],
    pred: Sequence[Sequence[str]],
    to_group: Callable[[int, str], str] | None = None,
) -> Encoded:
    """Map labels to group ids; ``to_group(sample, label)`` gives the group name (default: the label)."""
    vocab: dict[str, int] = {}

    def ids(lists: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
        sample, flat = flatten(lists)
        if to_group is None:
            out = [vocab.setdefault(lab, len(vocab)) for lab in flat]
        else:
            out = [
                vocab.setdefault(to_group(int(s), lab), len(vocab)) for s, lab in zip(sample.tolist(), flat)
            ]
        return sample, np.asarray(out, dtype=np.int64)

    gs, gi = ids(gt)
    ps, pi = ids(pred)
    return Encoded(len(gt), gs, gi, ps, pi)


def score(enc: Encoded) -> SetScores:
    """Set-level scores of encoded labels (duplicates within a sample collapse, as sets do)."""
    n = enc.n
    k = int(max(enc.g_id.max(initial=-1), enc.p_id.max(initial=-1))) + 1 or 1
    gk = np.unique(enc.g_sample * k + enc.g_id)
    pk = np.unique(enc.p_sample * k + enc.p_id)
    inter = np.intersect1d(gk, pk, assume_unique=True)
    ng = np.bincount(gk // k, minlength=n)
    npred = np.bincount(pk // k, minlength=n)
    ni = np.bincount(inter // k, minlength=n)
    scored = ng > 0
    ng_s, np_s, ni_s = ng[scored], npred[scored], ni[scored]
    has_pred = np_s > 0
    acc = np.zeros(len(ng_s))
    rec = np.zeros(len(ng_s))
    acc[has_pred] = ni_s[has_pred] / np_s[has_pred]
    rec[has_pred] = ni_s[has_pred] / ng_s[has_pred]
    m_acc = float(np.mean(acc)) if len(acc) else 0.0
    m_rec = float(np.mean(rec)) if len(rec) else 0.0
    return SetScores(
        m_acc,
        m_rec,
        (m_acc + m_rec) / 2,
        int(scored.sum()),
        int(n - scored.sum()),
        int((~has_pred).sum()),
        acc,
        rec,
        scored,
    )
