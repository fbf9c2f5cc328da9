"""The quality rules of the EMER-Fine filter, applied to one EMER-Coarse row.

``check_row`` returns a ``Verdict``: the rule ids that fired (``pipelines.fine.config.RULES``
order), one reason per rule naming the value and the threshold, and the numbers the rules computed
(the ``core.schema.QUALITY_NUMBERS`` columns). ``missing_clue`` reads the clue columns the row's run
wrote (``run_clues``: ``av_clue`` for an omni run). ``agreement`` is the high-level check of
MER-Caption: the set-level Avg of AffectGPT eq. 1-3 for one sample, (|G∩P|/|P| + |G∩P|/|G|) / 2
between the description's OV labels P and an independent label set G, with labels grouped by
emotion-wheel cluster in each of the wheel's ten views (a label that reaches no cluster stays
itself) and averaged over the views; without a wheel, exact labels. Without reference labels, a
``SignalReference`` (``pipelines.fine.signal_ref``: the measured face expression and voice arousal
of a ``signal``-role annotation) stands in for G.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from core.llm.labels import parse_ov_labels
from core.schema import (
    AV_CLUE,
    CLUES_OF,
    DESCRIPTION_EN,
    DESCRIPTION_ZH,
    OV_LABELS,
    QUALITY_AGREEMENT,
    QUALITY_ASCII_SHARE,
    QUALITY_CJK_SHARE,
    QUALITY_NGRAM_COUNT,
    QUALITY_OFF_WHEEL,
    QUALITY_WORDS,
)
from core.wheel import Wheel
from pipelines.fine.config import FilterConfig
from pipelines.fine.signal_ref import SignalReference
from pipelines.fine.signal_ref import agreement as signal_agreement

WORD = re.compile(r"\w+", re.UNICODE)
CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002a6df]")


@dataclasses.dataclass
class Verdict:
    flags: list[str] = dataclasses.field(default_factory=list)
    reasons: list[str] = dataclasses.field(default_factory=list)
    numbers: dict[str, Any] = dataclasses.field(default_factory=dict)

    def fire(self, cfg: FilterConfig, rule: str, reason: str) -> None:
        if cfg.active(rule):
            self.flags.append(rule)
            self.reasons.append(f"{rule}: {reason}")


def as_labels(value: Any) -> list[str]:
    """A label set from a list, a list literal ("['a', 'b']"), a comma list or one label; lower-cased."""
    if value is None:
        return []
    if isinstance(value, str):
        return parse_ov_labels(value)
    return list(dict.fromkeys(s for s in (str(v).strip().lower() for v in value) if s))


def share(text: str, good) -> float:
    """The share of ``text``'s letters for which ``good(letter)`` holds (1.0 without letters)."""
    letters = [c for c in text if c.isalpha()]
    return sum(1 for c in letters if good(c)) / len(letters) if letters else 1.0


def top_ngram(text: str, n: int) -> tuple[str, int]:
    """The most frequent word n-gram of ``text`` (lower-cased words) and its count (('', 0) if none)."""
    words = WORD.findall(text.lower())
    grams = Counter(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))
    return grams.most_common(1)[0] if grams else ("", 0)


def agreement(labels: Sequence[str], reference: Sequence[str], wheel: Wheel | None) -> float | None:
    """Set-level Avg of ``labels`` against ``reference`` (see the module doc); None without a reference."""
    gt, pred = as_labels(reference), as_labels(labels)
    if not gt:
        return None
    if not pred:
        return 0.0
    views = wheel.views() if wheel is not None else [None]
    scores = []
    for view in views:
        g, p = {_group(x, wheel, view) for x in gt}, {_group(x, wheel, view) for x in pred}
        hit = len(g & p)
        scores.append((hit / len(p) + hit / len(g)) / 2)
    return sum(scores) / len(scores)


def _group(label: str, wheel: Wheel | None, view) -> str:
    cluster = wheel.cluster(label, *view) if wheel is not None else ""
    return f"cluster:{cluster}" if cluster else f"label:{label}"


