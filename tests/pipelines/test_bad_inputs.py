"""One real annotation run (tiny models, local Ray) over a folder that mixes good clips with every kind
of bad input; each bad input must end up once in failures/ with its reason, every good clip in samples/."""

from __future__ import annotations

import csv
import shutil
import subprocess

import pytest
from annotate_helpers import check_every_name_once, tiny_config

from pipelines.annotate import run_annotation

CAP = 2 * 2**20  # annotate.max_clip_bytes for this run: every sample clip is far smaller

GOOD = {  # name -> sample clip it copies
    "good_a": "sample_00000000",
    "good_b": "sample_00000001",
    "x.tmp-1": "sample_00000002",  # looks like a temp file of ours: still an input
    "good_nosub": "sample_00000003",  # no subtitle row: kept, subtitle_missing (subtitles are optional)
}

BAD = {  # name -> (how it is made, stage, outcome, words in the reason)
    "bad_empty": ("empty", "decode", "failed", "empty file (0 bytes)"),
    "bad_random": ("random", "decode", "failed", "cannot decode video"),
    "bad_truncated": ("broken_truncated", "decode", "failed", "cannot decode video"),
    "bad_noaudio": ("broken_noaudio", "check", "rejected", "no audio stream"),
    "bad_short": ("broken_short", "check", "rejected", "too short"),
    "bad_long": ("broken_long", "check", "rejected", "before decoding"),
    "bad_long_audio": ("long_audio", "check", "rejected", "does not match video"),
    "bad_big": ("big", "decode", "failed", f"over annotate.max_clip_bytes = {CAP}"),
    "bad_hang": ("sample_00000004", "decode", "failed", "decode timed out after 4 s"),
    "bad id": ("sample_00000005", "list", "failed", "unsafe sample id 'bad id'"),
}


def make_input(kind: str, dest, sample_clips) -> None:
    if kind == "empty":
        dest.write_bytes(b"")
    elif kind == "random":
        dest.write_bytes(bytes(range(256)) * 400)
    elif kind == "big":
        with open(dest, "wb") as f:
            f.truncate(CAP + 1)
    elif kind == "long_audio":  # 4 s of video, 60 s of audio
        cmd = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=4"]
        cmd += ["-f", "lavfi", "-i", "sine=sample_rate=16000:duration=60", "-c:v", "libx264"]
        cmd += ["-preset", "ultrafast", "-threads", "1", "-c:a", "aac", str(dest)]
        subprocess.run(cmd, check=True, capture_output=True)
    else:
        shutil.copyfile(sample_clips.root / "clips" / f"{kind}.mp4", dest)


@pytest.mark.timeout(300)
def test_one_run_over_mixed_good_and_bad_inputs(s3, ray_local, sample_clips, tmp_path, monkeypatch):
    clips = tmp_path / "clips"
    clips.mkdir()
    for name, source in GOOD.items():
        shutil.copyfile(sample_clips.root / "clips" / f"{source}.mp4", clips / f"{name}.mp4")
    for name, (kind, *_) in BAD.items():
        make_input(kind, clips / f"{name}.mp4", sample_clips)
    subs = tmp_path / "subtitles.csv"
    with open(subs, "w", newline="", encoding="utf-8") as f:
        rows = [(n, "你好", "hello") for n in [*GOOD, *BAD] if n != "good_nosub"]
        csv.writer(f).writerows([("name", "chinese", "english"), *rows])
    monkeypatch.setenv("EMER_DEBUG_HANG_ON", "bad_hang")  # reaches the workers as a pass-through variable
    cfg = tiny_config(max_clip_bytes=CAP, decode_timeout_s=4.0)
    out = str(tmp_path / "out")

    manifest = run_annotation(cfg, str(clips), str(subs), out)

    samples, failures = check_every_name_once(out, [*GOOD, *BAD])
    assert sorted(samples) == sorted(GOOD)
    problems = []
    for name, (_, stage, outcome, words) in BAD.items():
        got = failures[name]
        if (got["stage"], got["outcome"]) != (stage, outcome) or words not in got["reason"]:
            problems.append((name, got["stage"], got["outcome"], got["reason"]))
    assert not problems, problems
    assert samples["good_nosub"]["subtitle_missing"] and not samples["good_a"]["subtitle_missing"]
    assert all(len(r["frames"]) == 8 and r["description_en"] for r in samples.values())
    assert manifest["counts"]["ok"] == len(GOOD) and manifest["counts"]["pending"] == 0
