"""Several runs and several models: evaluate each prediction file, mean ± standard deviation over a
model's runs (population std, numpy's default, as the papers' "average score and standard
deviation" of repeated runs), one table over models, and the Pearson correlation between metrics
across models (EMER Figure 6 / Appendix D).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa

from core import storage
from evaluation.config import EvaluateConfig
from evaluation.report import METRICS, write_ov_report, write_report
from evaluation.scoring import Complete, load_ov_inputs, score_ov
from evaluation.tables import label_lists, read_table, text_values
from evaluation.text_metrics import text_scores

log = logging.getLogger(__name__)


def evaluate_file(
    gt_uri: str, pred_uri: str, cfg: EvaluateConfig, complete: Complete | None = None, text: bool = True
) -> dict:
    """``{"ov": summary, "text": summary}`` for one prediction file (text only when both files hold
    the ``text_column``, OV only when the labels can be had)."""
    return _score_file(gt_uri, pred_uri, cfg, complete, text)[0]


def _score_file(
    gt_uri: str, pred_uri: str, cfg: EvaluateConfig, complete: Complete | None, text: bool
) -> tuple[dict, list[dict]]:
    """``evaluate_file``'s result and the OV scores per sample (empty without OV)."""
    out: dict = {"predictions": pred_uri}
    rows: list[dict] = []
    gt_table, pred_table = read_table(gt_uri, cfg.name_column), read_table(pred_uri, cfg.name_column)
    if gt_table.has(cfg.labels_column) and (
        pred_table.has(cfg.labels_column) or pred_table.has(cfg.text_column)
    ):
        out["ov"], rows = score_ov(load_ov_inputs(gt_uri, pred_uri, cfg, complete), cfg, complete)
    if text and gt_table.has(cfg.text_column) and pred_table.has(cfg.text_column):
        hyp = dict(zip(pred_table.names, text_values(pred_table, cfg.text_column)))
        refs = text_values(gt_table, cfg.text_column)
        out["text"], _ = text_scores(refs, [hyp.get(n, "") for n in gt_table.names], cfg.language)
    if len(out) == 1:
        raise ValueError(
            f"{pred_uri}: nothing to score; it needs column {cfg.labels_column!r} or "
            f"{cfg.text_column!r} (and the ground truth the same)"
        )
    return out, rows


def report_file(
    gt_uri: str,
    pred_uri: str,
    cfg: EvaluateConfig,
    out_dir: str,
    complete: Complete | None = None,
    text: bool = True,
) -> dict:
    """Evaluate one prediction file and write its report (``ov`` and ``text`` sections, plots) into
    ``out_dir``; returns the result with ``report`` set to the report.md URI. (``make demo`` ends here.)"""
    result, rows = _score_file(gt_uri, pred_uri, cfg, complete, text)
    where = {"gt": gt_uri, "predictions": pred_uri}
    if "ov" in result:
        write_ov_report(out_dir, {**where, **result["ov"]}, rows)
    if "text" in result:
        write_report(out_dir, "text", {**where, "language": cfg.language, **result["text"]})
    result["report"] = storage.join(out_dir, "report.md")
    return result


def flat_metrics(result: dict) -> dict[str, float]:
    """The headline numbers of one evaluated file, flat."""
    out: dict[str, float] = {}
    ov = result.get("ov") or {}
    for key in ("avg", "accuracy", "recall", "f"):
        if key in ov:
            out[key] = float(ov[key])
    for level in ("level1", "level2"):
        if level in ov:
            out[f"f_{level}"] = float(ov[level]["f"])
    for key in ("bleu1", "bleu4", "meteor", "rouge_l"):
        if key in (result.get("text") or {}):
            out[key] = float(result["text"][key])
    return out


def aggregate(runs: Sequence[dict[str, float]]) -> dict[str, dict]:
    """metric -> {mean, std, n, values} over the runs that have it."""
    out = {}
    for m in METRICS:
        values = [r[m] for r in runs if m in r]
        if values:
            out[m] = {
                "mean": float(np.mean(values)),
                "std": float(np.std(values)),
                "n": len(values),
                "values": values,
            }
    return out


