"""What the clips job writes, and how a rerun knows what is finished.

Per source video, from the driver as soon as all its rows have come back (``VideoCollector``):
``segments/<video>.parquet`` (every segment: kept, rejected with its reason and numbers, failed),
``failures/<video>.parquet`` when the video failed (the annotation's failure columns: name, stage,
reason, outcome, clip) and, last, the done marker ``_markers/<video>.json`` (its counts, and the
seconds each step took on it: ``columns.TIMING_COLUMNS`` summed). A video with a marker
is finished and a rerun skips it (``--retry-failed``: except the failed ones). A video fails when it
cannot be used at all, or when none of its segments gave a clip (the reason counts the segments each
filter removed). A clip whose transcription failed is removed from ``clips/``, so ``clips/`` and
``subtitles.csv`` name the same clips.

After the run, ``write_tables`` rebuilds ``clips.parquet`` (the per-clip table of every finished
video) and ``subtitles.csv`` (name, chinese, english: the kept clips, as ``emer annotate`` reads it)
from the per-video files; both are replaced whole (atomic writes), so they always match the markers.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from collections import Counter
from typing import Any

import pyarrow as pa

from core import storage
from core.schema import CLIP, FAILURE_COLUMNS, NAME, rows_to_table
from core.stage import FAILED, OK
from pipelines.clips import columns as C
from pipelines.inputs import SUBTITLE_COLUMNS

log = logging.getLogger(__name__)

SEGMENTS, FAILURES, MARKERS = "segments", "failures", "_markers"
CLIPS_TABLE, SUBTITLES_CSV = "clips.parquet", "subtitles.csv"


def marker_uri(output: str, video: str) -> str:
    return storage.join(output, MARKERS, f"{video}.json")


def load_markers(output: str) -> dict[str, dict[str, Any]]:
    """video -> its done marker, for every finished video of ``output``."""
    out = {}
    for uri in storage.list_files(storage.join(output, MARKERS), suffixes=[".json"], skip_temp=True):
        marker = json.loads(storage.read_text(uri))
        out[marker["video"]] = marker
    return out


def video_outcome(rows: list[dict[str, Any]]) -> tuple[str, str, str]:
    """(outcome, stage, reason) of a video from its rows: failed when unusable or nothing kept."""
    whole = [r for r in rows if r.get(C.KIND) == "video"]
    if whole:
        return FAILED, whole[0][C.STAGE], whole[0][C.REASON]
    if any(r[C.OUTCOME] == OK for r in rows):
        return OK, "", ""
    removed = Counter(r.get(C.STAGE) or "?" for r in rows)
    first = next((r[C.REASON] for r in rows if r.get(C.REASON)), "")
    counts = ", ".join(f"{stage} {n}" for stage, n in sorted(removed.items()))
    source = rows[0][C.SOURCE] if rows else "?"
    reason = f"video {source}: no clip kept of {len(rows)} segment(s) ({counts}); e.g. {first}"
    return FAILED, "filter", reason


def write_failure(output: str, row: dict[str, Any]) -> None:
    """A video's failure row (``failures/<video>.parquet``, the annotation's failure columns)."""
    failure = {NAME: row[C.VIDEO], "stage": row[C.STAGE], "reason": row[C.REASON], "outcome": FAILED}
    failure[CLIP] = row[C.SOURCE]
    table = rows_to_table([failure], FAILURE_COLUMNS).select(list(FAILURE_COLUMNS))
    storage.write_table(table, storage.join(output, FAILURES, f"{row[C.VIDEO]}.parquet"))


def finish_video(output: str, video: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Write one video's segments (and failure), then its marker; returns the marker."""
    outcome, stage, reason = video_outcome(rows)
    for r in rows:
        if r[C.OUTCOME] == FAILED and r.get(CLIP):  # cut, then not transcribed: not a clip
            storage.delete(r[CLIP])
            r[CLIP] = None
    segments = [r for r in rows if r.get(C.KIND) == "segment"]
    seg_uri = storage.join(output, SEGMENTS, f"{video}.parquet")
    if segments:
        storage.write_table(rows_to_table(segments, C.ROW_COLUMNS).select(list(C.ROW_COLUMNS)), seg_uri)
    else:
        storage.delete(seg_uri)
    if outcome == FAILED:
        write_failure(output, {**rows[0], C.VIDEO: video, C.STAGE: stage, C.REASON: reason})
    else:  # a failure of an earlier run, now superseded
        storage.delete(storage.join(output, FAILURES, f"{video}.parquet"))
    marker = {
        "video": video,
        "source": rows[0][C.SOURCE],
        "outcome": outcome,
        "seq": time.time_ns(),
        "segments": len(segments),
        **{o: sum(1 for r in segments if r[C.OUTCOME] == o) for o in C.OUTCOMES},
        "seconds": C.step_seconds(rows),  # per step, measured inside the stages
    }
    storage.write_text(marker_uri(output, video), json.dumps(marker))
    return marker


class VideoCollector:
    """Gathers the rows streaming back to the driver; a video complete -> ``finish_video``."""

    def __init__(self, output: str) -> None:
        self.output = output
        self.rows: dict[str, list[dict[str, Any]]] = {}
        self.markers: dict[str, dict[str, Any]] = {}

    def add(self, rows: list[dict[str, Any]]) -> None:
        for r in rows:
            got = self.rows.setdefault(r[C.VIDEO], [])
            got.append(r)
            if len(got) == r[C.ROWS_TOTAL]:
                self.markers[r[C.VIDEO]] = finish_video(self.output, r[C.VIDEO], got)
                del self.rows[r[C.VIDEO]]


def write_tables(output: str, videos: list[str]) -> dict[str, int]:
    """``clips.parquet`` and ``subtitles.csv`` from the segments of the finished ``videos``."""
    parts = []
    for video in sorted(videos):
        uri = storage.join(output, SEGMENTS, f"{video}.parquet")
        if storage.exists(uri):
            parts.append(storage.read_table(uri))
    table = pa.concat_tables(parts, promote_options="default") if parts else rows_to_table([], C.ROW_COLUMNS)
    storage.write_table(table, storage.join(output, CLIPS_TABLE))
    kept = [r for r in table.to_pylist() if r[C.OUTCOME] == OK]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(SUBTITLE_COLUMNS)
    for r in kept:
        writer.writerow([r[NAME], r[C.CHINESE] or "", r[C.ENGLISH] or ""])
    storage.write_text(storage.join(output, SUBTITLES_CSV), buf.getvalue())
    removed = Counter(r[C.STAGE] for r in table.to_pylist() if r[C.OUTCOME] != OK)
    return {"segments": table.num_rows, "clips": len(kept), "removed_by_stage": dict(sorted(removed.items()))}
