"""The discrete (hit rate) and sentiment tasks end to end: read the one-label ground truth, align
the OV predictions (labels, or extracted from descriptions), score, summarise.

Ground truth is a ``name,<column>`` table: one emotion word per row for the discrete task
(``emotion``, like MER2023 / IEMOCAP), a polarity word or a valence score for the sentiment task
(``sentiment``, like CMU-MOSI / CH-SIMS). The definitions are in ``evaluation.discrete`` and
``evaluation.sentiment``.
"""

from __future__ import annotations

from collections.abc import Callable

from evaluation.config import EvaluateConfig
from evaluation.discrete import hit_summary
from evaluation.scoring import align_predictions
from evaluation.sentiment import lexicon_polarity, llm_polarity, polarity_of, sentiment_scores
from evaluation.tables import EvalInputError, Table, read_table, require_column
from evaluation.wheel import load_wheel

Complete = Callable[[list], list[str]]


def _gt_values(cfg: EvaluateConfig, uri: str, default: str) -> tuple[Table, list, str]:
    column = cfg.gt_column or default
    table = read_table(uri, cfg.name_column)
    return table, require_column(table, column, "--gt-column"), column


def read_discrete_gt(uri: str, cfg: EvaluateConfig) -> tuple[list[str], list[str]]:
    """(names, one lower-cased label per sample); an empty cell is an input error."""
    table, values, column = _gt_values(cfg, uri, "emotion")
    labels = []
    for i, value in enumerate(values):
        label = "" if value is None else str(value).strip().lower()
        if not label:
            raise EvalInputError(
                f"{table.where(i)}: column {column!r} is empty; give every sample its one emotion label"
            )
        labels.append(label)
    return table.names, labels


def read_sentiment_gt(uri: str, cfg: EvaluateConfig) -> tuple[list[str], list[str]]:
    """(names, polarity per sample) from polarity words or valence scores (``valence_threshold``)."""
    table, values, column = _gt_values(cfg, uri, "sentiment")
    out = []
    for i, value in enumerate(values):
        pol = polarity_of(value, cfg.valence_threshold)
        if pol is None:
            raise EvalInputError(
                f"{table.where(i)}: column {column!r} holds {value!r}; write positive, negative, "
                "neutral or a valence number"
            )
        out.append(pol)
    return table.names, out


def score_hit(gt_uri: str, pred_uri: str, cfg: EvaluateConfig, complete: Complete | None = None):
    """(summary, per-sample rows) of the discrete task; needs ``cfg.wheel_dir``."""
    if not cfg.wheel_dir:
        raise EvalInputError("the hit rate maps labels to emotion-wheel clusters: give --wheel-dir")
    wheel = load_wheel(cfg.wheel_dir)
    names, gt = read_discrete_gt(gt_uri, cfg)
    pred, info = align_predictions(pred_uri, names, cfg, complete)
    summary, rows = hit_summary(wheel, names, gt, pred)
    return {**summary, "wheel_dir": cfg.wheel_dir, **info}, rows


def score_sentiment(gt_uri: str, pred_uri: str, cfg: EvaluateConfig, complete: Complete | None = None):
    """(summary, per-sample rows) of the sentiment task, with the mapping named in the summary."""
    names, gt = read_sentiment_gt(gt_uri, cfg)
    pred_labels, info = align_predictions(pred_uri, names, cfg, complete)
    if cfg.sentiment_mapping == "lexicon":
        if not cfg.wheel_dir:
            raise EvalInputError("--mapping lexicon maps labels by their wheel clusters: give --wheel-dir")
        wheel = load_wheel(cfg.wheel_dir)
        pred = [lexicon_polarity(wheel, labels) for labels in pred_labels]
        mapping = {
            "mapping": "lexicon",
            "mapping_note": "offline wheel-cluster lexicon (ours), not the paper's LLM",
        }
    else:
        if complete is None:
            raise ValueError("--mapping llm needs an LLM: configure evaluate.llm (base_url, model)")
        pred, failed = llm_polarity(pred_labels, complete, cfg.llm, cfg.reask)
        mapping = {
            "mapping": "llm",
            "mapping_note": f"LLM ({cfg.llm.model}) with the ov_sentiment prompt",
            "llm_failures": len(failed),
            "llm_failed_names": [names[i] for i in failed][:50],
        }
    summary = {"task": "sentiment", **sentiment_scores(gt, pred), **mapping}
    summary["valence_threshold"] = cfg.valence_threshold
    rows = [
        {"name": n, "gt": g, "pred": p, "labels": list(labels)}
        for n, g, p, labels in zip(names, gt, pred, pred_labels)
    ]
    return {**summary, **info}, rows
