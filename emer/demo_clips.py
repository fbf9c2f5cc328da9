"""The clips phase of ``emer demo``: the long episodes -> clips -> the annotation's input.

``write_demo_episodes`` writes the long episodes (``pipelines.episodes``, as ``emer samples`` does)
beside the sample clips. ``run_clips_phase`` cuts them with ``run_clips``, the function ``emer clips``
calls, on the demo's Ray, into ``<out>/clips``, and counts what each filter removed from the job's
own clip table (``clips.parquet``). ``annotation_input`` then puts the sample clips and the episode
clips side by side in one folder (hard links, no bytes copied) with one subtitles CSV: ``emer
annotate`` keeps its one ``--input`` and one ``--subtitles``, and the folder is what a user passes
to rerun the annotation by hand.
"""

from __future__ import annotations

import csv
import io
import logging
import posixpath
from collections import Counter
from pathlib import Path
from typing import Any

from core import storage
from core.schema import NAME
from core.stage import OK
from pipelines.clips import columns as C
from pipelines.clips.job import check_outcome, run_clips
from pipelines.clips.outputs import CLIPS_TABLE, SUBTITLES_CSV
from pipelines.episodes import write_episodes
from pipelines.inputs import SUBTITLE_COLUMNS, read_subtitles
from pipelines.speech import find_espeak

log = logging.getLogger(__name__)
NO_ESPEAK = "skipped: the episodes need espeak-ng (apt-get install -y espeak-ng)"
# the order the phase line names the filters in; any other removal follows, by name
FILTER_ORDER = ("too short", "too long", "not one face", "no face", "different people")


def write_demo_episodes(folder: Path, seed: int) -> list[Any]:
    """The long episodes in ``folder`` (unchanged ones are kept); none without espeak-ng."""
    if find_espeak() is None:
        log.warning("demo: no espeak-ng on PATH: no episodes, so no clips phase")
        return []
    return write_episodes(folder, seed=seed)


def removal_label(stage: str | None, reason: str | None) -> str:
    """A removed segment's filter in words, from its clip-table ``stage`` and ``reason``."""
    reason = reason or ""
    if stage == "duration":
        return "too short" if "under" in reason else "too long"
    if stage == "faces":
        if reason.startswith("no face"):
            return "no face"
        return "different people" if reason.startswith("faces of different people") else "not one face"
    named = {"subtitles": "subtitle line dropped", "cut": "cut failed", "asr": "transcription failed"}
    return named.get(stage or "", stage or "unknown")


def removed_by_filter(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Filter -> segments it removed, from the clip table's rows (whole-video failures aside)."""
    counts = Counter(
        removal_label(r[C.STAGE], r[C.REASON]) for r in rows if r[C.KIND] == "segment" and r[C.OUTCOME] != OK
    )
    order = {name: i for i, name in enumerate(FILTER_ORDER)}
    return dict(sorted(counts.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


def run_clips_phase(cfg: Any, episodes: str, clips_out: str) -> dict[str, Any]:
    """The clips job on ``episodes`` into ``clips_out`` (Ray connected); its line and outputs."""
    manifest = run_clips(cfg.clips, episodes, clips_out, resolved=cfg)
    check_outcome(cfg.clips, manifest)
    rows = storage.read_table(storage.join(clips_out, CLIPS_TABLE)).to_pylist()
    removed = removed_by_filter(rows)
    c = manifest["counts"]
    text = ", ".join(f"{n} {what}" for what, n in removed.items()) or "nothing"
    line = f"{c['videos']} episodes -> {c['clips']} clips; removed: {text}"
    if c["failed"]:
        line += f"; {c['failed']} episodes failed (see {storage.join(clips_out, 'failures')})"
    outputs = {
        "clips": storage.join(clips_out, C.CLIPS_DIR),
        "clip table": storage.join(clips_out, CLIPS_TABLE),
        "clips card": storage.join(clips_out, "README.md"),
    }
    names = [r[NAME] for r in rows if r[C.KIND] == "segment" and r[C.OUTCOME] == OK]
    subtitles = storage.join(clips_out, SUBTITLES_CSV)
    return {"manifest": manifest, "removed": removed, "line": line, "outputs": outputs, "names": names,
            "subtitles": subtitles}  # fmt: skip


def annotation_input(dest: str, sources: list[tuple[str, str]]) -> tuple[str, str]:
    """One clips folder and one subtitles CSV under ``dest`` from ``(clips folder, subtitles CSV)``
    pairs: every file linked (else copied) into ``dest/clips``, every subtitle row in
    ``dest/subtitles.csv``; files of an earlier run that no source has now are removed. Returns
    (clips folder, subtitles CSV)."""
    clips_dir, subs_uri = storage.join(dest, "clips"), storage.join(dest, SUBTITLES_CSV)
    files: dict[str, str] = {}
    rows: dict[str, dict[str, str]] = {}
    for folder, subtitles in sources:
        for uri in storage.list_files(folder, recursive=False, skip_temp=True):
            base = posixpath.basename(uri)
            if base in files:
                raise ValueError(f"demo: clip file {base} is in {files[base]} and {uri}; names must differ")
            files[base] = uri
        rows.update(read_subtitles(subtitles))
    for base, uri in files.items():
        storage.link_or_copy(uri, storage.join(clips_dir, base))
    if storage.exists(clips_dir):
        for stale in storage.list_files(clips_dir, recursive=False):
            if posixpath.basename(stale) not in files:
                storage.delete(stale)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(SUBTITLE_COLUMNS)
    writer.writerows([name, r["chinese"], r["english"]] for name, r in rows.items())
    storage.write_text(subs_uri, buf.getvalue())
    return clips_dir, subs_uri
