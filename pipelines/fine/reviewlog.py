"""The review log of EMER-Fine: append-only JSON lines beside the dataset, one file per reviewer.

``DATA/review/<reviewer>.jsonl`` holds one decision per line (EMER-Coarse itself is never written)::

    {"v": 1, "ts": "2026-12-03T12:00:00.123456+00:00", "reviewer": "alice", "name": "sample_01",
     "action": "accept" | "edit" | "reject", "base": "<hash of the fields the reviewer saw>",
     "before": {"description_en": ..., "ov_labels": [...]},
     "after": {"description_en": ..., "ov_labels": [...]} (reject: null), "reason": "..."}

A row's current fields are EMER-Coarse's, then its newest decision over every reviewer's log
(``current``). ``append`` refuses with ``Conflict`` when the row changed since the reviewer loaded it
(``base`` differs from the current fields' hash): a second reviewer sees the other's edit instead of
overwriting it. A line cut short (a crash mid-write) is reported and skipped, and the next append
starts on a fresh line, so no complete decision is ever lost. Local folders append under a file lock;
an ``s3://`` dataset rewrites its reviewer's object (one review server per dataset there).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
import threading
from collections.abc import Iterable
from typing import Any

from core import storage
from core.schema import DESCRIPTION_EN, OV_LABELS

REVIEW_DIR = "review"
ACTIONS = ("accept", "edit", "reject")
FIELDS = (DESCRIPTION_EN, OV_LABELS)
REVIEWER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_LOCK = threading.Lock()


class Conflict(ValueError):
    """The row changed since the reviewer loaded it; ``theirs`` is the decision that changed it."""

    def __init__(self, name: str, theirs: Decision | None) -> None:
        self.name, self.theirs = name, theirs
        who = f"{theirs.reviewer} ({theirs.action}, {theirs.ts})" if theirs else "another reviewer"
        super().__init__(
            f"{name} was changed by {who} after you opened it: reload the row, check their change, "
            "then decide again"
        )


@dataclasses.dataclass(frozen=True)
class Decision:
    """One line of a review log."""

    reviewer: str
    name: str
    action: str
    base: str
    before: dict[str, Any]
    after: dict[str, Any] | None
    reason: str = ""
    ts: str = ""

    def to_json(self) -> str:
        return json.dumps({"v": 1, **dataclasses.asdict(self)}, ensure_ascii=False, sort_keys=True)


def fields_of(row: dict[str, Any]) -> dict[str, Any]:
    """The reviewable fields of a row: the English description and the OV labels (a list)."""
    return {DESCRIPTION_EN: str(row.get(DESCRIPTION_EN) or ""), OV_LABELS: list(row.get(OV_LABELS) or [])}


def content_hash(fields: dict[str, Any]) -> str:
    """A short stable hash of a row's reviewable fields (what ``base`` records)."""
    canonical = json.dumps(fields_of(fields), ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def check_reviewer(reviewer: str) -> str:
    if not REVIEWER_RE.fullmatch(reviewer or ""):
        raise ValueError(
            f"reviewer {reviewer!r}: use 1-64 letters, digits, '.', '_' or '-' (it names the log file)"
        )
    return reviewer


def log_uri(data: str, reviewer: str) -> str:
    return storage.join(data, REVIEW_DIR, f"{check_reviewer(reviewer)}.jsonl")


def parse_log(text: str, source: str) -> tuple[list[Decision], list[str]]:
    """Decisions of one log's text, and a problem line for every line that is cut short or not one."""
    out, problems = [], []
    for no, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            raw.pop("v", None)
            dec = Decision(**raw)
            if dec.action not in ACTIONS:
                raise ValueError(f"unknown action {dec.action!r}")
        except (ValueError, TypeError) as err:
            problems.append(f"{source} line {no}: not a complete decision ({err}); skipped, the rest is read")
            continue
        out.append(dec)
    return out, problems


def read_logs(data: str) -> tuple[dict[str, list[Decision]], list[str]]:
    """Every reviewer's decisions (in file order) and the problems found reading them."""
    folder = storage.join(data, REVIEW_DIR)
    logs, problems = {}, []
    if not storage.exists(folder):
        return logs, problems
    for uri in storage.list_files(folder, suffixes=[".jsonl"], recursive=False, skip_temp=True):
        reviewer = uri.rsplit("/", 1)[-1].removesuffix(".jsonl")
        decisions, bad = parse_log(storage.read_text(uri), f"{REVIEW_DIR}/{reviewer}.jsonl")
        logs[reviewer] = decisions
        problems += bad
    return logs, problems


def newest(logs: dict[str, list[Decision]]) -> dict[str, Decision]:
    """The newest decision per sample name over every reviewer (by timestamp)."""
    out: dict[str, Decision] = {}
    for decisions in logs.values():
        for d in decisions:
            if d.name not in out or d.ts > out[d.name].ts:
                out[d.name] = d
    return out


def current(row: dict[str, Any], decision: Decision | None) -> dict[str, Any]:
    """A row's reviewable fields now: EMER-Coarse's, or those its newest decision left."""
    if decision is None:
        return fields_of(row)
    return fields_of(decision.after if decision.after is not None else decision.before)


def append(data: str, decision: Decision, row: dict[str, Any]) -> Decision:
    """Append ``decision`` (stamped now) to its reviewer's log after checking it against the newest
    decision on the row (``Conflict`` when ``decision.base`` is no longer the row's current hash)."""
    if decision.action not in ACTIONS:
        raise ValueError(f"action {decision.action!r}: must be one of {', '.join(ACTIONS)}")
    with _LOCK, _file_lock(data):
        logs, _ = read_logs(data)
        theirs = newest(logs).get(decision.name)
        if decision.base != content_hash(current(row, theirs)):
            raise Conflict(decision.name, theirs)
        stamped = dataclasses.replace(decision, ts=dt.datetime.now(dt.timezone.utc).isoformat())
        _append_line(log_uri(data, decision.reviewer), stamped.to_json())
    return stamped


def _append_line(uri: str, line: str) -> None:
    if storage.is_s3(uri):
        old = storage.read_text(uri) if storage.exists(uri) else ""
        storage.write_text(uri, old + ("" if not old or old.endswith("\n") else "\n") + line + "\n")
        return
    os.makedirs(os.path.dirname(uri), exist_ok=True)
    with open(uri, "a+b") as fh:
        fh.seek(0, os.SEEK_END)
        if fh.tell():
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":  # a line cut short by a crash: keep it apart from ours
                fh.write(b"\n")
        fh.write(line.encode("utf-8") + b"\n")
        fh.flush()
        os.fsync(fh.fileno())


def _file_lock(data: str):
    """An exclusive lock on ``DATA/review/.lock`` for a local dataset (none for s3://)."""
    if storage.is_s3(data):
        return contextlib.nullcontext()
    return storage.file_lock(os.path.join(data, REVIEW_DIR, ".lock"))


def agreement(a: Iterable[Decision], b: Iterable[Decision]) -> dict[str, Any]:
    """How two reviewers agree on the rows both decided (their newest decision each): the share with
    the same verdict (kept = accept or edit, or rejected) and Cohen's kappa over those verdicts."""
    va = {d.name: d.action != "reject" for d in sorted(a, key=lambda d: d.ts)}
    vb = {d.name: d.action != "reject" for d in sorted(b, key=lambda d: d.ts)}
    both = sorted(set(va) & set(vb))
    n = len(both)
    if not n:
        return {"rows": 0, "agree": 0, "percent": None, "kappa": None}
    agree = sum(va[k] == vb[k] for k in both)
    po = agree / n
    pa, pb = sum(va[k] for k in both) / n, sum(vb[k] for k in both) / n
    pe = pa * pb + (1 - pa) * (1 - pb)
    kappa = 1.0 if pe == 1 else (po - pe) / (1 - pe)
    return {"rows": n, "agree": agree, "percent": round(100 * po, 2), "kappa": round(kappa, 4)}
