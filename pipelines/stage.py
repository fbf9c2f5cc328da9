"""The ``Stage`` base class, the row schema the stages share, and ``StageChain``.

A stage is a small class: the columns it needs and produces, its config (the ``AnnotateConfig``),
heavy state made once per actor in ``setup()``, and ``__call__(batch) -> batch`` over Arrow tables.
Rows carry ``outcome`` ("ok", "rejected" by a check, "failed" by an error) with the ``stage`` and
``reason``; a stage only works on rows still "ok", and an exception in one row (or, for batched
stages, in the batch) becomes that row's failure, never a crashed job.

``StageChain`` runs several stages inside one Ray actor (Ray Data fuses task maps but never an
actor map into the next map), so decode + check (+ write) cost one hop, and the three text stages
share one loaded text model.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Sequence
from typing import Any, ClassVar

import pyarrow as pa

from cluster import metrics

log = logging.getLogger(__name__)

OK, REJECTED, FAILED = "ok", "rejected", "failed"

SCHEMA: dict[str, pa.DataType] = {
    "name": pa.string(), "clip": pa.string(),
    "subtitle": pa.string(), "subtitle_en": pa.string(), "subtitle_zh": pa.string(),
    "subtitle_missing": pa.bool_(),
    "outcome": pa.string(), "stage": pa.string(), "reason": pa.string(),
    "duration_s": pa.float64(), "fps": pa.float64(), "width": pa.int32(), "height": pa.int32(),
    "num_video_frames": pa.int32(), "has_audio": pa.bool_(), "audio_s": pa.float64(),
    "faces": pa.list_(pa.int32()), "frames": pa.list_(pa.binary()), "audio": pa.binary(),
    "audio_clue": pa.string(), "video_clue": pa.string(),
    "description_en": pa.string(), "description_zh": pa.string(), "ov_labels": pa.list_(pa.string()),
    "ov_raw": pa.string(),
}


def rows_to_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] = ()) -> pa.Table:
    """Rows as an Arrow table with the shared column types; ``columns`` come first, present even if null."""
    names: dict[str, None] = dict.fromkeys(columns)
    names.update(dict.fromkeys(c for c in SCHEMA if c not in names and any(c in r for r in rows)))
    for r in rows:
        names.update(dict.fromkeys(k for k in r if k not in names))
    fields = [pa.field(n, SCHEMA.get(n, _infer(rows, n))) for n in names]
    return pa.Table.from_pylist([{n: r.get(n) for n in names} for r in rows], schema=pa.schema(fields))


def _infer(rows: Sequence[dict[str, Any]], name: str) -> pa.DataType:
    values = [r.get(name) for r in rows if r.get(name) is not None]
    return pa.array(values).type if values else pa.null()


def fail(row: dict[str, Any], stage: str, reason: str, outcome: str = FAILED, code: str = "") -> None:
    """Mark ``row`` rejected/failed at ``stage``; ``code``: short metric tag (default ``<stage>_error``)."""
    row.update(outcome=outcome, stage=stage, reason=" ".join(str(reason).split())[:1000])
    metrics.counter("emer_clips_rejected").inc(1, {"stage": stage, "reason": code or f"{stage}_error"})


class Stage:
    """Base of every pipeline stage. Subclasses set ``name``/``needs``/``produces`` and a process method."""

    name: ClassVar[str] = "stage"
    needs: ClassVar[tuple[str, ...]] = ("name",)
    produces: ClassVar[tuple[str, ...]] = ()
    role: ClassVar[str] = ""  # LLM role whose resources the stage uses ("" = CPU stage)

    def __init__(self, cfg: Any, **kwargs: Any) -> None:
        self.cfg = cfg
        self.options = kwargs
        self.setup()

    def setup(self) -> None:
        """Load heavy state (models, clients); runs once per actor."""

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        self.run_rows(rows)
        return rows_to_table(rows, self.produces)

    def run_rows(self, rows: list[dict[str, Any]]) -> None:
        """Fill ``produces`` in the rows still "ok"; an escaping exception fails the whole batch."""
        for r in rows:
            r.setdefault("outcome", OK)
        live = [r for r in rows if r["outcome"] == OK]
        for r in live:
            missing = [c for c in self.needs if c not in r]
            if missing:  # a wrongly composed pipeline: every row says so, the job goes on
                fail(r, self.name, f"stage {self.name} needs columns {missing} that no earlier stage made")
        live = [r for r in live if r["outcome"] == OK]
        metrics.counter("emer_rows_processed").inc(len(rows), {"stage": self.name})
        if not live:
            return
        start = time.perf_counter()
        try:
            self.process(live)
        except Exception as err:  # noqa: BLE001 - a batch-level error fails the batch's rows, not the job
            log.warning("stage %s failed on a batch of %d: %s", self.name, len(live), traceback.format_exc())
            for r in live:
                if r["outcome"] == OK:
                    fail(r, self.name, f"{type(err).__name__}: {err}")
        metrics.histogram("emer_stage_seconds").observe(time.perf_counter() - start, {"stage": self.name})

    def process(self, rows: list[dict[str, Any]]) -> None:
        """Default: ``process_row`` on each row, each error recorded on its own row."""
        for r in rows:
            try:
                self.process_row(r)
            except Exception as err:  # noqa: BLE001 - one bad row becomes one failure row
                fail(r, self.name, f"{type(err).__name__}: {err}")

    def process_row(self, row: dict[str, Any]) -> None:
        raise NotImplementedError


class StageChain:
    """Several stages run one after another in one actor (one Ray operator)."""

    def __init__(self, stages: Sequence[tuple[type[Stage], dict[str, Any]]], cfg: Any) -> None:
        self.stages = [cls(cfg, **kwargs) for cls, kwargs in stages]

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        columns: list[str] = []
        for stage in self.stages:
            finish = getattr(stage, "finish", None)
            if finish is not None:  # a sink: writes the rows and returns what goes on (small rows)
                return finish(rows)
            stage.run_rows(rows)
            columns += stage.produces
        return rows_to_table(rows, columns)
