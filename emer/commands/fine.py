"""``emer filter``: the EMER-Fine quality rules over EMER-Coarse (a Ray Data job), recorded as columns."""

from __future__ import annotations

import argparse
import logging

from core.runtime import init_ray
from emer.runconfig import load_run_config
from pipelines.fine.config import RULES
from pipelines.fine.quality import run_filter
from pipelines.fine.view import check_described

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "filter",
        parents=[common],
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
    p.add_argument(
        "--reference",
        default=None,
        metavar="FILE",
        help="independent labels: CSV/Parquet with name and openset (a list literal, as in the MER "
        "files or `emer samples`' reference-openset.csv) or emotion (default filter.reference_uri; "
        "none: the data's emotion column, else its face_expressions / audio_features)",
    )
    p.add_argument(
        "--wheel-dir",
        default=None,
        metavar="DIR",
        help="emotion-wheel folder (wheel_mapping.json): turns on off_wheel and wheel grouping of the "
        "agreement (default filter.wheel_dir; none: exact labels)",
    )
    p.set_defaults(func=_filter)


def _filter(args: argparse.Namespace) -> int:
    run = load_run_config(args.config, args.overrides)
    cfg = run.filter
    if args.reference is not None:
        cfg = cfg.replace(reference_uri=args.reference)
    if args.wheel_dir is not None:
        cfg = cfg.replace(wheel_dir=args.wheel_dir)
    check_described(args.data)  # a wrong --data fails before Ray starts
    init_ray(run.ray.replace(address=args.address) if args.address else run.ray, quiet=True)
    s = run_filter(cfg, args.data)
    flagged = ", ".join(f"{rule} {n}" for rule, n in s["by_flag"].items() if n) or "none"
    print(
        f"filter: {s['rows']} rows -> {s['passed']} pass, {s['rows'] - s['passed']} flagged ({flagged}); "
        f"columns in {args.data.rstrip('/')}/quality/, card {args.data.rstrip('/')}/README.md",
        flush=True,
    )
    return 0
