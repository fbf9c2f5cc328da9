"""The sentiment task of MER-UniBench: OV labels -> positive / negative / neutral, scored on the
non-neutral ground truth.

Definition (MER-UniBench, AffectGPT "A New Dataset, Model, and Benchmark", seed 002 / arXiv
2501.16566, sentiment analysis on CMU-MOSI / CMU-MOSEI / CH-SIMS / CH-SIMS v2; the seed text is
the abstract only, so the details follow the benchmark's released evaluation): each sample's
predicted OV labels are mapped to one polarity, by an LLM (the ``ov_sentiment`` prompt through
``core.llm``) or offline by the lexicon below. Only samples whose ground truth is not neutral
count; on them the task is binary, *positive* against *not positive* (a neutral prediction counts
as not positive), and the metrics are the weighted-average F1 (WAF) and the accuracy.

Ground truth is a word (positive / negative / neutral) or a valence score: positive above
``threshold``, negative below ``-threshold``, neutral otherwise. The default threshold 0 is the
sign the benchmark uses for these datasets (their valence lies in [-3, 3] or [-1, 1]).

The offline mapping (``lexicon``) is ours, not the paper's: each label votes, in every wheel, with
the polarity of its level-1 cluster (``CLUSTER_POLARITY``); more positive than negative votes is
positive, more negative is negative, a tie or no vote is neutral.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Sequence

from core.llm.base import LLMConfig, LLMRequest, request_for
from core.llm.prompts import POLARITY_REASK_SUFFIX
from core.wheel import WHEELS, Wheel
from evaluation.reask import ask_until_parsed

log = logging.getLogger(__name__)
POLARITIES = ("positive", "negative", "neutral")

# Level-1 clusters of the MER-UniBench wheels (wheel1-5) -> polarity. Surprise is left neutral:
# it is positive or negative by context. A cluster not listed casts no vote.
CLUSTER_POLARITY = {
    "happy": "positive",
    "joyful": "positive",
    "joy": "positive",
    "peaceful": "positive",
    "powerful": "positive",
    "genius": "positive",  # wheel4: confident, proud, curious, creative, ...
    "sad": "negative",
    "mad": "negative",
    "angry": "negative",
    "anger": "negative",
    "scared": "negative",
    "fearful": "negative",
    "fear": "negative",
    "disgusted": "negative",
    "disgust": "negative",
    "bad": "negative",
    "surprised": "neutral",
}


def polarity_of(value, threshold: float = 0.0) -> str | None:
    """A ground-truth cell -> polarity: a polarity word, or a valence score against ``threshold``;
    None when it is neither."""
    if isinstance(value, str):
        word = value.strip().lower()
        if word in POLARITIES:
            return word
        try:
            value = float(word)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return "positive" if value > threshold else "negative" if value < -threshold else "neutral"


def lexicon_polarity(wheel: Wheel, labels: Sequence[str]) -> str:
    """The offline mapping: votes of the labels' level-1 clusters over all wheels."""
    votes = {"positive": 0, "negative": 0}
    for label in labels:
        for w in (w for w in WHEELS if w in wheel.clusters):
            pol = CLUSTER_POLARITY.get(wheel.cluster(label, w, "level1"))
            if pol in votes:
                votes[pol] += 1
    if votes["positive"] == votes["negative"]:
        return "neutral"
    return "positive" if votes["positive"] > votes["negative"] else "negative"


def parse_polarity(answer: str | None) -> str | None:
    """The one polarity word an answer names, or None (none, or more than one)."""
    found = set(re.findall(r"\b(positive|negative|neutral)\b", (answer or "").lower()))
    return found.pop() if len(found) == 1 else None


def llm_polarity(
    label_lists: Sequence[list[str]],
    complete: Callable[[list[LLMRequest]], list[str]],
    llm: LLMConfig | None = None,
    reask: int = 2,
) -> tuple[list[str], list[int]]:
    """(polarity per sample, indices whose answer never parsed: scored neutral). An empty label
    list is neutral without a request; equal label sets share one (cached) request."""
    out: list[str | None] = [None if labels else "neutral" for labels in label_lists]
    cfg = llm or LLMConfig()
    found, pending = ask_until_parsed(
        [i for i, v in enumerate(out) if v is None],
        lambda i: request_for(cfg, "ov_sentiment", {"emotion_words": repr(sorted(label_lists[i]))}),
        parse_polarity,
        complete,
        POLARITY_REASK_SUFFIX,
        reask,
    )
    out = [found.get(i, v) for i, v in enumerate(out)]
    if pending:
        log.warning("sentiment: %d answers named no single polarity; scored neutral", len(pending))
    return [v or "neutral" for v in out], pending


def sentiment_scores(gt: Sequence[str], pred: Sequence[str]) -> dict:
    """WAF and accuracy of positive vs not positive over the samples whose ground truth is not
    neutral, plus the 3x3 confusion counts (ground truth -> prediction) of all samples."""
    keep = [i for i, g in enumerate(gt) if g != "neutral"]
    y_true = [gt[i] == "positive" for i in keep]
    y_pred = [pred[i] == "positive" for i in keep]
    confusion = {g: {p: 0 for p in POLARITIES} for g in POLARITIES}
    for g, p in zip(gt, pred):
        confusion[g][p] += 1
    return {
        "weighted_f1": weighted_f1(y_true, y_pred),
        "accuracy": (sum(t == p for t, p in zip(y_true, y_pred)) / len(keep)) if keep else float("nan"),
        "samples": len(keep),
        "neutral_gt_excluded": len(gt) - len(keep),
        "confusion": confusion,
    }


def weighted_f1(y_true: Sequence[bool], y_pred: Sequence[bool]) -> float:
    """F1 per class (True, False) weighted by its support, as sklearn's ``average='weighted'``
    (a class never predicted nor present has F1 0)."""
    if not y_true:
        return float("nan")
    total = 0.0
    for cls in (True, False):
        tp = sum(t == cls and p == cls for t, p in zip(y_true, y_pred))
        fp = sum(t != cls and p == cls for t, p in zip(y_true, y_pred))
        fn = sum(t == cls and p != cls for t, p in zip(y_true, y_pred))
        f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        total += f1 * sum(t == cls for t in y_true)
    return total / len(y_true)
