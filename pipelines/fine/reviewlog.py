"""The review log of EMER-Fine: append-only JSON lines beside the dataset, one file per reviewer.

``DATA/review/<reviewer>.jsonl`` holds one decision per line (EMER-Coarse itself is never written)::

    {"v": 1, "ts": "2026-12-03T12:00:00.123456+00:00", "reviewer": "alice", "name": "sample_01",
     "action": "accept" | "edit" | "reject", "base": "<hash of the fields the reviewer saw>",
     "before": {"description_en": ..., "ov_labels": [...]},
     "after": {"description_en": ..., "ov_labels": [...]} (reject: null), "reason": "..."}

A row's current fields are EMER-Coarse's, then its newest decision over every reviewer's log
(``current``). ``base`` is the hash of the row's state the reviewer saw (``state_hash``): its fields
and the verdict of its newest decision (none, kept or rejected). ``append`` refuses with ``Conflict``
when that state changed since the reviewer loaded the row: a second reviewer sees the other's edit,
or the other's rejection, instead of overwriting it. For a row nobody decided ``base`` is the hash of
its fields alone (``content_hash``).

Every line is decoded (UTF-8) and checked on its own (``parse_line``: a JSON object with exactly the
keys above, each of its type); a line that is not a complete decision (cut short by a crash, even
inside a multi-byte character; ``null``; a number for ``ts``; nested too deep) is reported with its
file and line number and skipped, the rest is read, and the next append starts on a fresh line.
Appended decisions are size-checked (``check_sizes``: ``MAX_CHARS`` per field). Local folders append
under a file lock; an ``s3://`` dataset rewrites its reviewer's object (one review server per
dataset there).
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
MAX_CHARS = {DESCRIPTION_EN: 10_000, OV_LABELS: 1_000, "reason": 2_000}  # OV_LABELS: joined by ", "
KEYS = ("reviewer", "name", "action", "base", "before", "after", "reason", "ts")
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


def content_hash(fields: dict[str, Any], verdict: str = "") -> str:
    """A short stable hash of a row's reviewable fields, and of ``verdict`` when one is given."""
    state = {**fields_of(fields), **({"verdict": verdict} if verdict else {})}
    canonical = json.dumps(state, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def verdict_of(decision: Decision | None) -> str:
    """``""`` (not decided), ``kept`` (accept or edit) or ``rejected``."""
    if decision is None:
        return ""
    return "rejected" if decision.action == "reject" else "kept"


def state_hash(row: dict[str, Any], decision: Decision | None) -> str:
    """What ``base`` records: the hash of the row's current fields and of its newest decision's
    verdict (``decision``, None when nobody decided it)."""
    return content_hash(current(row, decision), verdict_of(decision))


def check_reviewer(reviewer: str) -> str:
    if not REVIEWER_RE.fullmatch(reviewer or ""):
        raise ValueError(
            f"reviewer {reviewer!r}: use 1-64 letters, digits, '.', '_' or '-' (it names the log file)"
        )
    return reviewer


def log_uri(data: str, reviewer: str) -> str:
    return storage.join(data, REVIEW_DIR, f"{check_reviewer(reviewer)}.jsonl")


def check_sizes(decision: Decision) -> None:
    """ValueError naming the field when what a reviewer wrote (the ``after`` fields, the reason) is
    over ``MAX_CHARS``."""
    after = decision.after or {}
    sizes = {
        DESCRIPTION_EN: len(after.get(DESCRIPTION_EN) or ""),
        OV_LABELS: len(", ".join(after.get(OV_LABELS) or [])),
        "reason": len(decision.reason),
    }
    for field, size in sizes.items():
        if size > MAX_CHARS[field]:
            raise ValueError(
                f"{field} has {size} characters: at most {MAX_CHARS[field]} are kept; shorten it"
            )


_JSON_TYPE = {type(None): "null", bool: "a boolean", int: "a number", float: "a number", str: "a string"}
_JSON_TYPE[list] = "an array"


def _fields_ok(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and all(k in value for k in FIELDS)
        and isinstance(value[DESCRIPTION_EN], str)
        and isinstance(value[OV_LABELS], list)
        and all(isinstance(x, str) for x in value[OV_LABELS])
    )


def parse_line(line: bytes) -> Decision:
    """The decision of one log line; ValueError saying why it is not a complete one."""
    try:
        raw = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ValueError(f"not UTF-8 text ({err.reason} at byte {err.start}; cut short?)") from None
    except RecursionError:
        raise ValueError("JSON nested too deep") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{_JSON_TYPE.get(type(raw), 'a value')}, not a JSON object")
    if raw.pop("v", None) != 1 or set(raw) != set(KEYS):
        keys = ", ".join(sorted(raw)[:12])[:200]
        raise ValueError(f"keys {keys} are not those of a decision (v=1, {', '.join(KEYS)})")
    wrong = [k for k in ("reviewer", "name", "action", "base", "reason", "ts") if not isinstance(raw[k], str)]
    if wrong:
        raise ValueError(f"{', '.join(wrong)}: must be text")
    if raw["action"] not in ACTIONS:
        raise ValueError(f"unknown action {raw['action'][:40]!r}")
    if not _fields_ok(raw["before"]):
        raise ValueError(f"before: must be {{{DESCRIPTION_EN}: text, {OV_LABELS}: [text, ...]}}")
    if (raw["after"] is None) != (raw["action"] == "reject") or not (
        raw["after"] is None or _fields_ok(raw["after"])
    ):
        raise ValueError("after: must be null for a reject, else like before")
    return Decision(**raw)


def parse_log(data: bytes | str, source: str) -> tuple[list[Decision], list[str]]:
    """Decisions of one log, and a problem line (file, line number, why) for every line that is not
    a complete decision; each line is decoded and checked on its own."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    out, problems = [], []
    for no, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            out.append(parse_line(line))
        except ValueError as err:
            problems.append(f"{source} line {no}: not a complete decision ({err}); skipped, the rest is read")
    return out, problems


def read_logs(data: str) -> tuple[dict[str, list[Decision]], list[str]]:
    """Every reviewer's decisions (in file order) and the problems found reading them."""
    folder = storage.join(data, REVIEW_DIR)
    logs, problems = {}, []
    if not storage.exists(folder):
        return logs, problems
    for uri in storage.list_files(folder, suffixes=[".jsonl"], recursive=False, skip_temp=True):
        reviewer = uri.rsplit("/", 1)[-1].removesuffix(".jsonl")
        decisions, bad = parse_log(storage.read_bytes(uri), f"{REVIEW_DIR}/{reviewer}.jsonl")
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
    decision on the row (``Conflict`` when ``decision.base`` is no longer the row's ``state_hash``)."""
    if decision.action not in ACTIONS:
        raise ValueError(f"action {decision.action!r}: must be one of {', '.join(ACTIONS)}")
    check_sizes(decision)
    with _LOCK, _file_lock(data):
        logs, _ = read_logs(data)
        theirs = newest(logs).get(decision.name)
        if decision.base != state_hash(row, theirs):
            raise Conflict(decision.name, theirs)
        stamped = dataclasses.replace(decision, ts=dt.datetime.now(dt.timezone.utc).isoformat())
        _append_line(log_uri(data, decision.reviewer), stamped.to_json())
    return stamped


def _append_line(uri: str, line: str) -> None:
    if storage.is_s3(uri):
        old = storage.read_bytes(uri) if storage.exists(uri) else b""
        sep = b"" if not old or old.endswith(b"\n") else b"\n"
        storage.write_bytes(uri, old + sep + line.encode("utf-8") + b"\n")
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
