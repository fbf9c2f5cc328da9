"""Where annotated rows land, and how a rerun knows what is done.

Layout under OUTPUT (a local folder or ``s3://`` prefix):
``samples/part-<id>.parquet`` (EMER-Coarse rows), ``failures/part-<id>.parquet`` (``name, stage,
reason, outcome, clip``) and ``_markers/part-<id>.json`` (the names of the shard by outcome, written
last). ``<id>`` is a hash of the sorted sample ids of the batch, so names are deterministic and a
shard without its marker is an interrupted write. ``reconcile`` (run before and after every run)
deletes such orphans and, where a name was re-attempted (``--retry-failed``), keeps only its newest
outcome, so every input name is in exactly one of ``samples/`` or ``failures/``. It also removes the
temp files of writes that never finished (all of them before a run, ``STALE_TEMP_S`` old after one):
a folder read whole would read them as shards.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import posixpath
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from core import metrics, storage
from core.schema import (
    BASE_COLUMNS,
    CONFIG_FINGERPRINT,
    FAILED,
    FAILURE_COLUMNS,
    LLM_COLUMNS,
    MEDIA_COLUMNS,
    NAME,
    OK,
    OUTCOMES,
    OV_LABELS,
    REJECTED,
    SIGNAL_COLUMNS,
    SUBTITLE_MISSING,
    rows_to_table,
)
from core.stage import Stage
from pipelines.config import RESUME_IGNORED
from pipelines.provenance import run_fingerprint
from pipelines.steps import run_steps

log = logging.getLogger(__name__)

SAMPLES, FAILURES, MARKERS = "samples", "failures", "_markers"
STALE_TEMP_S = 3600.0  # a temp file this old belongs to no live write
SUMMARY_COLUMNS = (NAME, "outcome", "stage", "reason", "shard", SUBTITLE_MISSING, OV_LABELS)


def shard_id(names: Iterable[str]) -> str:
    return hashlib.sha1("\n".join(sorted(names)).encode("utf-8")).hexdigest()[:20]


def sample_columns(cfg) -> tuple[str, ...]:
    """The columns of a sample shard: the schema's, then the outputs of any step of the run that the
    schema does not name (``pipelines.steps``)."""
    cols = BASE_COLUMNS + (("faces",) if cfg.face_check else ())
    cols += MEDIA_COLUMNS if cfg.store_media else ()
    if cfg.llm_stages:
        cols += LLM_COLUMNS + SIGNAL_COLUMNS
        cols += tuple(dict.fromkeys(c for s in run_steps(cfg) for c in s.outputs if c not in cols))
    return cols + (CONFIG_FINGERPRINT,)


def writer(cfg, output: str) -> tuple[type[Stage], dict[str, Any]]:
    """The sink of the last stage chain: ``WriteStage`` with its columns and the run's fingerprint
    made here, on the driver (so a worker needs no step registered after import)."""
    return WriteStage, {
        "output": output,
        "columns": sample_columns(cfg),
        "fingerprint": run_fingerprint(cfg, RESUME_IGNORED),
    }


def write_shard(output: str, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> pa.Table:
    """Write one batch: its samples and failures shards (or remove stale ones), then its marker."""
    sid = shard_id(r["name"] for r in rows)
    ok = [r for r in rows if r.get("outcome", OK) == OK]
    bad = [r for r in rows if r.get("outcome", OK) != OK]
    _put(storage.join(output, SAMPLES, f"part-{sid}.parquet"), ok, columns)
    _put(storage.join(output, FAILURES, f"part-{sid}.parquet"), bad, FAILURE_COLUMNS)
    marker = {
        "shard": sid,
        "seq": time.time_ns(),
        **{o: sorted(r["name"] for r in rows if r.get("outcome", OK) == o) for o in OUTCOMES},
    }
    storage.write_text(marker_uri(output, sid), json.dumps(marker))
    metrics.counter("emer_samples_written").inc(len(ok), {"stage": "sink"})
    summary = [
        {**{c: r.get(c) for c in SUMMARY_COLUMNS}, "outcome": r.get("outcome", OK), "shard": sid}
        for r in rows
    ]
    return rows_to_table(summary, SUMMARY_COLUMNS)


def _put(uri: str, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    if rows:
        storage.write_table(rows_to_table(rows, columns).select(list(columns)), uri)
    else:
        storage.delete(uri)  # a rerun of the same batch may leave no rows of this kind


def marker_uri(output: str, sid: str) -> str:
    return storage.join(output, MARKERS, f"part-{sid}.json")


class WriteStage(Stage):
    """The sink at the end of the last stage chain: writes the batch, returns small summary rows."""

    name = "write"

    def setup(self) -> None:
        self.fingerprint = self.options["fingerprint"]

    def finish(self, rows: list[dict[str, Any]]) -> pa.Table:
        for r in rows:
            r.setdefault("outcome", OK)
            r[CONFIG_FINGERPRINT] = self.fingerprint
        return write_shard(self.options["output"], rows, self.options["columns"])

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self.finish(batch.to_pylist())


# ---------------------------------------------------------------- driver side: state of an output


@dataclasses.dataclass
class OutputState:
    """Outcome and shard of every name already finished in an output."""

    outcome: dict[str, str] = dataclasses.field(default_factory=dict)
    shard: dict[str, str] = dataclasses.field(default_factory=dict)
    orphans_removed: int = 0
    superseded: int = 0
    temps_removed: int = 0

    def names(self, *outcomes: str) -> set[str]:
        return {n for n, o in self.outcome.items() if o in outcomes}

    def counts(self, names: Iterable[str] | None = None) -> dict[str, int]:
        pool = self.outcome if names is None else {n: self.outcome[n] for n in names if n in self.outcome}
        return {o: sum(1 for v in pool.values() if v == o) for o in OUTCOMES}


def load_markers(output: str) -> dict[str, dict]:
    uris = storage.list_files(storage.join(output, MARKERS), suffixes=[".json"], skip_temp=True)
    with ThreadPoolExecutor(max_workers=16) as pool:
        loaded = list(pool.map(lambda u: json.loads(storage.read_text(u)), uris))
    return {m["shard"]: m for m in loaded}


def reconcile(output: str, temp_age_s: float = STALE_TEMP_S) -> OutputState:
    """Delete shards without a marker and temp files over ``temp_age_s`` old (0: all, when no
    writer runs), keep only each name's newest outcome; return the state."""
    state = OutputState(temps_removed=storage.remove_stale_temp_files(output, temp_age_s))
    markers = load_markers(output)
    for kind, outcomes in ((SAMPLES, (OK,)), (FAILURES, (REJECTED, FAILED))):
        for uri in storage.list_files(storage.join(output, kind), suffixes=[".parquet"], skip_temp=True):
            m = markers.get(_sid(uri))
            if m is None or not any(m.get(o) for o in outcomes):
                log.info("removing %s: no completion marker (an interrupted write)", uri)
                storage.delete(uri)
                state.orphans_removed += 1
    seen: dict[str, list[tuple[int, int, str, str]]] = defaultdict(list)
    for sid, m in markers.items():
        for o in OUTCOMES:
            for name in m.get(o, []):
                seen[name].append((o == OK, m["seq"], sid, o))  # an ok outcome is final, then newest wins
    drop: dict[str, set[str]] = defaultdict(set)
    for name, entries in seen.items():
        entries.sort()
        _, _, sid, o = entries[-1]
        state.outcome[name], state.shard[name] = o, sid
        for _, _, old, _ in entries[:-1]:
            drop[old].add(name)
    for sid, names in drop.items():
        _drop_names(output, markers[sid], names)
        state.superseded += len(names)
    return state