def correlation(table: dict[str, dict[str, dict]]) -> tuple[list[str], np.ndarray]:
    """Pearson correlation between metrics across models (model -> metric -> {mean}); NaN where a
    metric does not vary. Only metrics every model has are used."""
    models = list(table)
    metrics = [m for m in METRICS if models and all(m in table[x] for x in models)]
    if len(models) < 2 or not metrics:
        return metrics, np.full((len(metrics), len(metrics)), np.nan)
    data = np.array([[table[x][m]["mean"] for x in models] for m in metrics])
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(data)
    return metrics, np.atleast_2d(corr)


def compare(
    gt_uri: str, models: dict[str, list[str]], cfg: EvaluateConfig, complete: Complete | None = None
) -> dict:
    """Evaluate every run of every model; ``{"models": {name: {"runs": [...], "metrics": agg}},
    "correlation": {"metrics": [...], "matrix": [[...]]}}``."""
    out: dict = {"gt": gt_uri, "models": {}}
    for name, files in models.items():
        runs = []
        for f in files:
            runs.append(evaluate_file(gt_uri, f, cfg, complete))
            log.info(
                "evaluated %s run %d/%d: %s",
                name,
                len(runs),
                len(files),
                " ".join(f"{k}={v:.4f}" for k, v in flat_metrics(runs[-1]).items()),
            )
        out["models"][name] = {"runs": runs, "metrics": aggregate([flat_metrics(r) for r in runs])}
    metrics, corr = correlation({n: m["metrics"] for n, m in out["models"].items()})
    out["correlation"] = {
        "metrics": metrics,
        "matrix": [[None if np.isnan(v) else float(v) for v in row] for row in corr],
    }
    return out


def score_epoch(
    gt_uri: str, pred_uri: str, complete: Complete | None, cfg: EvaluateConfig, labels_uri: str = ""
) -> dict[str, float]:
    """Flat metrics of one training epoch's predictions (what ``emer train`` reports per epoch): OV
    accuracy / recall / avg (labels extracted from the descriptions by ``complete``) against the
    reference labels, and BLEU / ROUGE-L against the reference descriptions. ``labels_uri``: a
    ``name, openset`` table whose labels replace the ones in ``gt_uri``."""
    cfg = cfg.replace(labels_column="openset", text_column="description", name_column="name")
    if labels_uri:
        gt_uri = _with_labels(gt_uri, labels_uri, cfg)
    gt = read_table(gt_uri)
    metrics: dict[str, float] = {}
    if gt.has("openset") and complete is not None:
        summary, _ = score_ov(load_ov_inputs(gt_uri, pred_uri, cfg, complete), cfg, complete)
        metrics.update(flat_metrics({"ov": summary}))
    pred = read_table(pred_uri)
    hyp = dict(zip(pred.names, pred.columns["description"]))
    text, _ = text_scores(
        gt.columns["description"], [hyp.get(n, "") for n in gt.names], cfg.language, with_meteor=False
    )
    metrics.update({k: float(text[k]) for k in ("bleu1", "bleu4", "rouge_l")})
    return metrics


def epoch_scorer(cfg: EvaluateConfig) -> Callable[..., dict[str, float]]:
    """``score_epoch`` bound to the ``evaluate`` section: what the application hands ``run_training``."""
    return functools.partial(score_epoch, cfg=cfg)


def _with_labels(gt_uri: str, labels_uri: str, cfg: EvaluateConfig) -> str:
    """``gt_uri`` with its ``openset`` column taken from ``labels_uri`` (written beside it)."""
    labels = read_table(labels_uri, cfg.name_column)
    by_name = dict(zip(labels.names, label_lists(labels, "openset", cfg.list_parser)))
    rows = storage.read_table(gt_uri).to_pylist()
    for row in rows:
        row["openset"] = list(by_name.get(row["name"], []))
    out = gt_uri.removesuffix(".parquet") + ".labelled.parquet"
    storage.write_table(pa.Table.from_pylist(rows), out)
    return out
