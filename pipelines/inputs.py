"""List and key the input: one row per clip, sample id = file stem, joined with the subtitle CSV.

An id that is not a plain name (letters, digits, ``_``, ``-``, ``.``; no leading dot, no ``..``, at
most 128 characters) could escape its folder or key prefix downstream: it is rejected with a reason,
never rewritten. The same id in two files (another folder or container) is an error naming both.
A local clip that is a symbolic link (or lies under a linked folder) whose target resolves outside
the input folder is rejected the same way and never opened: a link planted in a shared input folder
must not make the decoder read, and the dataset store, a file from elsewhere (``/etc/passwd``,
another user's video). A link that stays inside the folder is an ordinary input under its own name
(the same media may then appear under two ids). S3 has no links. The check runs at listing time: a
file swapped for a link after it is not caught, so keep the input folder unwritable while a run reads it.
Subtitles come in the MER layout (``name, chinese, english``); a clip without a row gets an empty
subtitle and ``subtitle_missing``; rows without a clip are reported.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import os
import posixpath
import re
from typing import Any

from core import storage
from core.schema import SUBTITLE, SUBTITLE_EN, SUBTITLE_MISSING, SUBTITLE_ZH

log = logging.getLogger(__name__)

SAFE_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # whole name: always fullmatch
SUBTITLE_COLUMNS = ("name", "chinese", "english")


@dataclasses.dataclass
class Listing:
    rows: list[dict[str, Any]]  # one per clip with a safe id: name, clip, subtitle fields
    rejected: list[dict[str, Any]]  # failure rows (stage "list"): unsafe ids, links out of the folder
    orphan_subtitles: list[str]  # subtitle rows without a clip
    missing_subtitles: list[str]  # clips without a subtitle row
    subtitle_rows: int

    @property
    def names(self) -> list[str]:
        return [r["name"] for r in self.rows] + [r["name"] for r in self.rejected]


def unsafe_id_reason(name: str) -> str | None:
    if SAFE_ID.fullmatch(name) and ".." not in name:
        return None
    return (
        f"unsafe sample id {name!r}: ids may hold only letters, digits, '_', '-' and '.' (no leading "
        "dot, no '..', at most 128 characters); rename the file"
    )


def link_out_reason(uri: str, root: str | None) -> str | None:
    """Why local clip ``uri`` is refused because its real path (links resolved) leaves ``root`` (the
    input folder's real path; None for S3, which has no links), or None."""
    if root is None:
        return None
    real = os.path.realpath(uri)
    if os.path.commonpath([real, root]) == root:
        return None
    return (
        f"clip {uri} is a symbolic link (or lies under a linked folder) that leads out of the input "
        "folder: it is not opened; copy the file into the input folder, or pass the folder that holds "
        "it as --input"
    )


def input_root(input_uri: str) -> str | None:
    """The real path (links resolved) of a local input folder; None for an ``s3://`` prefix."""
    return None if storage.is_s3(input_uri) else os.path.realpath(storage.filesystem(input_uri)[1])


def list_clips(input_uri: str, extensions: list[str]) -> dict[str, str]:
    """Stem -> clip URI for every video file under ``input_uri``; duplicate stems are an error."""
    if not storage.exists(input_uri):
        raise FileNotFoundError(f"input {input_uri}: no such folder or prefix; pass the folder of clips")
    found: dict[str, list[str]] = {}
    for uri in storage.list_files(input_uri, suffixes=extensions):
        stem = posixpath.splitext(posixpath.basename(uri.replace("\\", "/")))[0]
        found.setdefault(stem, []).append(uri)
    dups = {k: v for k, v in found.items() if len(v) > 1}
    if dups:
        lines = [f"'{k}': {' and '.join(v)}" for k, v in sorted(dups.items())[:20]]
        raise ValueError(
            f"input {input_uri}: {len(dups)} duplicate sample id(s) (the id is the file stem, "
            "it must be unique across folders and containers): "
            + "; ".join(lines)
            + ". Rename or remove one file of each pair."
        )
    return {k: v[0] for k, v in sorted(found.items())}


def read_subtitles(uri: str) -> dict[str, dict[str, str]]:
    """name -> {"chinese", "english"} from a MER-layout CSV (UTF-8, header ``name, chinese, english``)."""
    try:
        text = storage.read_bytes(uri).decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"subtitles {uri}: not UTF-8 text ({err}); save the CSV as UTF-8") from err
    reader = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(reader, [])]
    missing = [c for c in SUBTITLE_COLUMNS if c not in header]
    if missing:
        raise ValueError(
            f"subtitles {uri}: header {header} lacks {missing}; the MER layout is "
            "'name,chinese,english' (name = clip file stem)"
        )
    idx = {c: header.index(c) for c in SUBTITLE_COLUMNS}
    out: dict[str, dict[str, str]] = {}
    for line_no, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue
        cells = {c: (row[i] if i < len(row) else "").strip() for c, i in idx.items()}
        name = cells.pop("name")
        if name in out:
            raise ValueError(
                f"subtitles {uri}, line {line_no}: name {name!r} appears twice; keep one row per clip"
            )
        out[name] = cells
    return out


def build_listing(input_uri: str, subtitles_uri: str, cfg) -> Listing:
    clips = list_clips(input_uri, cfg.extensions)
    subs = read_subtitles(subtitles_uri)
    root = input_root(input_uri)
    rows, rejected, missing = [], [], []
    for name, uri in clips.items():
        reason = unsafe_id_reason(name) or link_out_reason(uri, root)
        if reason:
            rejected.append(
                {"name": name, "stage": "list", "reason": reason, "outcome": "failed", "clip": uri}
            )
            continue
        sub = subs.get(name)
        if sub is None:
            missing.append(name)
        en, zh = (sub or {}).get("english", ""), (sub or {}).get("chinese", "")
        rows.append(
            {
                "name": name,
                "clip": uri,
                SUBTITLE_EN: en,
                SUBTITLE_ZH: zh,
                SUBTITLE: en if cfg.subtitle_language == "english" else zh,
                SUBTITLE_MISSING: sub is None,
            }
        )
    orphans = sorted(set(subs) - set(clips))
    log.info(
        "input: %d clips (%d rejected while listing), %d subtitle rows, %d clips without subtitle, "
        "%d subtitles without clip",
        len(clips),
        len(rejected),
        len(subs),
        len(missing),
        len(orphans),
    )
    return Listing(rows, rejected, orphans, missing, len(subs))
