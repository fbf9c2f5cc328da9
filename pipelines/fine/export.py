"""``emer export fine``: the reviewed rows of EMER-Coarse as EMER-Fine (the CSV stage 2 trains on).

A row is kept when its newest review decision (``pipelines.fine.reviewlog``, over every reviewer)
is accept or edit, with the fields that decision left (an edit wins over EMER-Coarse); rejected and
unreviewed rows are left out, unless ``include_unreviewed_passing`` adds the unreviewed rows that
pass ``emer filter``. Written: ``FILE.csv`` with exactly ``name, english, chinese, openset`` (the
MER layout ``affect_model.train.data.read_fine_csv`` reads; ``openset`` a list literal such as
``['happy', 'excited']``; ``chinese`` is EMER-Coarse's translation, empty where the English was
edited, since it no longer translates it) and ``FILE.parquet`` beside it with every column:
EMER-Coarse's (media included, so it is also a media table for ``train.fine_media_uri``), the
current fields, the quality columns and ``review_*`` columns.

Every CSV cell goes through ``core.schema.spreadsheet_safe``: a description an annotator or an LLM
started with ``=``, ``+``, ``-``, ``@``, a tab or a CR gets a leading ``'`` so a spreadsheet shows it
instead of running it (stage 2's ``read_fine_csv`` takes the text back; the Parquet holds it as is).

A review-log line that is not a complete decision (``reviewlog.parse_line``) is skipped, the good
ones are exported, and each bad line is returned in ``problems`` (file, line, why): ``emer export
fine`` prints them and exits 1, so a decision lost in a damaged line is never exported silently.
"""

from __future__ import annotations

import logging
from typing import Any

import pyarrow as pa

from core import storage
from core.schema import (
    DESCRIPTION_EN,
    DESCRIPTION_ZH,
    FINE_CHINESE,
    FINE_ENGLISH,
    FINE_NAME,
    FINE_OPENSET,
    NAME,
    OV_LABELS,
    QUALITY_PASS,
    rows_to_table,
    spreadsheet_safe,
)
from pipelines.fine.reviewlog import Decision, current, newest, read_logs
from pipelines.fine.view import join_quality, quality_summary, read_quality, read_samples, text_columns

log = logging.getLogger(__name__)

FINE_COLUMNS = (FINE_NAME, FINE_ENGLISH, FINE_CHINESE, FINE_OPENSET)
COUNT_OF = {"accept": "accepted", "edit": "edited", "reject": "rejected"}


def parquet_beside(csv_uri: str) -> str:
    if not csv_uri.lower().endswith(".csv"):
        raise ValueError(
            f"--output {csv_uri}: must end in .csv (the Parquet with all columns goes beside it)"
        )
    return csv_uri[: -len(".csv")] + ".parquet"


def plan_rows(data: str, include_unreviewed_passing: bool = False) -> tuple[list[dict], dict[str, Any]]:
    """The rows to export (text columns, current fields, review columns) and the counts."""
    rows = {r[NAME]: r for r in read_samples(data, text_columns(data)).to_pylist()}
    logs, problems = read_logs(data)
    decisions = newest(logs)
    passing: set[str] = set()
    if include_unreviewed_passing:
        q = read_quality(data).to_pylist()
        passing = {r[NAME] for r in q if r.get(QUALITY_PASS)}
    counts = dict.fromkeys(("accepted", "edited", "rejected", "unreviewed", "unreviewed_included"), 0)
    out = []
    for name in sorted(rows):
        d = decisions.get(name)
        counts[COUNT_OF[d.action] if d else "unreviewed"] += 1
        keep = d.action != "reject" if d else name in passing
        counts["unreviewed_included"] += int(d is None and keep)
        if keep:
            out.append(_exported(rows[name], d))
    unknown = sorted(set(decisions) - set(rows))
    counts.update(unknown_decisions=len(unknown), log_problems=len(problems), written=len(out))
    counts["problems"] = problems
    if unknown:
        log.warning(
            "export fine: decisions on %d name(s) not in %s/samples, e.g. %s", len(unknown), data, unknown[:5]
        )
    return out, counts


def _exported(row: dict[str, Any], d: Decision | None) -> dict[str, Any]:
    fields = current(row, d)
    same_en = fields[DESCRIPTION_EN] == (row.get(DESCRIPTION_EN) or "")
    return {
        **row,
        "coarse_description_en": row.get(DESCRIPTION_EN),
        "coarse_ov_labels": row.get(OV_LABELS),
        DESCRIPTION_EN: fields[DESCRIPTION_EN],
        DESCRIPTION_ZH: (row.get(DESCRIPTION_ZH) or "") if same_en else "",
        OV_LABELS: fields[OV_LABELS],
        "review_action": d.action if d else "unreviewed",
        "reviewer": d.reviewer if d else "",
        "review_ts": d.ts if d else "",
        "review_reason": d.reason if d else "",
    }


def fine_table(rows: list[dict[str, Any]]) -> pa.Table:
    """The EMER-Fine CSV's table: name, english, chinese, openset (a list literal), all strings, each
    cell ``spreadsheet_safe``."""
    columns = {
        FINE_NAME: [r[NAME] for r in rows],
        FINE_ENGLISH: [r[DESCRIPTION_EN] for r in rows],
        FINE_CHINESE: [r[DESCRIPTION_ZH] for r in rows],
        FINE_OPENSET: [repr([str(x) for x in r[OV_LABELS]]) for r in rows],
    }
    safe = {k: [spreadsheet_safe(str(x)) for x in v] for k, v in columns.items()}
    return pa.table({k: pa.array(v, pa.string()) for k, v in safe.items()})


def full_table(data: str, rows: list[dict[str, Any]]) -> pa.Table:
    """Every EMER-Coarse column of the exported rows (media too), the current fields and the review
    and quality columns."""
    names = [r[NAME] for r in rows]
    media = {r[NAME]: r for r in read_samples(data, names=names).to_pylist()}
    merged = [{**media[r[NAME]], **r} for r in rows]
    table = rows_to_table(merged) if merged else pa.table({NAME: pa.array([], pa.string())})
    if quality_summary(data) is not None and merged:
        table = join_quality(table, read_quality(data))
    return table


def export_fine(data: str, output: str, include_unreviewed_passing: bool = False) -> dict[str, Any]:
    """Write ``output`` (CSV) and the Parquet beside it; returns the counts and ``problems`` (one line
    per review-log line skipped)."""
    parquet = parquet_beside(output)
    rows, counts = plan_rows(data, include_unreviewed_passing)
    empty = [r[NAME] for r in rows if not r[DESCRIPTION_EN].strip()]
    if empty:
        raise ValueError(f"{data}: reviewed rows {empty[:5]} have an empty description; edit or reject them")
    storage.write_table(fine_table(rows), output)
    storage.write_table(full_table(data, rows), parquet)
    return {**counts, "csv": output, "parquet": parquet}
