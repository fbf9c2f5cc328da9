"""The clips phase of ``emer demo`` on the real long episodes (Silero VAD, resemblyzer, MTCNN, the
demo preset's clips settings, a tiny Whisper for the VAD clips): its line's counts are the clips
job's own (manifest and clip table) and match what the episodes' script says each line should meet;
the episode clips then reach EMER-Coarse next to the sample clips through one annotation input."""

from __future__ import annotations

import json
import os
import re

import pytest

from core import storage
from core.llm.tiny import MARKER
from core.llm.tiny_whisper import build_tiny_whisper
from emer.demo import annotate_line
from emer.demo_clips import annotation_input, removal_label, run_clips_phase
from emer.models import models_dir
from emer.runconfig import load_run_config
from pipelines.annotate import run_annotation
from pipelines.samples import generate_samples


@pytest.fixture(scope="module")
def phase(ray_local, episodes, tmp_path_factory):
    """One clips phase over the session's episodes (what ``emer samples`` and the demo write)."""
    root = tmp_path_factory.mktemp("demo-clips")
    folder = episodes[0].video.parent
    whisper = models_dir() / "tiny-whisper"
    if not (whisper / MARKER).is_file():
        whisper = build_tiny_whisper(root / "tiny-whisper")
    cfg = load_run_config(
        "demo",
        [f"clips.asr.model={whisper}", "clips.asr.max_new_tokens=6", "clips.stages.asr.num_cpus=0.5"],
    )
    return root, folder, run_clips_phase(cfg, str(folder), str(root / "clips"))


def test_the_clips_line_counts_what_the_clips_job_removed(phase):
    root, episodes, got = phase
    m, c = got["manifest"], got["manifest"]["counts"]
    head, removed_text = re.fullmatch(r"(\d+ episodes -> \d+ clips); removed: (.*)", got["line"]).groups()
    assert head == f"{c['videos']} episodes -> {c['clips']} clips" and c["failed"] == 0 and not m["failures"]
    line_counts = {what: int(n) for n, what in (p.split(" ", 1) for p in removed_text.split(", "))}
    assert line_counts == got["removed"] and sum(line_counts.values()) == c["segments"] - c["clips"]
    by_stage = c["removed_by_stage"]
    assert line_counts.get("too short", 0) + line_counts.get("too long", 0) == by_stage.get("duration", 0)
    faces = sum(line_counts.get(k, 0) for k in ("not one face", "no face", "different people"))
    assert faces == by_stage.get("faces", 0)
    script = json.loads((episodes / "episodes.json").read_text())["episodes"]
    expects = [u["expect"] for e in script for u in e["utterances"]]
    assert c["clips"] == expects.count("kept") == len(got["names"]) == 5
    wanted = {k: expects.count(k) for k in ("too short", "not one face", "no face", "different people")}
    assert line_counts == wanted  # 2 too short, 1 not one face, 2 no face, 1 different people
    assert removal_label("duration", "duration 17.00 s: over clips.max_duration_s = 16") == "too long"
    for key in ("clips", "clip table", "clips card"):
        assert storage.exists(got["outputs"][key]), key


def test_episode_clips_reach_emer_coarse_beside_the_sample_clips(phase):
    root, _, got = phase
    samples = generate_samples(root / "samples", n=2, seed=0, broken=False)
    dest = root / "annotate-input"
    (dest / "clips").mkdir(parents=True)
    (dest / "clips" / "stale_clip.mp4").write_bytes(b"from an earlier run")
    own = (str(samples.root / "clips"), str(samples.subtitles))
    clips_dir, subtitles = annotation_input(str(dest), [own, (got["outputs"]["clips"], got["subtitles"])])
    linked = sorted(os.listdir(clips_dir))
    assert linked == sorted([f"{n}.mp4" for n in samples.clips + got["names"]])  # the stale file is gone
    first = got["names"][0]
    assert os.path.samefile(f"{clips_dir}/{first}.mp4", f"{got['outputs']['clips']}/{first}.mp4")

    cfg = load_run_config("demo", ["annotate.stop_after=check", "annotate.stages.decode.actors=1"]).annotate
    coarse = str(root / "emer-coarse")
    manifest = run_annotation(cfg, clips_dir, subtitles, coarse)
    rows = {r["name"]: r for r in storage.read_table(f"{coarse}/samples").to_pylist()}
    assert set(got["names"]) <= set(rows) and set(samples.clips) <= set(rows)
    srt = [n for n in got["names"] if n.startswith("episode_srt_")]
    assert rows[srt[0]]["subtitle_en"] == "Good morning, everyone, and welcome back to the show."
    line = annotate_line(manifest["counts"], f"{coarse}/samples", set(got["names"]))
    assert f"{manifest['counts']['ok']} samples (5 cut from the episodes)" in line
