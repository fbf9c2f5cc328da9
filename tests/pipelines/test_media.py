"""Decode and checks on real generated clips (no Ray): frames, audio, metadata, every broken input."""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest

from core.config import ConfigError
from core.schema import SAMPLE_RATE, decode_audio, encode_audio
from pipelines import media
from pipelines.config import AnnotateConfig

CFG = AnnotateConfig()
EXPECTED = {  # broken sample -> (stage that catches it, words in the reason)
    "broken_empty": ("decode", "empty file"),
    "broken_truncated": ("decode", "cannot decode video"),
    "broken_random": ("decode", "cannot decode video"),
    "broken_noaudio": ("check", "no audio stream"),
    "broken_short": ("check", "too short"),
    "broken_long": ("check", "too long"),
}


def clip(sample_clips, name: str) -> str:
    return str(sample_clips.root / "clips" / f"{name}.mp4")


def decode_and_check(path: str, cfg: AnnotateConfig = CFG) -> tuple[str, str | None]:
    """(stage, reason) of the first step that refuses the clip, or ("ok", None)."""
    try:
        d = media.decode_clip(path, cfg)
    except media.Rejected as err:  # a check applied before decoding (DecodeStage reports it as "check")
        return "check", str(err)
    except media.MediaError as err:
        return "decode", str(err)
    row = {
        "duration_s": d.duration_s,
        "has_audio": d.audio is not None,
        "audio_s": d.audio_s,
        "faces": d.faces,
    }
    reason = media.check_clip(row, cfg)
    return ("check", reason) if reason else ("ok", None)


def test_good_clip_decodes_to_jpeg_frames_and_16k_audio(sample_clips):
    d = media.decode_clip(clip(sample_clips, sample_clips.clips[0]), CFG)
    assert len(d.frames) == CFG.frames
    for jpeg in d.frames:
        assert jpeg[:3] == b"\xff\xd8\xff"
        assert media.decode_jpeg(jpeg).shape == (CFG.frame_size, CFG.frame_size, 3)
    assert (d.width, d.height, d.fps) == (160, 128, 10.0)
    assert 2.0 <= d.duration_s <= 8.0
    assert d.audio is not None and d.audio.dtype == np.float32 and d.audio.ndim == 1
    assert abs(d.audio_s - d.duration_s) < 0.1
    assert 0.01 < float(np.abs(d.audio).max()) <= 1.0
    assert sum(len(f) for f in d.frames) < 200_000  # JPEG, not raw frames (8 x 150 KB)


def test_frames_are_spread_over_the_clip(sample_clips):
    frames, meta = media.decode_video(clip(sample_clips, sample_clips.clips[1]), 4, 64)
    assert frames.shape == (4, 64, 64, 3)
    idx = media.sample_indices(meta["num_video_frames"], 4)
    assert idx == sorted(set(idx)) and idx[0] < meta["num_video_frames"] / 4 < idx[1]
    assert not np.array_equal(frames[0], frames[-1])  # the subject moves


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_broken_input_has_its_reason(sample_clips, name):
    stage, words = EXPECTED[name]
    got_stage, reason = decode_and_check(clip(sample_clips, name))
    assert got_stage == stage and words in reason, (got_stage, reason)


def test_good_clips_pass(sample_clips):
    for name in sample_clips.clips:
        assert decode_and_check(clip(sample_clips, name)) == ("ok", None), name


def test_audio_backends_agree(sample_clips):
    path = clip(sample_clips, sample_clips.clips[2])
    _, a = media.probe_and_audio(path, "pyav")
    _, b = media.probe_and_audio(path, "ffmpeg")
    assert abs(len(a) - len(b)) <= 160
    n = min(len(a), len(b))
    assert np.abs(a[:n] - b[:n]).max() < 1e-3
    assert media.probe_and_audio(clip(sample_clips, "broken_noaudio"), "ffmpeg")[1] is None


def av_clip(path, video_s: float, audio_s: float, shortest: bool = True) -> str:
    """An H.264/AAC mp4 of ``video_s`` s of test pattern and ``audio_s`` s of tone, as ``ffmpeg
    -shortest`` makes it with libx264's default preset: its lookahead keeps the whole video."""
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size=64x48:rate=25:d={video_s}"]
    cmd += ["-f", "lavfi", "-i", f"sine=frequency=300:sample_rate=16000:d={audio_s}"]
    cmd += ["-c:v", "libx264", "-threads", "1", "-c:a", "aac", *(["-shortest"] if shortest else [])]
    subprocess.run([*cmd, str(path)], check=True, capture_output=True)
    return str(path)


