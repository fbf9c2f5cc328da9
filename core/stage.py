"""The ``Stage`` base class (the unit of work of every Ray Data job in emer) and ``StageChain``.

A stage is a small class: the columns it needs and produces, its config (the ``AnnotateConfig``),
heavy state made once per actor in ``setup()``, and ``__call__(batch) -> batch`` over Arrow tables.
Rows carry ``outcome`` ("ok", "rejected" by a check, "failed" by an error) with the ``stage`` and
``reason``; a stage only works on rows still "ok", and an exception in one row (or, for batched
stages, in the batch) becomes that row's failure, never a crashed job.

``StageChain`` runs several stages inside one Ray actor (Ray Data fuses task maps but never an
actor map into the next map), so decode + check (+ write) cost one hop, and the three text stages
share one loaded text model. ``map_stages`` is the one runner: it puts a chain on an actor pool with
its declared resources. Annotation, the feature cache (``emer features``) and batch inference
(``emer infer``) all run through it. A stage with ``batch_format = "numpy"`` takes and returns
dicts of numpy columns (tensor columns such as embeddings stay tensors).
"""

from __future__ import annotations

import logging
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np

from core import metrics
from core.schema import FAILED, OK, REJECTED, rows_to_table

__all__ = [
    "FAILED",
    "OK",
    "REJECTED",
    "Stage",
    "StageChain",
    "fail",
    "map_stages",
    "numpy_rows",
    "rows_to_numpy",
    "rows_to_table",
]

log = logging.getLogger(__name__)


def fail(row: dict[str, Any], stage: str, reason: str, outcome: str = FAILED, code: str = "") -> None:
    """Mark ``row`` rejected/failed at ``stage``; ``code``: short metric tag (default ``<stage>_error``).

    Counted in ``emer_clips_rejected`` (every row that leaves as not ok) and, for failures, in
    ``emer_rows_failed``."""
    row.update(outcome=outcome, stage=stage, reason=" ".join(str(reason).split())[:1000])
    tags = {"stage": stage, "reason": code or f"{stage}_error"}
    metrics.counter("emer_clips_rejected").inc(1, tags)
    if outcome == FAILED:
        metrics.counter("emer_rows_failed").inc(1, tags)


class Stage:
    """Base of every pipeline stage. Subclasses set ``name``/``needs``/``produces`` and a process method."""

    name: ClassVar[str] = "stage"
    needs: ClassVar[tuple[str, ...]] = ("name",)
    produces: ClassVar[tuple[str, ...]] = ()
    role: ClassVar[str] = ""  # LLM role whose resources the stage uses ("" = CPU stage)
    batch_format: ClassVar[str] = "pyarrow"  # or "numpy": dicts of numpy columns in and out

    def __init__(self, cfg: Any, *, shared: list | None = None, **kwargs: Any) -> None:
        self.cfg = cfg
        self.options = kwargs
        self._shared = shared if shared is not None else []
        self.setup()

    def shared_state(self, kind: str, key: Any, make: Callable[[], Any]) -> Any:
        """State (e.g. a loaded model) shared by the stages of one chain: made once per equal ``key``."""
        for k, value_key, value in self._shared:
            if k == kind and value_key == key:
                return value
        value = make()
        self._shared.append((kind, key, value))
        return value

    def setup(self) -> None:
        """Load heavy state (models, clients); runs once per actor."""

    def __call__(self, batch: Any) -> Any:
        if self.batch_format == "numpy":
            rows = numpy_rows(batch)
            self.run_rows(rows)
            return rows_to_numpy(rows, self.output_columns(rows))
        rows = batch.to_pylist()
        self.run_rows(rows)
        return rows_to_table(rows, self.produces)

    def output_columns(self, rows: list[dict[str, Any]]) -> list[str]:
        """The columns a numpy-format stage returns: every column of its rows (default)."""
        return list(dict.fromkeys(k for r in rows for k in r))

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
        shared: list = []  # state the stages share (one text model for the three text stages)
        self.stages = [cls(cfg, shared=shared, **kwargs) for cls, kwargs in stages]

    def __call__(self, batch: Any) -> Any:
        if self.stages and self.stages[0].batch_format == "numpy":
            rows = numpy_rows(batch)
            for stage in self.stages:
                stage.run_rows(rows)
            return rows_to_numpy(rows, self.stages[-1].output_columns(rows))
        rows = batch.to_pylist()
        columns: list[str] = []
        for stage in self.stages:
            finish = getattr(stage, "finish", None)
            if finish is not None:  # a sink: writes the rows and returns what goes on (small rows)
                return finish(rows)
            stage.run_rows(rows)
            columns += stage.produces
        return rows_to_table(rows, columns)


