"""One real ``emer clips`` run (local Ray, real MTCNN, Silero VAD, resemblyzer, tiny Whisper) over a
folder that mixes good source videos with every kind of bad input: each bad input is one recorded
failure naming its file and reason, the good videos give their clips, a rerun redoes nothing, and
the output (on S3, moto) feeds ``emer annotate`` unchanged."""

from __future__ import annotations

import csv
import io
import shutil

import pytest
from clips_helpers import SRT, make_video, speech_wav

from core import storage
from core.config import ConfigError
from core.failures import RunFailed
from core.llm.tiny import MARKER
from core.llm.tiny_whisper import build_tiny_whisper
from emer.models import models_dir
from pipelines.annotate import run_annotation
from pipelines.clips.config import ClipsConfig
from pipelines.clips.job import check_outcome, run_clips
from pipelines.config import AnnotateConfig

PAST_END = "1\n00:00:05,000 --> 00:00:07,000\nlate\n\n2\n00:00:06,000 --> 00:00:06,000\nzero\n"
BAD = {  # video -> (stage, words in the reason)
    "bad_decode": ("source", "does not decode"),
    "bad_empty": ("source", "empty file (0 bytes)"),
    "bad_subs": ("subtitles", "not SRT, ASS or WebVTT"),
    "bad_past_end": ("subtitles", "no usable line (2 dropped)"),
    "bad_noaudio": ("vad", "the VAD path is impossible"),
    "bad_noface": ("filter", "no clip kept of 2 segment(s) (faces 2); e.g. no face in any sampled frame"),
}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """The source folder: 3 good videos (SRT, VTT beside it, none: VAD) and the bad ones."""
    root = tmp_path_factory.mktemp("clips_src")
    videos, subs = root / "videos", root / "subs"
    videos.mkdir(), subs.mkdir()
    make_video(videos / "ep_srt.mp4", 8.0)
    (subs / "ep_srt.srt").write_text(SRT + "\n3\n00:00:07,000 --> 00:00:07,800\ntoo short\n")
    make_video(videos / "ep_vad.mp4", 12.0, audio=speech_wav(root / "speech.wav"))
    (videos / "bad_decode.mp4").write_bytes(bytes(range(256)) * 400)
    (videos / "bad_empty.mp4").write_bytes(b"")
    shutil.copy(videos / "ep_srt.mp4", videos / "bad_subs.mp4")
    (subs / "bad_subs.srt").write_text("this is not\na subtitle file\n")
    make_video(videos / "bad_past_end.mp4", 4.0)
    (videos / "bad_past_end.srt").write_text(PAST_END)  # beside the video
    make_video(videos / "bad_noaudio.mp4", 4.0, audio=None)
    make_video(videos / "bad_noface.mp4", 8.0, picture="gray")
    (subs / "bad_noface.srt").write_text(SRT)
    return videos, subs


@pytest.fixture(scope="module")
def whisper(tmp_path_factory) -> str:
    """The models cache's tiny Whisper (``emer models prepare``) where built, else a fresh one."""
    cached = models_dir() / "tiny-whisper"
    if (cached / MARKER).is_file():
        return str(cached)
    return build_tiny_whisper(tmp_path_factory.mktemp("asr") / "tiny-whisper")


def config(model: str) -> ClipsConfig:
    return ClipsConfig.from_dict(
        {
            "faces": {"frames": 4},
            "max_failure_fraction": 1.0,
            "asr": {"model": model, "max_new_tokens": 6, "min_new_tokens": 2},
            "stages": {"decode": {"actors": 1}, "asr": {"num_cpus": 0.5}},
        }
    )


@pytest.fixture(scope="module")
def clips_run(ray_local, s3, sources, whisper):
    """One clips run: local source videos, the output on S3 (moto)."""
    videos, subs = sources
    cfg, out = config(whisper), s3.uri("clips-run")
    return cfg, out, run_clips(cfg, str(videos), out, str(subs))


