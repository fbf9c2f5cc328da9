"""Helpers of the review page's tests: a small EMER-Coarse written like ``emer annotate`` writes it,
the quality columns of ``emer filter``, and the review page served on a free port in a thread."""

from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from core import storage
from core.schema import BASE_COLUMNS, LLM_COLUMNS, MEDIA_COLUMNS
from pipelines.sink import write_shard

COLUMNS = BASE_COLUMNS + MEDIA_COLUMNS + LLM_COLUMNS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def write_coarse(data: str | Path, clips: dict[str, str]) -> None:
    """EMER-Coarse under ``data`` (local or s3://): one row per ``name -> clip URI``, one shard."""
    write_shard(str(data), [coarse_row(n, c) for n, c in clips.items()], COLUMNS)


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


@contextlib.contextmanager
def serving(app, port: int) -> Iterator[str]:
    """``app`` on 127.0.0.1:``port`` (uvicorn in a thread) for the block; yields its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name=f"review-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the review page did not start on 127.0.0.1:{port}")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
