"""``emer evaluate ov|text|extract|runs|report|hit|sentiment``: score predictions, write reports.

The ``evaluate`` section of the run config (``--config``, dotted ``--evaluate.x=y`` overrides) is
read with ``core.config``; the flags below override it. Reports go next to the predictions
unless ``--out`` says otherwise; ``--json`` prints the result as one JSON object on stdout.
"""

from __future__ import annotations

import argparse

from emer.commands.evaluate_run import cmd_extract, cmd_ov, cmd_report, cmd_runs, cmd_text
from emer.commands.evaluate_tasks import cmd_hit, cmd_sentiment
from evaluation.config import GROUPINGS, LANGUAGES, LIST_PARSERS, SENTIMENT_MAPPINGS


def _shared(p: argparse.ArgumentParser, gt: bool = True, pred: bool = True) -> None:
    if gt:
        p.add_argument(
            "--gt",
            required=True,
            metavar="FILE",
            help="ground truth: .csv or .parquet (name, openset and/or description), local or s3://",
        )
    if pred:
        p.add_argument(
            "--pred",
            required=True,
            metavar="FILE",
            help="predictions: .csv or .parquet (name, "
            "openset as a list or list literal, or free-text description)",
        )
    p.add_argument("--name-column", default=None, help="column with sample ids (default: name)")
    p.add_argument("--labels-column", default=None, help="column with label lists (default: openset)")
    p.add_argument("--text-column", default=None, help="column with descriptions (default: description)")
    p.add_argument(
        "--out", default=None, metavar="DIR", help="report folder (default: next to the predictions)"
    )
    p.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout")
    p.add_argument(
        "--max-failure-fraction",
        type=float,
        default=None,
        metavar="F",
        help="exit non-zero when more than this share of the LLM requests failed (default "
        "evaluate.max_failure_fraction, 0.5); the results are written either way",
    )


def _grouping_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--grouping",
        choices=GROUPINGS,
        default=None,
        help="synonym merging: groups (precomputed), wheel (emotion wheels, offline), llm (cached "
        "LLM calls), exact (string identity); auto = groups if given, else wheel if given, "
        "else exact",
    )
    p.add_argument(
        "--groups",
        default=None,
        metavar="FILE",
        help="precomputed groups: the organisers' "
        "openset-synonym.zip, a folder of .npy, a {name: groups} .json or a name,groups table",
    )
    p.add_argument(
        "--wheel-dir",
        default=None,
        metavar="DIR",
        help="emotion-wheel folder (wheel_mapping.json or wheel1-5.xlsx + format.csv + synonym.xlsx)",
    )
    p.add_argument(
        "--list-parser",
        choices=LIST_PARSERS,
        default=None,
        help="label-list parsing: auto (default: mertools with --groups, else literal), literal (safe "
        "Python literal) or mertools (the organisers' quote-splitting parser, with which their "
        "openset-synonym.zip was built)",
    )
    p.add_argument("--no-report", action="store_true", help="print only; write no report files")


def _task_flags(p: argparse.ArgumentParser, column: str) -> None:
    p.add_argument(
        "--gt-column",
        default=None,
        help=f"ground-truth column with one value per sample (default: {column})",
    )
    p.add_argument(
        "--wheel-dir",
        default=None,
        metavar="DIR",
        help="emotion-wheel folder (wheel_mapping.json or wheel1-5.xlsx + format.csv + synonym.xlsx)",
    )
    p.add_argument("--no-report", action="store_true", help="print only; write no report files")


def _register_tasks(evsub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = evsub.add_parser(
        "hit",
        parents=[common],
        help="MER-UniBench discrete task: hit rate of one-label ground truth on the emotion wheels",
        description="Hit rate: the label's level-1 wheel cluster among the predicted labels' clusters, "
        "averaged over the five wheels (ground truth: name,emotion).",
    )
    _shared(p)
    _task_flags(p, "emotion")
    p.set_defaults(func=cmd_hit)

    p = evsub.add_parser(
        "sentiment",
        parents=[common],
        help="MER-UniBench sentiment task: WAF and accuracy on the non-neutral samples",
        description="OV labels -> positive/negative/neutral (LLM or offline lexicon), scored positive vs "
        "not positive on the samples whose ground truth (name,sentiment) is not neutral.",
    )
    _shared(p)
    _task_flags(p, "sentiment")
    p.add_argument(
        "--mapping",
        choices=SENTIMENT_MAPPINGS,
        default=None,
        help="labels -> polarity: llm (the ov_sentiment prompt via evaluate.llm; default) or lexicon "
        "(offline, the wheels' level-1 clusters; ours, not the paper's; needs --wheel-dir)",
    )
    p.add_argument(
        "--valence-threshold",
        type=float,
        default=None,
        metavar="T",
        help="numeric ground truth: positive above T, negative below -T, neutral between (default 0)",
    )
    p.set_defaults(func=cmd_sentiment)


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    ev = sub.add_parser(
        "evaluate",
        parents=[common],
        help="score predictions: set-level OV metrics, text metrics, runs, reports",
        description=__doc__,
    )
    evsub = ev.add_subparsers(dest="evaluate_command", metavar="WHAT")
    ev.set_defaults(func=lambda a: ev.print_help() or 2)

    p = evsub.add_parser(
        "ov",
        parents=[common],
        help="Accuracy_s / Recall_s / Avg of OV label predictions",
        description="Set-level accuracy, recall and their average (MER2024 definition).",
    )
    _shared(p)
    _grouping_flags(p)
    p.set_defaults(func=cmd_ov)

    p = evsub.add_parser(
        "text",
        parents=[common],
        help="BLEU-1, BLEU-4, METEOR, ROUGE-L of descriptions",
        description="Word-matching metrics between predicted and reference descriptions.",
    )
    _shared(p)
    p.add_argument(
        "--language", choices=LANGUAGES, default=None, help="tokenisation of the text (default en)"
    )
    p.add_argument("--no-meteor", action="store_true", help="skip METEOR (it starts a Java VM)")
    p.add_argument("--no-report", action="store_true", help="print only; write no report files")
    p.set_defaults(func=cmd_text)

    p = evsub.add_parser(
        "extract",
        parents=[common],
        help="OV labels from free-text descriptions via an LLM",
        description="Extract open-vocabulary labels with the papers' prompt (evaluate.llm).",
    )
    _shared(p, gt=False)
    p.add_argument(
        "--output", required=True, metavar="FILE", help="where to write name,openset (.csv/.parquet)"
    )
    p.set_defaults(func=cmd_extract)

    p = evsub.add_parser(
        "runs",
        aliases=["compare"],
        parents=[common],
        help="mean ± std over runs, one table over models, metric correlation heatmap",
        description="Evaluate several prediction files per model.",
    )
    _shared(p, pred=False)
    _grouping_flags(p)
    p.add_argument("--language", choices=LANGUAGES, default=None, help="text metrics tokenisation")
    p.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="NAME=PRED[,PRED...]",
        help="a model and its prediction files (repeat for more models)",
    )
    p.set_defaults(func=cmd_runs)

    p = evsub.add_parser(
        "report",
        parents=[common],
        help="everything one prediction file allows, one report",
        description="OV metrics (labels or extracted) and text metrics into report.md/json.",
    )
    _shared(p)
    _grouping_flags(p)
    p.add_argument("--language", choices=LANGUAGES, default=None, help="text metrics tokenisation")
    p.add_argument("--no-text", action="store_true", help="skip the text metrics (and the Java VM)")
    p.set_defaults(func=cmd_report)

    _register_tasks(evsub, common)
