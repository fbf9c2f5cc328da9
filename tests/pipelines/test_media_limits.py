"""Limits on what one clip may cost a decode worker: size cap before reading, duration probe before
decoding, audio decoded only up to the cap, streamed S3 copies, and a per-row decode timeout."""

from __future__ import annotations

import operator
import os
import re
import subprocess
import time

import pytest

from core import storage
from core.config import ConfigError
from pipelines import media
from pipelines.config import AnnotateConfig
from pipelines.stages import DecodeStage

CFG = AnnotateConfig()


def clip(sample_clips, name: str) -> str:
    return str(sample_clips.root / "clips" / f"{name}.mp4")


def lavfi_clip(path, video_s: float, audio_s: float) -> str:
    """A tiny H.264 + AAC mp4 with ``video_s`` of test pattern and ``audio_s`` of sine."""
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size=64x48:rate=10:d={video_s}"]
    cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=16000:d={audio_s}"]
    cmd += ["-c:v", "libx264", "-preset", "ultrafast", "-threads", "1", "-c:a", "aac", str(path)]
    subprocess.run(cmd, check=True, capture_output=True)
    return str(path)


def decode_rows(cfg: AnnotateConfig, rows: list[dict]) -> list[dict]:
    """``rows`` (name, clip) through a fresh DecodeStage, as one batch."""
    stage = DecodeStage(cfg)
    stage.run_rows(rows)
    return rows


def must_not_run(*_args, **_kwargs):
    raise AssertionError("decoding ran")


def test_oversized_local_clip_fails_before_it_is_read(tmp_path, monkeypatch):
    big = tmp_path / "huge.mp4"
    with open(big, "wb") as f:
        f.truncate(600 * 2**20)  # sparse: 600 MiB that take no disk
    [row] = decode_rows(CFG, [{"name": "huge", "clip": str(big)}])
    assert row["outcome"] == "failed" and row["stage"] == "decode", row
    reason = row["reason"]
    assert "629145600 bytes" in reason and "536870912" in reason and "annotate.max_clip_bytes" in reason
    assert str(big) in reason
    # in-process decoding, with decode_clip replaced: the size check refuses the clip before it
    monkeypatch.setattr(media, "decode_clip", must_not_run)
    [row] = decode_rows(CFG.replace(decode_timeout_s=0), [{"name": "huge", "clip": str(big)}])
    assert row["outcome"] == "failed" and "annotate.max_clip_bytes" in row["reason"], row


def test_too_long_clip_is_rejected_by_the_probe_before_decoding(tmp_path, monkeypatch):
    path = lavfi_clip(tmp_path / "long.mp4", 30, 30)
    monkeypatch.setattr(media, "_audio_pyav", must_not_run)
    monkeypatch.setattr(media, "_audio_ffmpeg", must_not_run)
    monkeypatch.setattr(media, "decode_video", must_not_run)
    with pytest.raises(media.MediaError, match=r"too long: 30\.\d\d s > max_duration_s 16\.0 s") as err:
        media.decode_clip(path, CFG)
    assert "before decoding" in str(err.value)
    [row] = decode_rows(CFG, [{"name": "long", "clip": path}])  # in the child: the real decoders
    assert row["outcome"] == "rejected" and row["stage"] == "check", row
    assert re.search(r"too long: 30\.\d\d s", row["reason"]), row


def test_without_container_duration_the_frame_count_rejects_before_audio(tmp_path, monkeypatch):
    path = lavfi_clip(tmp_path / "long.mp4", 30, 30)
    monkeypatch.setattr(media, "probe_duration", lambda _path: None)  # a container that says nothing
    monkeypatch.setattr(media, "_audio_pyav", must_not_run)
    with pytest.raises(media.MediaError, match=r"too long: 30\.\d\d s > max_duration_s"):
        media.decode_clip(path, CFG)


@pytest.mark.parametrize("backend", ["pyav", "ffmpeg"])
def test_audio_decoding_stops_at_the_cap(tmp_path, backend):
    path = lavfi_clip(tmp_path / "long_audio.mp4", 10, 60)  # the video stream says 10 s
    cap = CFG.max_duration_s + max(CFG.av_tolerance_s, CFG.av_tolerance_ratio * CFG.max_duration_s) + 1.0
    d = media.decode_clip(path, CFG.replace(audio_backend=backend))
    assert d.duration_s == pytest.approx(10.0, abs=0.2)
    assert cap - 0.1 <= d.audio_s <= cap + 0.1, d.audio_s
    row = {"duration_s": d.duration_s, "has_audio": True, "audio_s": d.audio_s, "faces": None}
    assert "is longer than video" in media.check_clip(row, CFG)


