"""The sample set several times over, for runs that need more rows than it has: each clip hard-linked
(copied across file systems) ``n`` times as ``<stem>_c<i>`` and the subtitle rows renamed to match.

Not symlinked: ``emer annotate`` refuses a symlink that leads out of its input folder
(``pipelines.inputs``), and the sample set lies outside the folders made here."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path


def link_clip(src: Path, dest: Path) -> None:
    """``dest`` as a hard link to ``src`` (no copy of the bytes), or a copy on another file system."""
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def copies(sample_clips, dest: Path, n: int) -> tuple[str, str, list[str]]:
    """``n`` copies of ``sample_clips`` under ``dest``: (clips folder, subtitles csv, input names)."""
    clips = dest / "clips"
    clips.mkdir(parents=True)
    names = []
    for src in sorted((sample_clips.root / "clips").iterdir()):
        for i in range(n):
            link_clip(src, clips / f"{src.stem}_c{i}{src.suffix}")
            names.append(f"{src.stem}_c{i}")
    with open(sample_clips.subtitles, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    subtitles = dest / "subtitles.csv"
    with open(subtitles, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**r, "name": f"{r['name']}_c{i}"} for r in rows for i in range(n))
    return str(clips), str(subtitles), names


def original(name: str) -> str:
    """The sample clip a copy's name came from (``sample_00000004_c2`` -> ``sample_00000004``)."""
    return name.rsplit("_c", 1)[0]