# ---------------------------------------------------------------- numpy batches


def _plain(value: Any) -> Any:
    """Ray Data hands list columns over as numpy object arrays: make them Python lists again."""
    if isinstance(value, np.ndarray) and value.dtype == object:
        return [_plain(v) for v in value]
    return value


def numpy_rows(batch: dict[str, Any]) -> list[dict[str, Any]]:
    """A Ray Data numpy batch (dict of columns) -> a list of row dicts."""
    columns = list(batch)
    n = len(batch[columns[0]]) if columns else 0
    return [{c: _plain(batch[c][i]) for c in columns} for i in range(n)]


def rows_to_numpy(rows: list[dict[str, Any]], columns: Sequence[str]) -> dict[str, np.ndarray]:
    """Rows -> dict of numpy columns: equally shaped arrays stack into a tensor column, the rest
    (strings, lists, None) become object columns."""
    out: dict[str, np.ndarray] = {}
    for c in columns:
        values = [r.get(c) for r in rows]
        arrays = [v for v in values if isinstance(v, np.ndarray) and v.dtype != object]
        if values and len(arrays) == len(values) and len({a.shape for a in arrays}) == 1:
            out[c] = np.stack(arrays)
        else:
            col = np.empty(len(values), dtype=object)
            for i, v in enumerate(values):
                col[i] = v.tolist() if isinstance(v, np.ndarray) else v
            out[c] = col
    return out


# ---------------------------------------------------------------- the runner


def map_stages(
    ds: Any,
    chain: Sequence[tuple[type[Stage], dict[str, Any]]],
    cfg: Any,
    *,
    pool: tuple[int, int | None],
    batch_size: int | None,
    remote: dict[str, Any] | None = None,
    runtime_env: dict | None = None,
    in_flight: int = 2,
) -> Any:
    """``ds`` mapped by ``chain`` (stage classes with their kwargs) on an actor pool of
    ``pool`` = (min, max) actors (max ``None``: unbounded), each asking ``remote``
    (``placement.remote_args``). min < max is an autoscaling pool: Ray Data adds an actor while
    the actors' utilization (tasks in flight / actors) is >= 1.75 and releases idle ones, so
    ``in_flight`` must be 2 for it to grow."""
    from ray.data import ActorPoolStrategy  # heavy: ray, imported on use

    lo, hi = pool
    sizes = {"size": lo} if lo == hi else {"min_size": lo, "max_size": hi}
    formats = {cls.batch_format for cls, _ in chain}
    if len(formats) != 1:
        raise ValueError(f"stages {[c.name for c, _ in chain]} mix batch formats {sorted(formats)}")
    with warnings.catch_warnings():
        # Ray 2.60 has no named parameter for actor restarts / task retries: they go as remote args.
        warnings.filterwarnings("ignore", message=".*ray_remote_args. is deprecated")
        return ds.map_batches(
            StageChain,
            fn_constructor_kwargs={"stages": list(chain), "cfg": cfg},
            batch_format=formats.pop(),
            batch_size=batch_size,
            runtime_env=runtime_env,
            compute=ActorPoolStrategy(**sizes, max_tasks_in_flight_per_actor=in_flight),
            **(remote or {}),
        )
