"""OV scoring end to end: read ground truth and predictions, group, score, summarise.

``align_predictions`` (shared with the discrete and sentiment tasks) aligns predictions to the
ground-truth names (a missing prediction counts as empty and is reported; extra names are ignored
and counted) and extracts labels from free text when the prediction file holds descriptions
instead of label lists; ``load_ov_inputs`` adds the ground-truth label lists. ``score_ov`` applies the
configured grouping and returns a JSON-able summary plus per-sample scores.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence

import numpy as np

from evaluation.config import EvaluateConfig
from evaluation.extract import extract_labels
from evaluation.grouping import encode_groups, encode_wheel, llm_groups, load_groups
from evaluation.ov import SetScores, encode, score
from evaluation.tables import EvalInputError, Table, label_lists, read_table, text_values
from evaluation.wheel import LEVELS, load_wheel

log = logging.getLogger(__name__)
Complete = Callable[[list[str]], list[str]]


@dataclasses.dataclass
class OVInputs:
    names: list[str]
    gt: list[list[str]]
    pred: list[list[str]]
    info: dict


def load_ov_inputs(
    gt_uri: str, pred_uri: str, cfg: EvaluateConfig, complete: Complete | None = None
) -> OVInputs:
    gt_table = read_table(gt_uri, cfg.name_column)
    gt = label_lists(gt_table, cfg.labels_column, cfg.resolved_list_parser())
    pred, info = align_predictions(pred_uri, gt_table.names, cfg, complete)
    return OVInputs(gt_table.names, gt, pred, info)


def align_predictions(
    pred_uri: str, names: list[str], cfg: EvaluateConfig, complete: Complete | None = None
) -> tuple[list[list[str]], dict]:
    """The predicted label list of every ground-truth name (labels, or extracted from descriptions);
    a missing prediction is empty and counted, extra names are counted. Returns (lists, info)."""
    pred_table = read_table(pred_uri, cfg.name_column)
    pred_by_name, info = _predictions(pred_table, cfg, complete)
    missing = [n for n in names if n not in pred_by_name]
    if missing:
        log.warning(
            "%s: %d of %d ground-truth samples have no prediction; scored as empty (first: %s)",
            pred_uri,
            len(missing),
            len(names),
            ", ".join(missing[:5]),
        )
    info.update(
        {
            "gt_samples": len(names),
            "missing_predictions": len(missing),
            "missing_names": missing[:20],
            "extra_predictions": len(set(pred_by_name) - set(names)),
        }
    )
    return [pred_by_name.get(n, []) for n in names], info


def _predictions(table: Table, cfg: EvaluateConfig, complete: Complete | None) -> tuple[dict, dict]:
    if table.has(cfg.labels_column) or not table.has(cfg.text_column):
        return dict(zip(table.names, label_lists(table, cfg.labels_column, cfg.resolved_list_parser()))), {}
    if complete is None:
        raise EvalInputError(
            f"{table.uri} row 0 (header): no column {cfg.labels_column!r}, only free text in "
            f"{cfg.text_column!r}; configure evaluate.llm to extract labels, or run "
            "`emer evaluate extract` first"
        )
    labels, failed = extract_labels(text_values(table, cfg.text_column), complete, cfg.llm, cfg.reask)
    info = {
        "extracted_from": cfg.text_column,
        "extraction_failures": len(failed),
        "extraction_failed_names": [table.names[i] for i in failed][:50],
    }
    return dict(zip(table.names, labels)), info


def score_ov(
    inputs: OVInputs, cfg: EvaluateConfig, complete: Complete | None = None
) -> tuple[dict, list[dict]]:
    """(summary, per-sample rows). Summary keys: accuracy, recall, avg, samples, grouping, ..."""
    grouping = cfg.resolved_grouping()
    names, gt, pred = inputs.names, inputs.gt, inputs.pred
    summary: dict = {"grouping": grouping}
    if grouping == "wheel":
        summary.update(_wheel_summary(cfg.wheel_dir, gt, pred))
        rows: list[dict] = []
    else:
        diag: dict = {}
        if grouping == "exact":
            enc = encode(gt, pred)
        elif grouping == "groups":
            table = load_groups(cfg.groups)
            enc, diag = encode_groups(gt, pred, [table.get(n) for n in names])
            if diag["labels_not_in_groups"] and cfg.resolved_list_parser() == "literal":
                log.warning(
                    "%d labels are in no group of their sample; groups made by the organisers' "
                    "tools split labels at quotes (don't -> don, t): try --list-parser mertools",
                    diag["labels_not_in_groups"],
                )
        elif grouping == "llm":
            if complete is None:
                raise ValueError("grouping 'llm' needs an LLM: configure evaluate.llm (base_url, model)")
            groups, diag = llm_groups(names, gt, pred, complete, cfg.llm, cfg.reask)
            enc, more = encode_groups(gt, pred, groups)
            diag.update(more)
        else:
            raise ValueError(f"evaluate.grouping = {grouping!r}: unknown")
        s = score(enc)
        summary.update(s.summary())
        summary.update(diag)
        idx = np.flatnonzero(s.scored)
        rows = [
            {"name": names[i], "accuracy": float(a), "recall": float(r), "gt": gt[i], "pred": pred[i]}
            for i, a, r in zip(idx.tolist(), s.per_accuracy, s.per_recall)
        ]
    summary.update(inputs.info)
    return summary, rows


def _wheel_summary(wheel_dir: str, gt: Sequence[list[str]], pred: Sequence[list[str]]) -> dict:
    wheel = load_wheel(wheel_dir)
    results: dict[str, SetScores] = {k: score(e) for k, e in encode_wheel(wheel, gt, pred).items()}
    out: dict = {"wheel_dir": wheel_dir, "wheels": {}}
    for key, s in results.items():
        out["wheels"][key] = {
            "f": s.f,
            "precision": s.accuracy,
            "recall": s.recall,
            "samples": s.samples,
            "empty_predictions": s.empty_predictions,
        }
    for level in LEVELS:
        views = [v for k, v in out["wheels"].items() if k.endswith(level)]
        out[level] = {m: float(np.mean([v[m] for v in views])) for m in ("f", "precision", "recall")}
    out["f"] = float(np.mean([out[lv]["f"] for lv in LEVELS]))
    out["accuracy"] = float(np.mean([s.accuracy for s in results.values()]))
    out["recall"] = float(np.mean([s.recall for s in results.values()]))
    out["avg"] = (out["accuracy"] + out["recall"]) / 2
    out["samples"] = int(np.any([s.scored for s in results.values()], axis=0).sum())
    out["skipped_empty_gt"] = len(gt) - out["samples"]
    return out
