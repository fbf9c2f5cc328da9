"""``emer filter``: the quality rules over EMER-Coarse as a Ray Data job, recorded as columns.

``run_filter(cfg, data)`` reads the text columns of ``DATA/samples/`` (never the media), runs
``QualityStage`` (``pipelines.fine.rules`` on each row; a row that raises is recorded with the rule
``error``, never a crashed job) and ``QualitySink`` in one actor pool, which writes
``DATA/quality/part-<id>.parquet`` (``<id>``: a hash of the batch's names, as the annotation sink
does). A rerun recomputes every row and replaces the folder's content: its shards are written,
then ``summary.json`` naming them, then the shards of earlier runs are removed, so a reader that
follows the summary never sees a half-written folder. ``samples/`` is never written; the dataset
card gets a "Quality filters" section.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import Counter
from typing import Any

import pyarrow as pa

from core import storage
from core.config import to_plain
from core.schema import (
    CLUE_COLUMNS,
    NAME,
    QUALITY_COLUMNS,
    QUALITY_FLAGS,
    QUALITY_PASS,
    QUALITY_REASONS,
    SIGNAL_COLUMNS,
    TYPES,
    rows_to_table,
)
from core.stage import OK, Stage, map_stages
from core.wheel import Wheel, load_wheel
from pipelines import card
from pipelines.fine.config import ERROR_RULE, RULES, FilterConfig
from pipelines.fine.rules import as_labels, check_row
from pipelines.fine.signal_ref import SignalReference
from pipelines.fine.view import LLM_NEEDED, QUALITY, SUMMARY, check_described, sample_files
from pipelines.sink import shard_id

log = logging.getLogger(__name__)

SCHEMA = pa.schema([pa.field(c, TYPES[c]) for c in QUALITY_COLUMNS])


def load_reference(uri: str, column: str = "") -> tuple[dict[str, list[str]], str]:
    """``{name: labels}`` of a reference table (CSV/Parquet with ``name`` and ``column``, default
    ``openset``, else ``emotion``) and the column used; a clear error for a bad file."""
    if not storage.exists(uri):
        raise FileNotFoundError(f"{uri}: no such reference file; fix --reference (filter.reference_uri)")
    table = storage.read_table(uri)
    col = column or next((c for c in ("openset", "emotion") if c in table.column_names), "")
    if NAME not in table.column_names or col not in table.column_names:
        raise ValueError(
            f"{uri}: a reference needs columns name and {column or 'openset (or emotion)'} "
            f"(has {', '.join(table.column_names)}); set filter.reference_column to its label column"
        )
    names, values = table[NAME].to_pylist(), table[col].to_pylist()
    return {str(n): as_labels(v) for n, v in zip(names, values)}, col


def load_wheel_for(cfg: FilterConfig) -> Wheel | None:
    return load_wheel(cfg.wheel_dir, "--wheel-dir (filter.wheel_dir)") if cfg.wheel_dir else None


class QualityStage(Stage):
    """The quality rules on each row: ``quality_pass``, ``quality_flags``, ``quality_reasons``, numbers."""

    name = "quality"
    needs = (NAME, *LLM_NEEDED)
    produces = QUALITY_COLUMNS

    def setup(self) -> None:
        self.wheel = load_wheel_for(self.cfg)
        self.reference = (
            load_reference(self.cfg.reference_uri, self.cfg.reference_column)[0]
            if self.cfg.reference_uri
            else None
        )
        self.data_column = self.options.get("data_column", "")
        self.signal = self.options.get("signal", False)

    def process_row(self, row: dict[str, Any]) -> None:
        if self.reference is not None:
            ref = self.reference.get(row[NAME])
        elif self.signal:
            ref = SignalReference.of(row)
        else:
            ref = row.get(self.data_column) if self.data_column else None
        v = check_row(row, self.cfg, self.wheel, ref)
        row.update(quality_pass=not v.flags, quality_flags=v.flags, quality_reasons=v.reasons, **v.numbers)


class QualitySink(Stage):
    """Writes a batch's quality columns to ``DATA/quality/part-<id>.parquet``; returns small rows."""

    name = "quality_write"

    def finish(self, rows: list[dict[str, Any]]) -> pa.Table:
        out = [_recorded(r) for r in rows]
        sid = shard_id(r[NAME] for r in out)
        table = rows_to_table(out, QUALITY_COLUMNS).select(list(QUALITY_COLUMNS)).cast(SCHEMA)
        storage.write_table(table, storage.join(self.options["output"], QUALITY, f"part-{sid}.parquet"))
        small = [
            {NAME: r[NAME], QUALITY_FLAGS: r[QUALITY_FLAGS], "shard": f"part-{sid}.parquet"} for r in out
        ]
        return rows_to_table(small, (NAME, QUALITY_FLAGS, "shard"))


