"""Helpers of the review page's tests: a small EMER-Coarse written like ``emer annotate`` writes it,
and the quality columns of ``emer filter`` (the page is served and driven by ``browser_helpers``)."""

from __future__ import annotations

import hashlib
import json
import posixpath
from pathlib import Path

import pyarrow as pa

from core import storage
from core.schema import BASE_COLUMNS, LLM_COLUMNS, MEDIA_COLUMNS
from pipelines.sink import write_shard

COLUMNS = BASE_COLUMNS + MEDIA_COLUMNS + LLM_COLUMNS


def coarse_row(name: str, clip: str) -> dict:
    return {
        "name": name,
        "clip": clip,
        "subtitle_en": f"Subtitle of {name}.",
        "subtitle_zh": "字幕",
        "subtitle_missing": False,
        "audio_clue": f"Audio clue of {name}: a raised voice.",
        "video_clue": f"Video clue of {name}: a frown.",
        "description_en": f"In {name} the person is calm.",
        "description_zh": "这个人很平静。",
        "ov_labels": ["calm", "neutral"],
        "ov_raw": "['calm', 'neutral']",
        "frames": [b"\xff\xd8 not read by the review page"],
        "audio": b"fLaC not read either",
    }


def write_coarse(data: str | Path, clips: dict[str, str], clip_dir: str | None = None) -> None:
    """EMER-Coarse under ``data`` (local or s3://): one row per ``name -> clip URI``, one shard, and
    a ``manifest.json`` whose ``input`` (the clip folder the page serves from) is ``clip_dir``
    (default: the folder of the first clip)."""
    write_shard(str(data), [coarse_row(n, c) for n, c in clips.items()], COLUMNS)
    folder = clip_dir or posixpath.dirname(next(iter(clips.values())))
    storage.write_text(storage.join(str(data), "manifest.json"), json.dumps({"input": folder}))


def write_quality(data: str | Path, flags: dict[str, list[str]]) -> None:
    """``DATA/quality/part-0.parquet`` as ``emer filter`` writes it: ``name -> rule ids`` (none = pass)."""
    table = pa.table(
        {
            "name": list(flags),
            "quality_pass": [not f for f in flags.values()],
            "quality_flags": pa.array(list(flags.values()), pa.list_(pa.string())),
            "quality_reasons": pa.array([[f"{r}: why {r} fired" for r in f] for f in flags.values()]),
        }
    )
    storage.write_table(table, storage.join(str(data), "quality", "part-0.parquet"))


def digest(folder: Path) -> str:
    """A hash of every file under ``folder`` (to show EMER-Coarse is never written)."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode() + p.read_bytes())
    return h.hexdigest()
