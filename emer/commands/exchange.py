"""``emer export fine|label-studio`` and ``emer import label-studio``: EMER-Fine out of the review log,
and the round trip through Label Studio (plain task JSON, no SDK)."""

from __future__ import annotations

import argparse
import sys

from emer.commands.flags import Parents
from pipelines.fine.export import export_fine
from pipelines.fine.labelstudio import export_tasks, import_tasks
from pipelines.fine.view import check_described

DATA_HELP = "the `emer annotate` output folder (or s3:// prefix) whose samples/ was reviewed"


def register(sub: argparse._SubParsersAction, parents: Parents) -> None:
    ex = sub.add_parser(
        "export",
        parents=parents.plain,
        help="write EMER-Fine, or Label Studio tasks, from an EMER-Coarse dataset and its review log",
        description="Export the reviewed dataset: `fine` (the EMER-Fine CSV stage 2 trains on) or "
        "`label-studio` (tasks and a labeling config for review in Label Studio).",
    )
    exsub = ex.add_subparsers(dest="export_command", metavar="FORMAT", required=True)
    fine = exsub.add_parser(
        "fine",
        parents=parents.plain,
        help="EMER-Fine: the rows whose newest review decision is accept or edit",
        description="Write FILE.csv with name, english, chinese, openset (the MER layout `emer train "
        "--stage 2 --train.fine_uri=FILE.csv --train.fine_media_uri=DATA/samples` reads) and FILE.parquet "
        "beside it with every column (media, quality and review columns). Kept: every row whose newest "
        "decision over all reviewers (DATA/review/*.jsonl) is accept or edit, with the edited fields; "
        "rejected and unreviewed rows are left out. 'chinese' is empty where the English was edited. "
        "A cell a spreadsheet would run (starting with = + - @, a tab or a CR) gets a leading ' "
        "(stage 2 reads the text back). A review-log line that is not a complete decision is named "
        "(file and line) and skipped; the good ones are exported and the exit code is 1.",
    )
    fine.add_argument("--data", required=True, metavar="DIR", help=DATA_HELP)
    fine.add_argument("--output", required=True, metavar="FILE.csv", help="the EMER-Fine CSV to write")
    fine.add_argument(
        "--include-unreviewed-passing",
        action="store_true",
        help="also keep the unreviewed rows that pass `emer filter` (default: reviewed rows only)",
    )
    fine.set_defaults(func=_export_fine)

    ls = exsub.add_parser(
        "label-studio",
        parents=parents.plain,
        help="Label Studio tasks (JSON) and a labeling config (XML) for reviewing the rows",
        description="Write Label Studio tasks, one per row (those passing `emer filter`, or every row "
        "where it has not run), showing the current description and labels pre-filled as predictions, "
        "and FILE.label_config.xml beside them (Video, the clues, TextAreas for the description and the "
        "labels, accept/reject Choices). Import the tasks into a project with that labeling config; "
        "bring the annotations back with `emer import label-studio`.",
    )
    ls.add_argument("--data", required=True, metavar="DIR", help=DATA_HELP)
    ls.add_argument("--output", required=True, metavar="FILE.json", help="the task JSON to write")
    ls.add_argument(
        "--video-url",
        default="",
        metavar="TEMPLATE",
        help="the video each task shows, with {clip} (the clip URI), {file} (its file name) and {name}, "
        "e.g. http://127.0.0.1:8081/{file} (default: the clip URI as it is)",
    )
    ls.add_argument(
        "--all-rows", action="store_true", help="also the rows `emer filter` flagged (their flags are shown)"
    )
    ls.set_defaults(func=_export_label_studio)

    im = sub.add_parser(
        "import",
        parents=parents.plain,
        help="bring review decisions back from an annotation tool",
        description="Import review decisions: `label-studio` reads a Label Studio JSON export.",
    )
    imsub = im.add_subparsers(dest="import_command", metavar="FORMAT", required=True)
    li = imsub.add_parser(
        "label-studio",
        parents=parents.plain,
        help="append a Label Studio JSON export's decisions to DATA/review/NAME.jsonl",
        description="Read a Label Studio export (Export -> JSON) of tasks written by `emer export "
        "label-studio` and append one decision per annotated task (its newest annotation not cancelled: "
        "reject, accept, or edit when a text area was changed) to DATA/review/NAME.jsonl, through the "
        "review log's conflict check. A task that cannot be used (unknown name, no choice, a row changed "
        "since the export, wrong types, text over the review limits, nested too deep) is reported "
        "and skipped; the other tasks' decisions are kept (exit 1 then). Files over 256 MiB are refused. "
        "Importing the same export again adds nothing.",
    )
    li.add_argument("--data", required=True, metavar="DIR", help=DATA_HELP)
    li.add_argument("--input", required=True, metavar="FILE.json", help="the Label Studio JSON export")
    li.add_argument("--reviewer", required=True, metavar="NAME", help="whose log the decisions go to")
    li.set_defaults(func=_import_label_studio)


def _export_fine(args: argparse.Namespace) -> int:
    check_described(args.data)
    c = export_fine(args.data, args.output, args.include_unreviewed_passing)
    extra = (
        f", {c['unreviewed_included']} of them passing the filter included"
        if c["unreviewed_included"]
        else ""
    )
    for line in c["problems"]:
        print(f"emer export: {args.data.rstrip('/')}/{line}", file=sys.stderr)
    bad = f"; {len(c['problems'])} bad review-log line(s) skipped (listed above)" if c["problems"] else ""
    print(
        f"export fine: {c['written']} rows -> {c['csv']} (+ {c['parquet']}); accepted {c['accepted']}, "
        f"edited {c['edited']}, rejected {c['rejected']}, unreviewed {c['unreviewed']}{extra}{bad}",
        flush=True,
    )
    return 1 if c["problems"] else 0


def _export_label_studio(args: argparse.Namespace) -> int:
    check_described(args.data)
    c = export_tasks(args.data, args.output, args.video_url, args.all_rows)
    print(f"export label-studio: {c['tasks']} tasks -> {c['output']}; labeling config {c['label_config']}")
    return 0


def _import_label_studio(args: argparse.Namespace) -> int:
    check_described(args.data)
    counts, problems = import_tasks(args.data, args.input, args.reviewer)
    for line in problems:
        print(f"emer import: {line}", file=sys.stderr)
    print(
        f"import label-studio: accepted {counts['accept']}, edited {counts['edit']}, rejected "
        f"{counts['reject']} -> {args.data.rstrip('/')}/review/{args.reviewer}.jsonl; "
        f"{counts['not_annotated']} not annotated, {counts['already_imported']} already imported, "
        f"{counts['skipped']} skipped",
        flush=True,
    )
    return 1 if problems else 0
