"""What ``emer evaluate`` runs: one function per subcommand (``cmd_ov``, ``cmd_text``, ``cmd_extract``,
``cmd_runs``, ``cmd_report``) on the ``evaluate`` section of the run config; the flags are declared in
``emer/commands/evaluate.py``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import posixpath

import pyarrow as pa

from core import storage
from core.config import dump_yaml
from core.failures import check_failure_budget
from core.llm import Completer
from emer.commands import flags
from evaluation.config import EvaluateConfig
from evaluation.extract import extract_labels
from evaluation.report import plot_correlation, plot_models, write_ov_report, write_report
from evaluation.runs import compare, evaluate_file, report_file
from evaluation.scoring import load_ov_inputs, score_ov
from evaluation.tables import read_table, text_values
from evaluation.text_metrics import text_scores

log = logging.getLogger(__name__)


def load_config(args: argparse.Namespace) -> EvaluateConfig:
    """The ``evaluate`` section of the run config: --config, dotted overrides and the named flags."""
    return flags.load(args).evaluate


def _complete(cfg: EvaluateConfig) -> Completer:
    return Completer(cfg.llm)


def check_llm(complete: Completer, cfg: EvaluateConfig, what: str) -> None:
    """After the results are written: exit non-zero (``RunFailed``) when more than
    ``max_failure_fraction`` of the LLM requests failed (e.g. a wrong key: every request 401)."""
    failed = len(complete.errors)
    kept = "the results were written, with failed answers scored as empty"
    check_failure_budget(
        f"evaluate {what}", failed, complete.requests, cfg.max_failure_fraction, kept, "LLM requests"
    )


def _out_dir(cfg: EvaluateConfig, pred: str) -> str:
    if cfg.out:
        return cfg.out
    if storage.is_s3(pred):
        return posixpath.dirname(pred.rstrip("/"))
    return os.path.dirname(os.path.abspath(pred.rstrip("/")))


def _emit(args: argparse.Namespace, result: dict, line: str) -> None:
    print(json.dumps(result, default=str) if args.json else line, flush=True)


def _save_config(out: str, cfg: EvaluateConfig) -> None:
    storage.write_text(storage.join(out, "evaluate-config.yaml"), dump_yaml(cfg))


def cmd_ov(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    complete = _complete(cfg)
    summary, rows = score_ov(load_ov_inputs(args.gt, args.pred, cfg, complete), cfg, complete)
    summary = {"gt": args.gt, "predictions": args.pred, **summary}
    if cfg.report:
        out = _out_dir(cfg, args.pred)
        summary["report"] = write_ov_report(out, summary, rows)
        _save_config(out, cfg)
    _emit(
        args,
        summary,
        f"accuracy {summary['accuracy']:.6f}  recall {summary['recall']:.6f}  "
        f"avg {summary['avg']:.6f}  ({summary['samples']} samples, grouping "
        f"{summary['grouping']})",
    )
    check_llm(complete, cfg, "ov")
    return 0


def cmd_text(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    gt, pred = read_table(args.gt, cfg.name_column), read_table(args.pred, cfg.name_column)
    hyp = dict(zip(pred.names, text_values(pred, cfg.text_column)))
    refs = text_values(gt, cfg.text_column)
    summary, _ = text_scores(refs, [hyp.get(n, "") for n in gt.names], cfg.language, not args.no_meteor)
    summary = {
        "gt": args.gt,
        "predictions": args.pred,
        "language": cfg.language,
        "missing_predictions": sum(1 for n in gt.names if n not in hyp),
        **summary,
    }
    if cfg.report:
        out = _out_dir(cfg, args.pred)
        summary["report"] = write_report(out, "text", summary)["md"]
        _save_config(out, cfg)
    _emit(
        args,
        summary,
        "  ".join(f"{k} {summary[k]:.4f}" for k in ("bleu1", "bleu4", "meteor", "rouge_l") if k in summary),
    )
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    table = read_table(args.pred, cfg.name_column)
    complete = _complete(cfg)
    labels, failed = extract_labels(text_values(table, cfg.text_column), complete, cfg.llm, cfg.reask)
    as_text = args.output.lower().endswith(".csv")
    storage.write_table(
        pa.table(
            {cfg.name_column: table.names, cfg.labels_column: [str(x) for x in labels] if as_text else labels}
        ),
        args.output,
    )
    result = {
        "predictions": args.pred,
        "output": args.output,
        "samples": len(labels),
        "extraction_failures": len(failed),
        "failed_names": [table.names[i] for i in failed][:50],
    }
    _emit(
        args, result, f"{len(labels)} label lists written to {args.output} ({len(failed)} unreadable answers)"
    )
    check_llm(complete, cfg, "extract")
    return 0


def _parse_models(specs: list[str]) -> dict[str, list[str]]:
    models: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, files = spec.partition("=")
        if not sep or not name or not files:
            raise ValueError(
                f"--model {spec!r}: expected NAME=PRED1[,PRED2...], e.g. --model affectgpt=run1.csv,run2.csv"
            )
        models.setdefault(name, []).extend(f for f in files.split(",") if f)
    return models


def cmd_runs(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    models = _parse_models(args.model)
    complete = _complete(cfg)
    result = compare(args.gt, models, cfg, complete)
    if cfg.report:
        out = cfg.out or _out_dir(cfg, next(iter(models.values()))[0])
        metrics = {m for v in result["models"].values() for m in v["metrics"]}
        plots = {f"runs-{m}.png": plot_models(result, m) for m in ("avg", "f", "meteor") if m in metrics}
        if len(models) >= 3 and result["correlation"]["metrics"]:
            plots["metric-correlation.png"] = plot_correlation(
                result["correlation"]["metrics"], result["correlation"]["matrix"]
            )
        result["report"] = write_report(out, "runs", result, plots)["md"]
        _save_config(out, cfg)
    lines = []
    for name, v in result["models"].items():
        cells = "  ".join(f"{m} {a['mean']:.4f}±{a['std']:.4f}" for m, a in v["metrics"].items())
        lines.append(f"{name} ({len(v['runs'])} runs): {cells}")
    _emit(args, result, "\n".join(lines))
    check_llm(complete, cfg, "runs")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    complete = _complete(cfg)
    if not cfg.report:
        result = evaluate_file(args.gt, args.pred, cfg, complete, text=not args.no_text)
        _emit(args, result, json.dumps(result, default=str))
    else:
        out = _out_dir(cfg, args.pred)
        result = report_file(args.gt, args.pred, cfg, out, complete, text=not args.no_text)
        _save_config(out, cfg)
        _emit(args, result, f"report written to {result['report']}")
    check_llm(complete, cfg, "report")
    return 0
