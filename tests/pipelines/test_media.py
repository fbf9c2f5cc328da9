"""Decode and checks on real generated clips (no Ray): frames, audio, metadata, every broken input."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from core.schema import decode_audio, encode_audio
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


def test_audio_shorter_than_video_is_caught(sample_clips, tmp_path):
    """A file whose audio ends long before its video (as damaged files decode) is rejected."""
    src, out = clip(sample_clips, sample_clips.clips[0]), str(tmp_path / "cut_audio.mp4")
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-i",
            src,
            "-map",
            "0:v",
            "-map",
            "0:a",
            "-c:v",
            "copy",
            "-af",
            "atrim=0:1",
            "-c:a",
            "aac",
            out,
        ],
        check=True,
    )
    stage, reason = decode_and_check(out)
    assert stage == "check" and "does not match video" in reason


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
    assert "does not match" in media.check_clip({**ok, "audio_s": 4.2}, CFG)
    assert media.check_clip({**ok, "duration_s": 12.0, "audio_s": 11.0}, CFG) is None  # 10 % of 12 s
    faces = CFG.replace(face_check=True)
    assert media.check_clip({**ok, "faces": [1, 1, 0, 2]}, faces) is None
    assert "face check" in media.check_clip({**ok, "faces": [1, 0, 0, 2]}, faces)


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