def test_s3_clip_is_streamed_and_capped(s3, sample_clips, monkeypatch):
    monkeypatch.setattr(storage, "read_bytes", must_not_run)  # never the whole object in memory
    good = s3.uri("limits/good.mp4")
    with open(clip(sample_clips, sample_clips.clips[0]), "rb") as f:
        storage.write_bytes(good, f.read())
    big = s3.uri("limits/big.mp4")
    storage.write_bytes(big, os.urandom(3 * 2**20))
    cfg = CFG.replace(max_clip_bytes=2**20)
    rows = decode_rows(cfg, [{"name": "good", "clip": good}, {"name": "big", "clip": big}])
    assert rows[0]["outcome"] == "ok" and len(rows[0]["frames"]) == CFG.frames, rows[0]
    assert rows[1]["outcome"] == "failed" and "3145728 bytes" in rows[1]["reason"], rows[1]
    assert "annotate.max_clip_bytes" in rows[1]["reason"] and big in rows[1]["reason"]
    # the reported size lies (10 bytes): the streamed copy stops soon after the cap
    chunk = 256 * 2**10
    monkeypatch.setattr(storage, "file_size", lambda _uri: 10)
    monkeypatch.setattr(storage, "COPY_CHUNK_BYTES", chunk)
    [row] = decode_rows(cfg, [{"name": "big", "clip": big}])
    assert row["outcome"] == "failed" and "annotate.max_clip_bytes" in row["reason"], row
    seen = int(re.search(r"after (\d+) bytes", row["reason"]).group(1))
    assert 2**20 < seen <= 2**20 + chunk < 3 * 2**20


def test_hung_decode_times_out_and_the_other_rows_decode(sample_clips, monkeypatch):
    names = sample_clips.clips[:3]
    monkeypatch.setenv("EMER_DEBUG_HANG_ON", names[1])
    cfg = CFG.replace(decode_timeout_s=3.0)
    start = time.monotonic()
    rows = decode_rows(cfg, [{"name": n, "clip": clip(sample_clips, n)} for n in names])
    elapsed = time.monotonic() - start
    assert rows[1]["outcome"] == "failed" and rows[1]["stage"] == "decode", rows[1]
    reason = rows[1]["reason"]
    assert "decode timed out after 3 s" in reason and "annotate.decode_timeout_s" in reason
    for r in (rows[0], rows[2]):  # before and after the hang: the worker was replaced
        assert r["outcome"] == "ok" and len(r["frames"]) == CFG.frames, r
    assert elapsed < 3.0 + 40, elapsed


def test_child_runner_times_out_recovers_and_reports_a_dead_child():
    from pipelines.decode_worker import ChildDied, ChildRunner, DecodeTimeout

    runner = ChildRunner(timeout_s=0.5)
    try:
        assert runner.run(operator.add, 1, 2) == 3
        # the decoders were imported before the first job: their import is not a clip's decode time
        assert runner.run(eval, "__import__('sys').modules.keys() >= {'av', 'decord', 'PIL.Image'}")
        first = runner.pid
        with pytest.raises(DecodeTimeout, match="timed out after 0.5 s"):
            runner.run(time.sleep, 30)
        assert runner.run(operator.add, 2, 2) == 4 and runner.pid != first  # a fresh child
        with pytest.raises(ChildDied, match="exit code 3"):
            runner.run(os._exit, 3)
        with pytest.raises(ZeroDivisionError):  # an error in the job comes back as itself
            runner.run(operator.truediv, 1, 0)
    finally:
        runner.close()
    assert runner.pid is None


def test_limit_knobs_are_validated():
    with pytest.raises(ConfigError) as err:
        CFG.replace(max_clip_bytes=0, decode_timeout_s=-1.0)
    problems = str(err.value)
    assert "annotate.max_clip_bytes = 0" in problems and "annotate.decode_timeout_s = -1.0" in problems
    with pytest.raises(ConfigError, match="debug_hang_on: unknown key"):  # fault injection: env only
        AnnotateConfig.from_dict({"debug_hang_on": ["x"]})
    assert CFG.max_clip_bytes == 512 * 2**20 and CFG.decode_timeout_s == 120.0
