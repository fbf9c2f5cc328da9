"""``emer evaluate ov|text|extract|runs|report|hit|sentiment``: score predictions, write reports.

The ``evaluate`` section of the run config (``--config``, dotted ``--evaluate.x=y`` overrides); each
flag below that names a key sets it (``emer.commands.flags``), so ``evaluate-config.yaml`` beside the
report is the config that ran. Reports go next to the predictions
unless ``--out`` says otherwise; ``--json`` prints the result as one JSON object on stdout.
"""

from __future__ import annotations

import argparse

from emer.commands.evaluate_run import cmd_extract, cmd_ov, cmd_report, cmd_runs, cmd_text
from emer.commands.evaluate_tasks import cmd_hit, cmd_sentiment
from emer.commands.flags import Parents, config_flag
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
    config_flag(p, "--name-column", key="evaluate.name_column", help="column with sample ids (default: name)")
    config_flag(
        p, "--labels-column", key="evaluate.labels_column", help="column with label lists (default: openset)"
    )
    config_flag(
        p, "--text-column", key="evaluate.text_column", help="column with descriptions (default: description)"
    )
    config_flag(
        p, "--out", key="evaluate.out", metavar="DIR", help="report folder (default: next to the predictions)"
    )
    p.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout")
    config_flag(
        p,
        "--max-failure-fraction",
        key="evaluate.max_failure_fraction",
        type=float,
        metavar="F",
        help="exit non-zero when more than this share of the LLM requests failed (default "
        "evaluate.max_failure_fraction, 0.5); the results are written either way",
    )


def _no_report(p: argparse.ArgumentParser) -> None:
    config_flag(
        p,
        "--no-report",
        key="evaluate.report",
        action="store_false",
        help="print only; write no report files (sets evaluate.report false)",
    )


def _grouping_flags(p: argparse.ArgumentParser) -> None:
    config_flag(
        p,
        "--grouping",
        key="evaluate.grouping",
        choices=GROUPINGS,
        help="synonym merging: groups (precomputed), wheel (emotion wheels, offline), llm (cached "
        "LLM calls), exact (string identity); auto = groups if given, else wheel if given, "
        "else exact",
    )
    config_flag(
        p,
        "--groups",
        key="evaluate.groups",
        metavar="FILE",
        help="precomputed groups: the organisers' "
        "openset-synonym.zip, a folder of .npy, a {name: groups} .json or a name,groups table",
    )
    config_flag(
        p,
        "--wheel-dir",
        key="evaluate.wheel_dir",
        metavar="DIR",
        help="emotion-wheel folder (wheel_mapping.json or wheel1-5.xlsx + format.csv + synonym.xlsx)",
    )
    config_flag(
        p,
        "--list-parser",
        key="evaluate.list_parser",
        choices=LIST_PARSERS,
        help="label-list parsing: auto (default: mertools with --groups, else literal), literal (safe "
        "Python literal) or mertools (the organisers' quote-splitting parser, with which their "
        "openset-synonym.zip was built)",
    )
    _no_report(p)


def _task_flags(p: argparse.ArgumentParser, column: str) -> None:
    config_flag(
        p,
        "--gt-column",
        key="evaluate.gt_column",
        help=f"ground-truth column with one value per sample (default: {column})",
    )
    config_flag(
        p,
        "--wheel-dir",
        key="evaluate.wheel_dir",
        metavar="DIR",
        help="emotion-wheel folder (wheel_mapping.json or wheel1-5.xlsx + format.csv + synonym.xlsx)",
    )
    _no_report(p)


def _register_tasks(evsub: argparse._SubParsersAction, parents: Parents) -> None:
    p = evsub.add_parser(
        "hit",
        parents=parents.config,
        help="MER-UniBench discrete task: hit rate of one-label ground truth on the emotion wheels",
        description="Hit rate: the label's level-1 wheel cluster among the predicted labels' clusters, "
        "averaged over the five wheels (ground truth: name,emotion).",
    )
    _shared(p)
    _task_flags(p, "emotion")
    p.set_defaults(func=cmd_hit)

    p = evsub.add_parser(
        "sentiment",
        parents=parents.config,
        help="MER-UniBench sentiment task: WAF and accuracy on the non-neutral samples",
        description="OV labels -> positive/negative/neutral (LLM or offline lexicon), scored positive vs "
        "not positive on the samples whose ground truth (name,sentiment) is not neutral.",
    )
    _shared(p)
    _task_flags(p, "sentiment")
    config_flag(
        p,
        "--mapping",
        key="evaluate.sentiment_mapping",
        choices=SENTIMENT_MAPPINGS,
        help="labels -> polarity: llm (the ov_sentiment prompt via evaluate.llm; default) or lexicon "
        "(offline, the wheels' level-1 clusters; ours, not the paper's; needs --wheel-dir)",
    )
    config_flag(
        p,
        "--valence-threshold",
        key="evaluate.valence_threshold",
        type=float,
        metavar="T",
        help="numeric ground truth: positive above T, negative below -T, neutral between (default 0)",
    )
    p.set_defaults(func=cmd_sentiment)


def register(sub: argparse._SubParsersAction, parents: Parents) -> None:
    ev = sub.add_parser(
        "evaluate",
        parents=parents.plain,
        help="score predictions: set-level OV metrics, text metrics, runs, reports",
        description=__doc__,
    )
    evsub = ev.add_subparsers(dest="evaluate_command", metavar="WHAT")
    ev.set_defaults(func=lambda a: ev.print_help() or 2)

    p = evsub.add_parser(
        "ov",
        parents=parents.config,
        help="Accuracy_s / Recall_s / Avg of OV label predictions",
        description="Set-level accuracy, recall and their average (MER2024 definition).",
    )
    _shared(p)
    _grouping_flags(p)
    p.set_defaults(func=cmd_ov)

    p = evsub.add_parser(
        "text",
        parents=parents.config,
        help="BLEU-1, BLEU-4, METEOR, ROUGE-L of descriptions",
        description="Word-matching metrics between predicted and reference descriptions.",
    )
    _shared(p)
    config_flag(
        p,
        "--language",
        key="evaluate.language",
        choices=LANGUAGES,
        help="tokenisation of the text (default en)",
    )
    p.add_argument("--no-meteor", action="store_true", help="skip METEOR (it starts a Java VM)")
    _no_report(p)
    p.set_defaults(func=cmd_text)

    p = evsub.add_parser(
        "extract",
        parents=parents.config,
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
        parents=parents.config,
        help="mean ± std over runs, one table over models, metric correlation heatmap",
        description="Evaluate several prediction files per model.",
    )
    _shared(p, pred=False)
    _grouping_flags(p)
    config_flag(p, "--language", key="evaluate.language", choices=LANGUAGES, help="text metrics tokenisation")
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
        parents=parents.config,
        help="everything one prediction file allows, one report",
        description="OV metrics (labels or extracted) and text metrics into report.md/json.",
    )
    _shared(p)
    _grouping_flags(p)
    config_flag(p, "--language", key="evaluate.language", choices=LANGUAGES, help="text metrics tokenisation")
    p.add_argument("--no-text", action="store_true", help="skip the text metrics (and the Java VM)")
    p.set_defaults(func=cmd_report)

    _register_tasks(evsub, parents)
