"""``emer filter``: the EMER-Fine quality rules over EMER-Coarse (a Ray Data job), recorded as columns."""

from __future__ import annotations

import argparse
import logging

from core.runtime import init_ray
from emer.commands import flags
from emer.commands.flags import Parents, config_flag
from pipelines.fine.config import RULES
from pipelines.fine.quality import run_filter
from pipelines.fine.view import check_described

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction, parents: Parents) -> None:
    p = sub.add_parser(
        "filter",
        parents=parents.ray,
        help="quality rules over EMER-Coarse: flags and reasons per row in DATA/quality/",
        description="Apply the quality rules of MER-Caption to every EMER-Coarse row of --data: "
        f"low-level ({', '.join(RULES[:-1])}) and the high-level agreement of the description's OV "
        "labels with an independent label set (low_agreement, with --reference or a discrete 'emotion' "
        "column; with neither, the measured signals of a backend-signal annotation: the face "
        "expression classifier's top label and the voice's arousal, filter.signal_reference). "
        "Writes DATA/quality/part-*.parquet (name, quality_pass, quality_flags, "
        "quality_reasons, quality_* numbers) and DATA/quality/summary.json, and adds a section to "
        "the dataset card; DATA/samples/ is never changed. A rerun recomputes every row and replaces "
        "the quality folder. Thresholds live in the 'filter' section of the run config (e.g. "
        "--filter.min_words=5, --filter.skip_rules=[language_zh]).",
    )
    p.add_argument(
        "--data", required=True, metavar="DIR", help="an `emer annotate` output folder or s3:// prefix"
    )
    config_flag(
        p,
        "--reference",
        key="filter.reference_uri",
        metavar="FILE",
        help="independent labels: CSV/Parquet with name and openset (a list literal, as in the MER "
        "files or `emer samples`' reference-openset.csv) or emotion (sets filter.reference_uri; "
        "none: the data's emotion column, else its face_expressions / audio_features)",
    )
    config_flag(
        p,
        "--wheel-dir",
        key="filter.wheel_dir",
        metavar="DIR",
        help="emotion-wheel folder (wheel_mapping.json): turns on off_wheel and wheel grouping of the "
        "agreement (sets filter.wheel_dir; none: exact labels)",
    )
    p.set_defaults(func=_filter)


def _filter(args: argparse.Namespace) -> int:
    run = flags.load(args)
    check_described(args.data)  # a wrong --data fails before Ray starts
    init_ray(run.ray, quiet=True)
    s = run_filter(run.filter, args.data)
    flagged = ", ".join(f"{rule} {n}" for rule, n in s["by_flag"].items() if n) or "none"
    print(
        f"filter: {s['rows']} rows -> {s['passed']} pass, {s['rows'] - s['passed']} flagged ({flagged}); "
        f"columns in {args.data.rstrip('/')}/quality/, card {args.data.rstrip('/')}/README.md",
        flush=True,
    )
    return 0
