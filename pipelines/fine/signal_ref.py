"""The independent signal of the label-agreement rule when no reference labels exist.

An annotation whose audio / video roles ran ``backend: signal`` carries measured numbers beside its
descriptions (``core.schema``): ``face_expressions`` (the FER2013 classifier's probabilities on the
main face per frame, and their mean) and ``audio_features`` (eGeMAPS functionals and a prosody
arousal estimate). ``SignalReference.of(row)`` reads them: the classifier's top expression over the
clip (when a face was seen and the label is an emotion: "neutral" names none) and the arousal level
(high / low; medium and no speech say nothing). ``agreement`` scores the description's OV labels
against it: the wheel-grouped set-level Avg against the expression label, and 1 or 0 for whether
the labels' arousal (``HIGH_AROUSAL`` / ``LOW_AROUSAL``, after Russell's circumplex) matches the
measured one; the mean of the parts that exist, or None when neither does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from core.schema import AUDIO_FEATURES, FACE_EXPRESSIONS

EXPRESSION_WORD = {  # the classifier's classes as emotion words (fer's "neutral" is no emotion)
    "angry": "angry",
    "disgust": "disgusted",
    "fear": "afraid",
    "happy": "happy",
    "sad": "sad",
    "surprise": "surprised",
}
MIN_TOP_PROB = 0.4  # the top expression's mean probability needed to count as the clip's expression
AROUSAL_HIGH, AROUSAL_LOW = 0.5, -0.5  # pipelines/signals/norms.json's thresholds (arousal +-0.5)
HIGH_AROUSAL = frozenset(
    "angry furious annoyed frustrated irritated excited surprised astonished amazed afraid scared "
    "fearful anxious worried nervous tense panicked happy joyful elated amused delighted".split()
)
LOW_AROUSAL = frozenset(
    "sad depressed disappointed tired bored calm relaxed content serene indifferent gloomy lonely "
    "melancholy sleepy weary hurt grief".split()
)


@dataclasses.dataclass(frozen=True)
class SignalReference:
    """What the measured signals say about one clip (None: the signal says nothing)."""

    expression: str | None
    arousal: str | None  # "high" or "low"

    @classmethod
    def of(cls, row: dict[str, Any]) -> SignalReference | None:
        expr, audio = row.get(FACE_EXPRESSIONS) or {}, row.get(AUDIO_FEATURES) or {}
        word = None
        mean = expr.get("mean")
        if mean:
            top = max(range(len(mean)), key=lambda i: mean[i])
            if mean[top] >= MIN_TOP_PROB:
                word = EXPRESSION_WORD.get(expr["labels"][top])
        value = audio.get("arousal")
        level = (
            None
            if value is None
            else "high"
            if value >= AROUSAL_HIGH
            else "low"
            if value <= AROUSAL_LOW
            else None
        )
        return cls(word, level) if (word or level) else None

    def text(self) -> str:
        parts = [
            f"face {self.expression}" if self.expression else "",
            f"voice arousal {self.arousal}" if self.arousal else "",
        ]
        return ", ".join(p for p in parts if p)


def label_arousal(labels: Sequence[str]) -> str | None:
    """ "high" / "low" by the majority of the labels found in the lexicons (None: none or a tie)."""
    high = sum(1 for x in labels if x in HIGH_AROUSAL)
    low = sum(1 for x in labels if x in LOW_AROUSAL)
    return "high" if high > low else "low" if low > high else None


def agreement(
    labels: Sequence[str], ref: SignalReference, score_labels: Callable[[Sequence[str], Sequence[str]], float]
) -> float | None:
    """Mean of the expression agreement (``score_labels(labels, [expression])``) and the arousal
    match (1 / 0), over the parts the signal and the labels both speak to; None when none does."""
    parts = []
    if ref.expression:
        parts.append(score_labels(labels, [ref.expression]))
    mine = label_arousal(labels)
    if ref.arousal and mine:
        parts.append(1.0 if mine == ref.arousal else 0.0)
    return sum(parts) / len(parts) if parts else None