def _drop_names(output: str, marker: dict, names: set[str]) -> None:
    """Remove superseded names from a shard: rewrite its files first, its marker last."""
    sid = marker["shard"]
    for kind in (SAMPLES, FAILURES):
        uri = storage.join(output, kind, f"part-{sid}.parquet")
        if not storage.exists(uri):
            continue
        table = storage.read_table(uri)
        keep = table.filter(pc.invert(pc.is_in(table["name"], value_set=pa.array(sorted(names)))))
        if keep.num_rows:
            storage.write_table(keep, uri)
        else:
            storage.delete(uri)
    rest = {o: [n for n in marker.get(o, []) if n not in names] for o in OUTCOMES}
    if any(rest.values()):
        storage.write_text(marker_uri(output, sid), json.dumps({**marker, **rest}))
    else:
        storage.delete(marker_uri(output, sid))
    log.info("shard %s: %d superseded name(s) removed", sid, len(names))


def _sid(uri: str) -> str:
    base = posixpath.basename(uri)
    return base[len("part-") : -len(".parquet")] if base.startswith("part-") else base


def failure_row(name: str, stage: str, reason: str, clip: str = "", outcome: str = FAILED) -> dict[str, Any]:
    return {"name": name, "stage": stage, "reason": reason, "outcome": outcome, "clip": clip}