def check_row(
    row: dict[str, Any], cfg: FilterConfig, wheel: Wheel | None = None, reference: Any = None
) -> Verdict:
    """Every rule on ``row``; ``reference``: the row's independent labels, or a ``SignalReference``
    (None: not checked)."""
    v = Verdict()
    _text_rules(v, row, cfg)
    _language_rules(v, row, cfg)
    labels = as_labels(row.get(OV_LABELS))
    if not labels:
        v.fire(cfg, "no_labels", "ov_labels is empty")
    v.numbers[QUALITY_OFF_WHEEL] = None
    if wheel is not None and labels:
        off = [x for x in labels if not wheel.reaches_any(x)]
        v.numbers[QUALITY_OFF_WHEEL] = len(off)
        if len(off) / len(labels) > cfg.max_off_wheel_share:
            v.fire(
                cfg,
                "off_wheel",
                f"{len(off)} of {len(labels)} labels ({', '.join(off)}) reach no emotion-wheel cluster "
                f"(share > filter.max_off_wheel_share = {cfg.max_off_wheel_share})",
            )
    if isinstance(reference, SignalReference):
        score = signal_agreement(labels, reference, lambda p, g: agreement(p, g, wheel) or 0.0)
        said = f"the measured signal ({reference.text()})"
    else:
        score = agreement(labels, reference, wheel) if reference is not None else None
        said = f"the reference [{', '.join(as_labels(reference))}]"
    v.numbers[QUALITY_AGREEMENT] = None if score is None else round(score, 4)
    if score is not None and score < cfg.min_agreement:
        v.fire(
            cfg,
            "low_agreement",
            f"OV labels [{', '.join(labels)}] agree {score:.2f} with {said} "
            f"(< filter.min_agreement = {cfg.min_agreement})",
        )
    return v


def run_clues(row: dict[str, Any]) -> tuple[str, ...]:
    """The clue columns the row's annotation wrote: ``av_clue`` for an omni run (``annotate.clues:
    omni``, whose audio and video clues stay null), else the audio and video clues."""
    return CLUES_OF["omni" if row.get(AV_CLUE) is not None else "separate"]


def _text_rules(v: Verdict, row: dict[str, Any], cfg: FilterConfig) -> None:
    """Length, repeated n-gram and missing clue."""
    en = str(row.get(DESCRIPTION_EN) or "")
    words = v.numbers[QUALITY_WORDS] = len(en.split())
    if words < cfg.min_words:
        v.fire(cfg, "too_short", f"description_en has {words} words (< filter.min_words = {cfg.min_words})")
    if words > cfg.max_words:
        v.fire(cfg, "too_long", f"description_en has {words} words (> filter.max_words = {cfg.max_words})")
    gram, count = top_ngram(en, cfg.ngram)
    v.numbers[QUALITY_NGRAM_COUNT] = count
    if count >= cfg.ngram_repeats:
        limit = f"filter.ngram_repeats = {cfg.ngram_repeats}"
        v.fire(cfg, "repeated_ngram", f"the {cfg.ngram}-gram '{gram}' occurs {count} times (>= {limit})")
    empty = [c for c in run_clues(row) if not str(row.get(c) or "").strip()]
    if empty:
        v.fire(cfg, "missing_clue", f"{' and '.join(empty)} {'is' if len(empty) == 1 else 'are'} empty")


def _language_rules(v: Verdict, row: dict[str, Any], cfg: FilterConfig) -> None:
    """description_en mostly ASCII letters, description_zh mostly CJK characters (and present)."""
    en, zh = str(row.get(DESCRIPTION_EN) or ""), str(row.get(DESCRIPTION_ZH) or "").strip()
    ascii_share = v.numbers[QUALITY_ASCII_SHARE] = round(share(en, str.isascii), 4)
    if en.strip() and ascii_share < cfg.min_ascii_share:
        limit = f"filter.min_ascii_share = {cfg.min_ascii_share}"
        v.fire(cfg, "language_en", f"{ascii_share:.0%} of description_en's letters are ASCII (< {limit})")
    cjk = v.numbers[QUALITY_CJK_SHARE] = round(share(zh, lambda c: bool(CJK.match(c))), 4) if zh else 0.0
    if not zh and cfg.require_zh:
        v.fire(cfg, "language_zh", "description_zh is empty (filter.require_zh=false if not translated)")
    elif zh and cjk < cfg.min_cjk_share:
        limit = f"filter.min_cjk_share = {cfg.min_cjk_share}"
        v.fire(cfg, "language_zh", f"{cjk:.0%} of description_zh's letters are CJK characters (< {limit})")
