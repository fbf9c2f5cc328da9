"""What the review page shows: EMER-Coarse rows (without their media bytes), the quality columns of
``emer filter`` when ``DATA/quality/`` exists, the review queue and a reviewer's progress.

EMER-Coarse (``DATA/samples/part-*.parquet``) and the quality columns are read once, when the page
starts, and never written. The review logs are read on every request (``reviewlog.read_logs``), so
two review pages on one dataset see each other's decisions. The queue puts flagged rows first (a
``quality_pass`` of false or any quality flag), then orders by name.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import re
from typing import Any

import pyarrow.parquet as pq

from core import storage
from core.schema import (
    AUDIO_CLUE,
    CLIP,
    DESCRIPTION_EN,
    DESCRIPTION_ZH,
    NAME,
    OV_LABELS,
    QUALITY_FLAGS,
    QUALITY_PASS,
    QUALITY_REASONS,
    QUALITY_VERDICT,
    SUBTITLE_EN,
    SUBTITLE_ZH,
    VIDEO_CLUE,
)
from pipelines.fine import reviewlog
from pipelines.fine.reviewlog import Decision

log = logging.getLogger(__name__)

SAMPLES, QUALITY = "samples", "quality"
SHOWN = (
    NAME,
    CLIP,
    SUBTITLE_EN,
    SUBTITLE_ZH,
    AUDIO_CLUE,
    VIDEO_CLUE,
    DESCRIPTION_EN,
    DESCRIPTION_ZH,
    OV_LABELS,
)
VERDICT_COLUMNS = (NAME, *QUALITY_VERDICT)  # what the review shows of the filter


def read_parts(folder: str, wanted: tuple[str, ...]) -> list[dict[str, Any]]:
    """The rows of every ``*.parquet`` under ``folder`` (local or s3://), only the ``wanted`` columns
    each file has (the media bytes are never read)."""
    rows: list[dict[str, Any]] = []
    for uri in storage.list_files(folder, suffixes=[".parquet"], skip_temp=True):
        fs, path = storage.filesystem(uri)
        have = set(pq.read_schema(path, filesystem=fs).names)
        if NAME not in have:
            raise ValueError(f"{uri}: no 'name' column; is this an emer output folder?")
        rows += pq.read_table(path, filesystem=fs, columns=[c for c in wanted if c in have]).to_pylist()
    return rows


@dataclasses.dataclass
class Dataset:
    """One EMER-Coarse output opened for review: its rows by name, quality by name, the queue."""

    data: str
    rows: dict[str, dict[str, Any]]
    quality: dict[str, dict[str, Any]]
    queue: list[str]

    def flagged(self, name: str) -> bool:
        q = self.quality.get(name)
        return bool(q and (q["pass"] is False or q["flags"]))

    def neighbours(self, name: str) -> tuple[str | None, str | None]:
        """The rows before and after ``name`` in the queue (None at either end)."""
        i = self.queue.index(name)
        return (self.queue[i - 1] if i else None), (self.queue[i + 1] if i + 1 < len(self.queue) else None)

    def next_open(self, name: str | None, decided: set[str]) -> str:
        """The first row after ``name`` (wrapping round) not in ``decided``; else the next row."""
        start = self.queue.index(name) + 1 if name in self.rows else 0
        order = self.queue[start:] + self.queue[:start]
        return next((n for n in order if n not in decided), order[0])


def load_dataset(data: str) -> Dataset:
    """Open ``data`` for review; a clear error when it holds no EMER-Coarse."""
    rows: dict[str, dict[str, Any]] = {}
    for row in read_parts(storage.join(data, SAMPLES), SHOWN):
        rows.setdefault(row[NAME], row)
    if not rows:
        missing = "" if storage.exists(data) else " (the folder does not exist)"
        raise FileNotFoundError(
            f"{data}: no EMER-Coarse here{missing}: no rows in {storage.join(data, SAMPLES)}/part-*.parquet; "
            "run `emer annotate` first, or point --data at its output folder"
        )
    quality = {
        r[NAME]: {
            "pass": r.get(QUALITY_PASS),
            "flags": list(r.get(QUALITY_FLAGS) or []),
            "reasons": list(r.get(QUALITY_REASONS) or []),
        }
        for r in read_parts(storage.join(data, QUALITY), VERDICT_COLUMNS)
    }
    ds = Dataset(data, rows, quality, [])
    ds.queue = sorted(rows, key=lambda n: (not ds.flagged(n), n))
    log.info("review: %d rows in %s (%d flagged by emer filter)", len(rows), data, sum(map(ds.flagged, rows)))
    return ds


@dataclasses.dataclass
class Snapshot:
    """The review logs as one request sees them."""

    logs: dict[str, list[Decision]]
    problems: list[str]
    newest: dict[str, Decision]

    @classmethod
    def read(cls, data: str) -> Snapshot:
        logs, problems = reviewlog.read_logs(data)
        return cls(logs, problems, reviewlog.newest(logs))

    def mine(self, reviewer: str) -> dict[str, Decision]:
        """``reviewer``'s newest decision per row."""
        return {d.name: d for d in sorted(self.logs.get(reviewer, []), key=lambda d: d.ts)}

    def pairs(self) -> list[dict[str, Any]]:
        """``reviewlog.agreement`` for every pair of reviewers with a log, most shared rows first."""
        out = [
            {"a": a, "b": b, **reviewlog.agreement(self.logs[a], self.logs[b])}
            for a, b in itertools.combinations(sorted(self.logs), 2)
        ]
        return sorted(out, key=lambda p: -p["rows"])


def parse_labels(text: str) -> list[str]:
    """OV labels from the comma-separated field: trimmed, lower-case, without repeats."""
    out: list[str] = []
    for part in re.split(r"[,，;；\n]", text or ""):
        label = " ".join(part.split()).lower()
        if label and label not in out:
            out.append(label)
    return out


def _text(value: str) -> str:
    return (value or "").replace("\r\n", "\n").strip()


def make_decision(
    reviewer: str, name: str, before: dict[str, Any], form: dict[str, str], base: str
) -> Decision:
    """The decision a submitted form asks for. ``before`` is the row's current fields. Accept and
    save record what the form holds: an ``edit`` when it differs from ``before``, else an ``accept``
    (``after`` is then ``before`` itself); reject needs a reason. A field over
    ``reviewlog.MAX_CHARS`` is a ValueError naming it."""
    for field, limit in reviewlog.MAX_CHARS.items():
        size = len(form.get(field, ""))
        if size > limit:
            raise ValueError(f"{field} has {size} characters: at most {limit} are kept; shorten it")
    if len(form.get("base", "")) > 64 or len(form.get("action", "")) > 16:
        raise ValueError("base or action: not a value this page sends; reload the row")
    action = form.get("action", "")
    reason = _text(form.get("reason", ""))
    if action not in reviewlog.ACTIONS:
        raise ValueError(f"action {action!r}: must be one of {', '.join(reviewlog.ACTIONS)}")
    if action == "reject":
        if not reason:
            raise ValueError("a rejection needs a reason: type it in the reason field, then reject again")
        return Decision(reviewer, name, "reject", base, before, None, reason)
    after = {
        DESCRIPTION_EN: _text(form.get(DESCRIPTION_EN, "")),
        OV_LABELS: parse_labels(form.get(OV_LABELS, "")),
    }
    if not after[DESCRIPTION_EN]:
        raise ValueError("the description is empty: write one, or reject the row with a reason")
    if after == {
        DESCRIPTION_EN: _text(before[DESCRIPTION_EN]),
        OV_LABELS: parse_labels(", ".join(before[OV_LABELS])),
    }:
        return Decision(reviewer, name, "accept", base, before, dict(before), reason)
    return Decision(reviewer, name, "edit", base, before, after, reason)
