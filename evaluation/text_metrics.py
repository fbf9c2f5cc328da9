"""Word-matching metrics between predicted and reference descriptions: BLEU-1, BLEU-4, METEOR, ROUGE-L.

BLEU is sacrebleu's corpus BLEU (BLEU-1 with ``max_ngram_order=1``); ROUGE-L is the mean per-sample
F-measure of ``rouge-score``; METEOR is METEOR 1.5 (the jar bundled with ``pycocoevalcap``, run on
Java), its corpus score. The JVM starts once per process (~6 s) and is reused. Scores are 0..1.
For ``zh`` text, BLEU uses sacrebleu's Chinese tokeniser and ROUGE-L / METEOR see characters.
"""

from __future__ import annotations

import atexit
import logging
import re
import threading
from collections.abc import Sequence

log = logging.getLogger(__name__)

_meteor = None
_meteor_lock = threading.Lock()
_SPACE = re.compile(r"\s+")


def _clean(text: str) -> str:
    return _SPACE.sub(" ", (text or "").replace("|||", " ")).strip()


def _chars(text: str) -> str:
    """Chinese text as space-separated characters (latin words kept whole)."""
    return " ".join(re.findall(r"[A-Za-z0-9]+|[^\W_]", text))


class _CharTokenizer:
    def tokenize(self, text: str) -> list[str]:
        return _chars(text.lower()).split()


def meteor_scorer():
    """The process-wide METEOR 1.5 scorer (one JVM), created on first use and closed at exit."""
    global _meteor
    with _meteor_lock:
        if _meteor is None:
            import shutil

            if shutil.which("java") is None:
                raise RuntimeError(
                    "METEOR needs Java (17 works): install it, e.g. apt-get install -y "
                    "openjdk-17-jre-headless"
                )
            from pycocoevalcap.meteor.meteor import Meteor

            log.info("starting the METEOR 1.5 JVM (once per process)")
            _meteor = Meteor()
            atexit.register(close_meteor)
        return _meteor


def close_meteor() -> None:
    global _meteor
    with _meteor_lock:
        scorer, _meteor = _meteor, None
    if scorer is not None:
        del scorer


def meteor(refs: Sequence[str], hyps: Sequence[str]) -> tuple[float, list[float]]:
    """Corpus METEOR and the per-sample scores."""
    if not refs:
        return 0.0, []
    gts = {i: [r or "."] for i, r in enumerate(refs)}
    res = {i: [h] for i, h in enumerate(hyps)}
    score, scores = meteor_scorer().compute_score(gts, res)
    return float(score), [float(s) for s in scores]


def text_scores(
    refs: Sequence[str], hyps: Sequence[str], language: str = "en", with_meteor: bool = True
) -> tuple[dict, list[dict]]:
    """(corpus-level summary, per-sample rows with meteor and rouge_l)."""
    import sacrebleu
    from rouge_score import rouge_scorer

    if len(refs) != len(hyps):
        raise ValueError(f"text metrics: {len(refs)} references but {len(hyps)} predictions")
    refs = [_clean(r) for r in refs]
    hyps = [_clean(h) for h in hyps]
    tok = "zh" if language == "zh" else "13a"
    bleu1 = sacrebleu.metrics.BLEU(max_ngram_order=1, tokenize=tok).corpus_score(hyps, [refs]).score / 100
    bleu1 = min(1.0, bleu1)
    bleu4 = min(1.0, sacrebleu.metrics.BLEU(tokenize=tok).corpus_score(hyps, [refs]).score / 100)
    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_CharTokenizer() if language == "zh" else None)
    rouge = [scorer.score(r, h)["rougeL"].fmeasure for r, h in zip(refs, hyps)]
    summary = {
        "bleu1": bleu1,
        "bleu4": bleu4,
        "rouge_l": sum(rouge) / len(rouge) if rouge else 0.0,
        "samples": len(refs),
    }
    per_meteor: list[float] = [float("nan")] * len(refs)
    if with_meteor:
        if language == "zh":
            summary["meteor"], per_meteor = meteor([_chars(r) for r in refs], [_chars(h) for h in hyps])
        else:
            summary["meteor"], per_meteor = meteor(refs, hyps)
    rows = [{"index": i, "meteor": m, "rouge_l": r} for i, (m, r) in enumerate(zip(per_meteor, rouge))]
    return summary, rows