def stream_seconds(path: str) -> dict[str, float]:
    """Stream type -> duration, as ffprobe reads the container."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_type,duration", "-of", "csv=p=0", path],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {kind: float(sec) for kind, sec in (line.split(",") for line in out.split())}


def test_a_shortest_clip_whose_audio_ends_early_is_kept_with_its_audio_padded(tmp_path):
    """Before: 'audio length 3.44 s does not match video 4.00 s', rejected."""
    path = av_clip(tmp_path / "short_audio.mp4", 4.0, 3.44)
    assert stream_seconds(path) == {"video": pytest.approx(4.0), "audio": pytest.approx(3.44)}
    d = media.decode_clip(path, CFG)
    assert d.duration_s == pytest.approx(4.0)
    assert d.audio_s == pytest.approx(3.44, abs=0.05)
    assert d.audio_shortfall_s == pytest.approx(0.56, abs=0.05)
    assert len(d.audio) == 4 * SAMPLE_RATE  # padded to the video's length
    assert not d.audio[-int(0.5 * SAMPLE_RATE) :].any() and np.abs(d.audio[: SAMPLE_RATE // 2]).max() > 0.1
    assert decode_and_check(path) == ("ok", None)


def test_audio_under_half_the_video_is_rejected_naming_both_lengths(tmp_path):
    path = av_clip(tmp_path / "cut_audio.mp4", 4.0, 1.5, shortest=False)
    assert stream_seconds(path) == {"video": pytest.approx(4.0), "audio": pytest.approx(1.5)}
    stage, reason = decode_and_check(path)
    assert stage == "check", reason
    assert re.search(r"audio length 1\.[45]\d s covers under 50% of video 4\.00 s", reason), reason
    assert "annotate.av_min_audio_fraction" in reason


def test_flac_round_trip():
    t = np.arange(16000 * 2) / 16000
    audio = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    data = encode_audio(audio)
    back = decode_audio(data)
    assert len(data) < audio.nbytes / 2
    assert back.shape == audio.shape and np.abs(back - audio).max() < 2 / 32768


def test_check_rules():
    ok = {"duration_s": 5.0, "has_audio": True, "audio_s": 5.05, "faces": None}
    assert media.check_clip(ok, CFG) is None
    assert "too short" in media.check_clip({**ok, "duration_s": 1.99, "audio_s": 1.99}, CFG)
    assert "too long" in media.check_clip({**ok, "duration_s": 16.5, "audio_s": 16.5}, CFG)
    assert "no audio" in media.check_clip({**ok, "has_audio": False}, CFG)
    assert media.check_clip({**ok, "has_audio": False}, CFG.replace(require_audio=False)) is None
    assert media.check_clip({**ok, "audio_s": 5.45}, CFG) is None  # within max(0.5 s, 10 %)
    assert "is longer than video 5.00 s" in media.check_clip({**ok, "audio_s": 5.6}, CFG)
    assert media.check_clip({**ok, "duration_s": 12.0, "audio_s": 13.1}, CFG) is None  # 10 % of 12 s
    assert "is longer than video" in media.check_clip({**ok, "duration_s": 12.0, "audio_s": 13.3}, CFG)
    # shorter audio is padded in decode: only under av_min_audio_fraction of the video is rejected
    assert media.check_clip({**ok, "audio_s": 4.2}, CFG) is None
    assert media.check_clip({**ok, "audio_s": 2.5}, CFG) is None
    assert "covers under 50% of video 5.00 s" in media.check_clip({**ok, "audio_s": 2.49}, CFG)
    strict = CFG.replace(av_min_audio_fraction=0.9)
    assert "audio length 4.20 s covers under 90%" in media.check_clip({**ok, "audio_s": 4.2}, strict)
    faces = CFG.replace(face_check=True)
    assert media.check_clip({**ok, "faces": [1, 1, 0, 2]}, faces) is None
    assert "face check" in media.check_clip({**ok, "faces": [1, 0, 0, 2]}, faces)


def test_pad_audio_and_the_fraction_is_validated():
    tone = np.full(SAMPLE_RATE, 0.5, np.float32)
    padded, added = media.pad_audio(tone, 1.5)
    assert len(padded) == 24000 and added == 0.5 and not padded[SAMPLE_RATE:].any()
    same, added = media.pad_audio(tone, 0.5)
    assert same is tone and added == 0.0  # longer than the video: left as it is
    assert media.pad_audio(None, 2.0) == (None, 0.0)
    with pytest.raises(ConfigError, match=r"annotate.av_min_audio_fraction = 1.5"):
        CFG.replace(av_min_audio_fraction=1.5)


def test_face_counter_finds_one_real_face():
    from matplotlib import cbook
    from PIL import Image

    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as img:
        photo = np.asarray(img.convert("RGB").resize((224, 224)))
    counter = media.FaceCounter()
    assert counter.count(photo) == 1
    assert counter.count(np.full((224, 224, 3), 128, np.uint8)) == 0


def test_face_check_runs_in_decode(sample_clips):
    cfg = CFG.replace(face_check=True)
    d = media.decode_clip(clip(sample_clips, sample_clips.clips[0]), cfg, media.FaceCounter())
    assert d.faces is not None and len(d.faces) == cfg.frames
    assert all(isinstance(c, int) and c >= 0 for c in d.faces)
