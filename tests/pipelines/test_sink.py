"""Shards, markers, reconcile (orphans, superseded failures) and the dataset card, without Ray."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from core import storage
from pipelines import card, sink
from pipelines.config import AnnotateConfig

CFG = AnnotateConfig(stop_after="check", store_media=False)
COLS = sink.sample_columns(CFG)


def row(name: str, outcome: str = "ok", **extra) -> dict:
    base = {
        "name": name,
        "clip": f"/clips/{name}.mp4",
        "subtitle_en": "hi",
        "subtitle_zh": "你好",
        "subtitle_missing": False,
        "duration_s": 3.0,
        "fps": 10.0,
        "width": 4,
        "height": 4,
        "num_video_frames": 30,
        "audio_s": 3.0,
        "outcome": outcome,
    }
    if outcome != "ok":
        base.update(stage="decode", reason=f"{name} is broken")
    return {**base, **extra}


def names_in(out, kind: str) -> list[str]:
    files = storage.list_files(storage.join(str(out), kind), suffixes=[".parquet"])
    return sorted(n for f in files for n in pq.read_table(f, columns=["name"])["name"].to_pylist())


def test_shard_names_are_deterministic_and_marker_lists_outcomes(tmp_path):
    rows = [row("b"), row("a"), row("c", "failed")]
    summary = sink.write_shard(str(tmp_path), rows, COLS)
    sid = sink.shard_id(["a", "b", "c"])
    assert sid == sink.shard_id(["c", "b", "a"]) != sink.shard_id(["a", "b"])
    assert summary.column_names == list(sink.SUMMARY_COLUMNS) and summary.num_rows == 3
    assert set(summary["shard"].to_pylist()) == {sid}
    marker = json.loads((tmp_path / "_markers" / f"part-{sid}.json").read_text())
    assert (marker["ok"], marker["failed"], marker["rejected"]) == (["a", "b"], ["c"], [])
    fails = pq.read_table(tmp_path / "failures" / f"part-{sid}.parquet").to_pylist()
    assert fails == [
        {"name": "c", "stage": "decode", "reason": "c is broken", "outcome": "failed", "clip": "/clips/c.mp4"}
    ]
    assert pq.read_table(tmp_path / "samples" / f"part-{sid}.parquet").column_names == list(COLS)


def test_rewriting_a_batch_replaces_its_files(tmp_path):
    sink.write_shard(str(tmp_path), [row("a", "failed"), row("b", "failed")], COLS)
    sink.write_shard(str(tmp_path), [row("a"), row("b")], COLS)  # the same batch succeeds later
    assert names_in(tmp_path, "samples") == ["a", "b"] and names_in(tmp_path, "failures") == []


def test_reconcile_removes_orphans_and_superseded_failures(tmp_path):
    out = str(tmp_path)
    sink.write_shard(out, [row("a"), row("b", "failed"), row("c", "rejected")], COLS)
    sink.write_shard(out, [row("b")], COLS)  # --retry-failed: b succeeded in a new shard
    sink.write_shard(out, [row("c", "failed")], COLS)  # c failed again, later
    orphan = tmp_path / "samples" / "part-0123456789abcdef0123.parquet"  # killed before its marker
    orphan.write_bytes((tmp_path / "samples" / f"part-{sink.shard_id(['b'])}.parquet").read_bytes())
    state = sink.reconcile(out)
    assert state.orphans_removed == 1 and not orphan.exists()
    assert state.outcome == {"a": "ok", "b": "ok", "c": "failed"}
    assert state.superseded == 2
    assert names_in(tmp_path, "samples") == ["a", "b"] and names_in(tmp_path, "failures") == ["c"]
    markers = sink.load_markers(out)
    assert sorted(n for m in markers.values() for o in sink.OUTCOMES for n in m[o]) == ["a", "b", "c"]
    assert sink.reconcile(out).outcome == state.outcome  # idempotent


def test_reconcile_removes_temp_files_of_interrupted_writes(tmp_path):
    import os
    import time

    out = str(tmp_path)
    sink.write_shard(out, [row("a")], COLS)
    shard = tmp_path / "samples" / f"part-{sink.shard_id(['a'])}.parquet"
    old = tmp_path / "samples" / (shard.name + ".tmp-0123abcd")  # a writer killed before its rename
    old.write_bytes(shard.read_bytes())
    fresh = tmp_path / "_markers" / "part-x.json.tmp-89abcdef"
    fresh.write_bytes(b"{")
    os.utime(old, (time.time() - 2 * sink.STALE_TEMP_S, time.time() - 2 * sink.STALE_TEMP_S))
    state = sink.reconcile(out)  # after a run: only old ones (a live write may still hold the rest)
    assert state.temps_removed == 1 and not old.exists() and fresh.exists()
    assert state.outcome == {"a": "ok"}
    assert sink.reconcile(out, temp_age_s=0).temps_removed == 1 and not fresh.exists()
    assert names_in(tmp_path, "samples") == ["a"]


def test_ok_is_final_even_if_a_later_marker_says_failed(tmp_path):
    out = str(tmp_path)
    sink.write_shard(out, [row("a")], COLS)
    sink.write_shard(out, [row("a", "failed"), row("z", "failed")], COLS)
    assert sink.reconcile(out).outcome == {"a": "ok", "z": "failed"}
    assert names_in(tmp_path, "failures") == ["z"]


def test_label_stats_and_card():
    samples = [{"ov_labels": ["happy", "excited"]}, {"ov_labels": ["happy"]}, {"ov_labels": []}]
    stats = card.label_stats(samples)
    assert stats["vocabulary"] == 2 and stats["labels_per_sample"] == 1.0
    assert stats["most_frequent"][0] == ("happy", 2) and stats["samples_without_labels"] == 1
    png = card._plot(stats)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    manifest = {
        "written": "now",
        "input": "in",
        "subtitles": "subs.csv",
        "models": {"text": "t:m"},
        "counts": {"inputs": 4, "ok": 3, "rejected": 1, "failed": 0, "pending": 0},
        "failures_by_stage": {"rejected:check": 1},
        "labels": stats,
        "subtitles_info": {
            "language_in_prompts": "english",
            "clips_without_subtitle": 1,
            "subtitles_without_clip": 2,
        },
    }
    text = card.render_card(manifest, True)
    for part in (
        "| annotated | 3 |",
        "label vocabulary: 2",
        "| happy | 2 |",
        "label_distribution.png",
        "rejected:check 1",
        "1 clip(s) had no subtitle row",
        "2 subtitle row(s) had no clip",
    ):
        assert part in text, part
    assert card._cell("a|b<script>") == "a\\|b&lt;script>"
