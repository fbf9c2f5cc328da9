"""The clips job's ``manifest.json`` (counts, this run, settings, versions) and its card (``README.md``).

The card says what came in, what came out, how many segments each filter removed, why videos
failed, and how the clips were made: segmentation per video (subtitles or VAD + speaker merging),
the face filter's identity method (a face-embedding model, or face-track continuity), the cut
(re-encoded, or stream copy snapping to keyframes) and the ASR model (random weights said so).
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from pathlib import Path
from typing import Any

from core import storage
from core.config import dump_yaml, to_plain
from core.llm.tiny import MARKER as TINY_MARKER
from core.secrets import redact_tree
from pipelines.clips import columns as C
from pipelines.clips import outputs
from pipelines.clips.config import ClipsConfig


def _failures(output: str, names: list[str]) -> list[dict[str, Any]]:
    rows = []
    for name in sorted(names):
        uri = storage.join(output, outputs.FAILURES, f"{name}.parquet")
        if storage.exists(uri):
            rows += storage.read_table(uri).to_pylist()
    return rows


def _identity_methods(output: str) -> dict[str, int]:
    uri = storage.join(output, outputs.CLIPS_TABLE)
    table = storage.read_table(uri, [C.IDENTITY_METHOD, C.METHOD]).to_pylist()
    return dict(Counter(r[C.IDENTITY_METHOD] for r in table if r[C.IDENTITY_METHOD]))


def write_manifest_and_card(
    cfg: ClipsConfig,
    where: dict[str, str],
    listed: list[str],
    markers: dict[str, dict[str, Any]],
    tables: dict[str, Any],
    run: dict[str, Any],
    resolved: Any = None,
) -> dict[str, Any]:
    output = where["output"]
    failures = _failures(output, listed)
    done = [markers[v] for v in listed if v in markers]
    counts = {
        "videos": len(listed),
        "finished": len(done),
        "failed": len(failures),
        "pending": len([v for v in listed if v not in markers]),
        **tables,
    }
    manifest = {
        "dataset": "clips (emer clips)",
        "written": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        **where,
        "counts": counts,
        "this_run": run,
        "failures": [{k: f[k] for k in ("name", "stage", "reason")} for f in failures],
        "identity_methods": _identity_methods(output),
        "asr_model": cfg.asr.model if cfg.transcribe else None,
        "config": to_plain(cfg),
    }
    saved = redact_tree(manifest)
    storage.write_text(storage.join(output, "manifest.json"), json.dumps(saved, indent=2, ensure_ascii=False))
    storage.write_text(storage.join(output, "config.yaml"), dump_yaml(resolved or cfg))
    storage.write_text(storage.join(output, "README.md"), render(saved, cfg))
    return manifest


def render(m: dict[str, Any], cfg: ClipsConfig) -> str:
    c = m["counts"]
    lines = [
        "# Clips cut from source videos",
        "",
        f"Written by `emer clips` ({m['written']}) from `{m['input']}`"
        + (f" with subtitles from `{m['subtitles']}`" if m["subtitles"] else "")
        + ". The clips and `subtitles.csv` are the input `emer annotate` takes.",
        "",
        "| what | count | where |",
        "| --- | ---: | --- |",
        f"| source videos | {c['videos']} | |",
        f"| finished | {c['finished']} | `_markers/` |",
        f"| failed | {c['failed']} | `failures/*.parquet` |",
        f"| not yet processed | {c['pending']} | |",
        f"| segments | {c['segments']} | `clips.parquet`, `segments/` |",
        f"| clips kept | {c['clips']} | `clips/`, `subtitles.csv` |",
        "",
        "Segments removed, by filter: "
        + (", ".join(f"{k} {v}" for k, v in c["removed_by_stage"].items()) or "none")
        + f" (duration bounds {cfg.min_duration_s:g}-{cfg.max_duration_s:g} s).",
        "",
    ]
    if m["failures"]:
        lines += ["## Failed videos", "", "| video | stage | reason |", "| --- | --- | --- |"]
        lines += [f"| {f['name']} | {f['stage']} | {_cell(f['reason'])} |" for f in m["failures"][:200]]
        lines.append("")
    return "\n".join(lines + _method(m, cfg))


def _method(m: dict[str, Any], cfg: ClipsConfig) -> list[str]:
    ids = m["identity_methods"]
    faces = (
        "same person judged by "
        + (", ".join(f"{k} ({v} segments)" for k, v in ids.items()) or "no segment reached it")
        + "; 'track' is face-track continuity between sampled frames (no face-embedding model configured)"
        if cfg.check_faces
        else "no face filter (clips.check_faces = false)"
    )
    cut = (
        "stream copy: each cut starts at the keyframe at or before its start time"
        if cfg.cut.copy
        else f"re-encoded ({cfg.cut.video_codec}/{cfg.cut.audio_codec}, crf {cfg.cut.crf}), frame-accurate"
    )
    asr = f"`{m['asr_model']}` ({cfg.asr.backend})" if m["asr_model"] else "off"
    if m["asr_model"] and (Path(cfg.asr.model).expanduser() / TINY_MARKER).is_file():
        asr += ", a tiny random-weight test model: its transcripts are gibberish"
    return [
        "## How the clips were made",
        "",
        "- Segmentation: by the subtitle file's timestamps where a video has one (SRT, ASS, VTT), else "
        f"Silero VAD (threshold {cfg.vad.threshold:g}) with speaker merging (resemblyzer GE2E, cosine "
        f">= {cfg.speakers.threshold:g}, pauses <= {cfg.speakers.max_gap_s:g} s).",
        f"- Faces: {cfg.faces.frames} sampled frames per segment; {faces}.",
        f"- Cut: {cut}; names `<video>_<start_ms>_<end_ms>.mp4`.",
        f"- ASR for clips without a subtitle line: {asr}; the transcript fills `chinese` or `english` "
        "by script (CJK characters: chinese).",
        "",
    ]


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")[:300]
