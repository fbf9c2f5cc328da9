"""The demo's evaluation: the annotation's OV labels and the trained model's descriptions, each scored
against the sample clips' reference (``name, openset``) with the emotion-wheel grouping.

``evaluate_demo`` writes ``<out>/annotation/`` and ``<out>/model/`` (each a full ``emer evaluate``
report) and ``<out>/report.md`` (both numbers side by side, labelled as a smoke figure). The model's
labels are extracted from its descriptions by ``evaluate.llm`` (SmolLM2 in the demo preset). Without
an emotion wheel (``evaluate.wheel_dir`` missing) the grouping falls back to exact matching and the
report says so. ``EvaluationLLM`` loads that LLM in a background thread while the demo trains (the
driver only waits on Ray then), so the evaluate phase does not wait for the load.
"""

from __future__ import annotations

import ast
import csv
import json
import logging
import threading
from pathlib import Path
from typing import Any

import pyarrow as pa

from core import storage
from core.llm import Completer
from core.schema import OV_LABELS
from evaluation.runs import flat_metrics, report_file
from evaluation.wheel import load_wheel

log = logging.getLogger(__name__)
SMOKE = (
    "A smoke figure, not a result: a 135 M-parameter LLM (SmolLM2-135M-Instruct) with random-weight "
    "audio/video models, on a handful of generated clips."
)


class EvaluationLLM:
    """``evaluate.llm``'s completer, its backend (the model) loading in a background thread from
    construction on. ``get()`` waits for the load. A load that failed is not raised there: the
    completer loads again when an answer is not cached, and raises that error then (answers all
    cached need no model, as before)."""

    def __init__(self, cfg: Any) -> None:
        self.completer = Completer(cfg)
        self._thread = threading.Thread(target=self._load, name="evaluate-llm-load", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        try:
            self.completer.backend()
        except Exception as err:  # noqa: BLE001 - raised again on first use (Completer.backend)
            log.debug("evaluation LLM did not load ahead: %s", err)

    def get(self) -> Completer:
        self._thread.join()
        return self.completer


def loss_curve(run_uri: str) -> list[float]:
    """The per-step training losses of a run (its ``history.json``)."""
    uri = storage.join(run_uri, "history.json")
    if not storage.exists(uri):
        return []
    return [float(r["loss"]) for r in json.loads(storage.read_text(uri)).get("steps", [])]


def read_reference(path: Path | str) -> dict[str, list[str]]:
    """``name -> labels`` of a MER2024-layout reference CSV (``name, openset``)."""
    with open(path, encoding="utf-8", newline="") as f:
        return {row["name"]: list(ast.literal_eval(row["openset"])) for row in csv.DictReader(f)}


def evaluate_demo(
    cfg: Any,
    reference: Path | str,
    coarse: str,
    trained: dict[str, str],
    out: str,
    llm: EvaluationLLM | None = None,
) -> dict:
    """Score both against ``reference``; returns ``{"scores", "line", "report"}``. ``llm``: the
    evaluation LLM, loading already (``EvaluationLLM``); None: made here."""
    ev, note = _grouping(cfg.evaluate)
    ref = read_reference(reference)
    coarse_rows = storage.read_table(storage.join(coarse, "samples"), columns=["name", OV_LABELS]).to_pylist()
    annotated = {r["name"]: list(r[OV_LABELS] or []) for r in coarse_rows if r["name"] in ref}
    scores = {"annotation (OV labels)": _score_labels(ev, ref, annotated, storage.join(out, "annotation"))}
    if ev.resolved_grouping() == "wheel":
        scores["annotation (OV labels)"]["in_wheel"] = _in_wheel(ev.wheel_dir, annotated)
    complete = (llm or EvaluationLLM(ev.llm)).get()
    try:
        model_out = storage.join(out, "model")
        scores["AffectGPT (descriptions)"] = _score_model(ev, ref, trained, model_out, complete)
    finally:
        complete.close()
    report = storage.join(out, "report.md")
    storage.write_text(report, _report_md(scores, note, ev.resolved_grouping()))
    a, m = scores["annotation (OV labels)"], scores["AffectGPT (descriptions)"]
    line = (
        f"{ev.resolved_grouping()} grouping: annotation {a['scored']} scored, avg {a.get('avg', 0):.3f}; "
        f"model {m['scored']} scored, avg {m.get('avg', 0):.3f}"
    )
    return {"scores": scores, "line": line, "report": report}


def _grouping(ev: Any) -> tuple[Any, str]:
    if ev.resolved_grouping() != "wheel" or storage.exists(storage.join(ev.wheel_dir, "wheel_mapping.json")):
        return ev, ""
    note = f"No emotion wheel at {ev.wheel_dir}: exact label matching instead (see emer models prepare)."
    log.warning(note)
    return ev.replace(grouping="exact"), note


def _score_labels(ev: Any, ref: dict, labels: dict[str, list[str]], out: str) -> dict:
    names = sorted(labels)
    gt = _write(out, "ground-truth.csv", {"name": names, "openset": [str(ref[n]) for n in names]})
    pred = _write(out, "predictions.csv", {"name": names, "openset": [str(labels[n]) for n in names]})
    result = report_file(gt, pred, ev.replace(out=out), out, text=False)
    return {"scored": int(result["ov"].get("samples", 0)), **flat_metrics(result), "report": result["report"]}


def _score_model(ev: Any, ref: dict, trained: dict[str, str], out: str, complete: Completer) -> dict:
    preds = storage.read_table(trained["predictions (test)"]).to_pylist()
    refs = {r["name"]: r for r in storage.read_table(trained["references (test)"]).to_pylist()}
    names = sorted(p["name"] for p in preds if p["name"] in ref)
    gt = _write(
        out,
        "ground-truth.csv",
        {
            "name": names,
            "openset": [str(ref[n]) for n in names],
            "description": [(refs.get(n) or {}).get("description") or "" for n in names],
        },
    )
    result = report_file(gt, trained["predictions (test)"], ev.replace(out=out), out, complete=complete)
    return {"scored": int(result["ov"].get("samples", 0)), **flat_metrics(result), "report": result["report"]}


def _in_wheel(wheel_dir: str, labels: dict[str, list[str]]) -> float:
    """The share of samples with at least one label that maps into the emotion wheel."""
    wheel = load_wheel(wheel_dir)
    hits = [any(wheel.candidates(lab.lower()) for lab in labs) for labs in labels.values()]
    return sum(hits) / len(hits) if hits else 0.0


def _write(out: str, name: str, columns: dict[str, list]) -> str:
    uri = storage.join(out, name)
    storage.write_table(pa.table(columns), uri)
    return uri


def _report_md(scores: dict[str, dict], note: str, grouping: str) -> str:
    lines = ["# emer demo: evaluation", "", SMOKE, ""]
    if note:
        lines += [note, ""]
    keys = [
        "scored",
        "avg",
        "accuracy",
        "recall",
        "f",
        "f_level1",
        "f_level2",
        "bleu1",
        "rouge_l",
        "in_wheel",
    ]
    lines += [f"Grouping: {grouping}. Reference: the scripted emotions of each sample subtitle.", ""]
    lines += ["| what | " + " | ".join(keys) + " | report |", "|" + " --- |" * (len(keys) + 2)]
    for who, s in scores.items():
        cells = [f"{s[k]:.3f}" if isinstance(s.get(k), float) else str(s.get(k, "")) for k in keys]
        lines.append(f"| {who} | " + " | ".join(cells) + f" | {s['report']} |")
    return "\n".join(lines) + "\n"
