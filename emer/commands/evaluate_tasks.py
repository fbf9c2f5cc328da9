"""What ``emer evaluate hit`` and ``emer evaluate sentiment`` run: the MER-UniBench discrete task
(hit rate on the emotion wheels) and sentiment task (WAF / accuracy on the non-neutral samples);
the flags are in ``evaluate.py``, the definitions in ``evaluation.discrete`` / ``evaluation.sentiment``.
"""

from __future__ import annotations

import argparse

import pyarrow as pa

from core import storage
from emer.commands.evaluate_run import _complete, _emit, _out_dir, _save_config, check_llm, load_config
from evaluation.report import write_report
from evaluation.report_tasks import plot_hit, plot_sentiment
from evaluation.tasks import score_hit, score_sentiment


def _write(args: argparse.Namespace, cfg, section: str, summary: dict, rows: list[dict], plot) -> None:
    out = _out_dir(cfg, args.pred)
    summary["report"] = write_report(out, section, summary, {f"{section}.png": plot(summary)})["md"]
    table = [{k: (str(v) if isinstance(v, list) else v) for k, v in r.items()} for r in rows]
    storage.write_table(pa.Table.from_pylist(table), storage.join(out, f"{section}-samples.csv"))
    _save_config(out, cfg)


def cmd_hit(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    complete = _complete(cfg)
    summary, rows = score_hit(args.gt, args.pred, cfg, complete)
    summary = {"gt": args.gt, "predictions": args.pred, **summary}
    if cfg.report:
        _write(args, cfg, "hit", summary, rows, plot_hit)
    wheels = "  ".join(f"{w} {v['hit_rate']:.4f}" for w, v in summary["wheels"].items())
    _emit(args, summary, f"hit rate {summary['hit_rate']:.6f}  ({summary['samples']} samples; {wheels})")
    check_llm(complete, cfg, "hit")
    return 0


def cmd_sentiment(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    complete = _complete(cfg)
    summary, rows = score_sentiment(args.gt, args.pred, cfg, complete)
    summary = {"gt": args.gt, "predictions": args.pred, **summary}
    if cfg.report:
        _write(args, cfg, "sentiment", summary, rows, plot_sentiment)
    _emit(
        args,
        summary,
        f"weighted F1 {summary['weighted_f1']:.6f}  accuracy {summary['accuracy']:.6f}  "
        f"({summary['samples']} non-neutral samples, mapping {summary['mapping']})",
    )
    check_llm(complete, cfg, "sentiment")
    return 0