def _recorded(row: dict[str, Any]) -> dict[str, Any]:
    """The quality columns of a row; a row the stage failed on is recorded with the rule ``error``."""
    if row.get("outcome", OK) == OK:
        return {c: row.get(c) for c in QUALITY_COLUMNS}
    why = f"{ERROR_RULE}: {row.get('stage', '')}: {row.get('reason', '')}"
    return {
        NAME: row[NAME],
        QUALITY_PASS: False,
        QUALITY_FLAGS: [ERROR_RULE],
        QUALITY_REASONS: [why],
    }


def plan_inputs(cfg: FilterConfig, data: str) -> tuple[list[str], str, dict[str, Any]]:
    """Check ``data`` and the rule inputs on the driver (clear errors before any worker starts):
    the columns to read, the data's reference column (or ''), what the summary says about them."""
    columns = check_described(data)
    wheel = load_wheel_for(cfg)
    data_column, ref = "", {"source": None, "column": None, "names": 0}
    if cfg.reference_uri:
        labels, col = load_reference(cfg.reference_uri, cfg.reference_column)
        ref = {"source": cfg.reference_uri, "column": col, "names": len(labels)}
    elif cfg.reference_column or "emotion" in columns:
        data_column = cfg.reference_column or "emotion"
        if data_column not in columns:
            raise ValueError(
                f"filter.reference_column = {data_column!r}: {data}/samples has no such column "
                f"(has {', '.join(columns)}); give --reference FILE or another column"
            )
        ref = {"source": "samples", "column": data_column, "names": None}
    signal = [c for c in SIGNAL_COLUMNS if c in columns] if cfg.signal_reference and not ref["source"] else []
    if signal:
        ref = {"source": "signal", "column": ", ".join(signal), "names": None}
    clues = [c for c in CLUE_COLUMNS if c in columns and c not in LLM_NEEDED]  # av_clue: an omni run's
    read = [NAME, *LLM_NEEDED, *clues, *([data_column] if data_column else []), *signal]
    return read, data_column, {"wheel": wheel.source if wheel else None, "reference": ref}


def run_filter(cfg: FilterConfig, data: str) -> dict[str, Any]:
    """Run the quality rules over ``data``'s EMER-Coarse; returns the summary (also written)."""
    import ray.data  # heavy: ray, imported on use

    read, data_column, inputs = plan_inputs(cfg, data)
    signal = inputs["reference"]["source"] == "signal"
    files = sample_files(data)
    fs, _ = storage.filesystem(files[0])
    paths = [storage.filesystem(f)[1] for f in files]
    ds = ray.data.read_parquet(paths, filesystem=fs).select_columns(read)  # never the media
    chain = [(QualityStage, {"data_column": data_column, "signal": signal}), (QualitySink, {"output": data})]
    ds = map_stages(
        ds,
        chain,
        cfg,
        pool=cfg.pool.bounds(),
        batch_size=cfg.batch_size,
        remote=cfg.pool.remote_args(),
    )
    rows = [
        r for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow") for r in batch.to_pylist()
    ]
    summary = summarize(cfg, rows, inputs)
    storage.write_text(
        storage.join(data, QUALITY, SUMMARY), json.dumps(summary, indent=2, ensure_ascii=False)
    )
    _remove_stale(data, set(summary["shards"]))
    card.update_quality_section(data, summary)
    return summary


def summarize(cfg: FilterConfig, rows: list[dict[str, Any]], inputs: dict[str, Any]) -> dict[str, Any]:
    """``{"rows", "passed", "by_flag": {rule: count}}`` plus the settings and the shards written."""
    flags = Counter(f for r in rows for f in r[QUALITY_FLAGS])
    rules = [r for r in RULES if cfg.active(r)] + ([ERROR_RULE] if flags[ERROR_RULE] else [])
    return {
        "rows": len(rows),
        "passed": sum(1 for r in rows if not r[QUALITY_FLAGS]),
        "by_flag": {rule: flags[rule] for rule in rules},
        "skipped_rules": list(cfg.skip_rules),
        **inputs,
        "config": to_plain(cfg),
        "written": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "shards": sorted({r["shard"] for r in rows}),
    }


def _remove_stale(data: str, keep: set[str]) -> None:
    folder = storage.join(data, QUALITY)
    for uri in storage.list_files(folder, suffixes=[".parquet"], recursive=False):
        if uri.rsplit("/", 1)[-1] not in keep:
            log.info("filter: removing %s (an earlier run's shard)", uri)
            storage.delete(uri)