def test_clips_run_records_every_bad_video_and_keeps_the_good_ones(clips_run, sources):
    cfg, out, m = clips_run
    videos = sources[0]
    failures = {f["name"]: f for f in m["failures"]}
    assert set(failures) == set(BAD)
    for name, (stage, words) in BAD.items():
        f = failures[name]
        assert f["stage"] == stage and words in f["reason"] and f"{videos}/{name}.mp4" in f["reason"], f
    table = {r["name"]: r for r in storage.read_table(f"{out}/clips.parquet").to_pylist()}
    kept = sorted(n for n, r in table.items() if r["outcome"] == "ok")
    assert kept[:2] == ["ep_srt_1000_3500", "ep_srt_4200_6700"]
    short = table["ep_srt_7000_7800"]
    assert (short["outcome"], short["stage"]) == ("rejected", "duration")
    assert short["reason"] == "duration 0.80 s: under clips.min_duration_s = 2"
    srt = table["ep_srt_4200_6700"]
    assert (srt["method"], srt["chinese"], srt["english"], srt["asr_model"]) == (
        "subtitle",
        "我很好，谢谢。",
        "",
        None,
    )
    assert srt["faces_per_frame"] == [1, 1, 1, 1] and srt["one_face_fraction"] == 1.0
    vad = [table[n] for n in kept if n.startswith("ep_vad_")]
    assert len(vad) == 1 and vad[0]["method"] == "vad" and vad[0]["asr_model"] == cfg.asr.model
    assert vad[0]["text"] and (vad[0]["english"] or vad[0]["chinese"])  # tiny Whisper's gibberish
    assert vad[0]["speaker_similarity"] is not None and 3.0 < vad[0]["duration_s"] < 11.0
    rows = list(csv.DictReader(io.StringIO(storage.read_text(f"{out}/subtitles.csv"))))
    assert [r["name"] for r in rows] == kept
    clips = storage.list_files(f"{out}/clips")
    assert [c.rsplit("/", 1)[1] for c in clips] == [f"{k}.mp4" for k in kept]  # no temp, no failed clip
    assert m["counts"]["clips"] == len(kept) == 3 and m["this_run"]["failed"] == len(BAD)
    steps = m["this_run"]["step_seconds"]  # measured inside the stages, summed over the videos
    assert all(steps[k] > 0 for k in ("source", "vad", "speakers", "faces", "cut", "asr")), steps
    assert sum(r["seconds_cut"] or 0 for r in table.values()) == pytest.approx(steps["cut"], abs=0.01)
    card = storage.read_text(f"{out}/README.md")
    assert "| failed | 6 |" in card and "bad_noface" in card


def test_a_rerun_redoes_nothing_finished(clips_run, sources):
    cfg, out, _ = clips_run
    again = run_clips(cfg, str(sources[0]), out, str(sources[1]))
    assert again["this_run"]["attempted"] == 0 and again["this_run"]["skipped_finished"] == 8
    assert again["counts"]["clips"] == 3 and len(again["failures"]) == len(BAD)


def test_clips_output_feeds_annotate_unchanged(clips_run, tmp_path):
    _, out, m = clips_run
    cfg = AnnotateConfig.from_dict({"stop_after": "check", "stages": {"decode": {"actors": 1}}})
    done = run_annotation(cfg, f"{out}/clips", f"{out}/subtitles.csv", str(tmp_path / "annotated"))
    assert done["counts"]["ok"] == m["counts"]["clips"] == 3
    samples = storage.read_table(str(tmp_path / "annotated" / "samples")).to_pylist()
    zh = {r["name"]: r["subtitle_zh"] for r in samples}
    assert zh["ep_srt_4200_6700"] == "我很好，谢谢。"


def test_every_video_failing_exits_non_zero_and_an_empty_prefix_names_itself(s3, emer, tmp_path):
    cfg = ClipsConfig()
    manifest = {"this_run": {"attempted": 3, "failed": 3, "listing_failed": 0}, "counts": {"clips": 0}}
    with pytest.raises(RunFailed, match="3 of 3 videos failed"):
        check_outcome(cfg, manifest)
    rc, _, err = emer("clips", "--input", s3.uri("nothing-here"), "--output", tmp_path)
    assert rc == 2 and f"--input {s3.uri('nothing-here')}: no video found" in err  # before Ray starts
    with pytest.raises(ConfigError, match="clips.max_duration_s"):
        ClipsConfig(min_duration_s=5, max_duration_s=4)
