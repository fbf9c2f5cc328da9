"""Cutting with ffmpeg: SRT, ASS and VTT timestamps give the subtitle's clips to the frame (re-encoded),
the stream-copy option writes a clip, a finished clip is not cut again, and nothing half-written
is left behind when ffmpeg fails."""

from __future__ import annotations

import os

import pytest
from clips_helpers import FPS, SRT, VTT, ass_text, gray_means, make_video

from pipelines.clips.cut import CutError, Encoding, clip_name, cut_clip
from pipelines.clips.segment import parse_subtitles


@pytest.fixture(scope="module")
def counter_video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("cut") / "counter.mp4", 8.0, picture="counter")


def test_subtitle_clips_are_cut_to_the_frame(counter_video, tmp_path):
    source = gray_means(counter_video)
    for fmt, text in (("srt", SRT), ("ass", ass_text()), ("vtt", VTT)):
        segments, dropped = parse_subtitles(text, 8.0)
        assert len(segments) == 2 and not dropped
        for seg in segments:
            dest = tmp_path / fmt / f"{clip_name('counter', seg.start, seg.end)}.mp4"
            assert cut_clip(str(counter_video), seg.start, seg.end, str(dest))
            got = gray_means(dest)
            first, frames = round(seg.start * FPS), round(seg.end * FPS) - round(seg.start * FPS)
            assert len(got) == frames, (fmt, seg)
            # each clip frame is the source frame at its time (brightness = 2.5 x frame index)
            want = source[first : first + frames]
            assert abs(got - want).max() < 1.0, (fmt, seg, got[:3], want[:3])
    assert sorted(os.listdir(tmp_path / "srt")) == ["counter_1000_3500.mp4", "counter_4200_6700.mp4"]


def test_stream_copy_writes_a_clip_and_an_existing_clip_is_not_cut_again(counter_video, tmp_path):
    dest = tmp_path / "copy.mp4"
    assert cut_clip(str(counter_video), 2.5, 5.0, str(dest), Encoding(copy=True))
    assert 20 <= len(gray_means(dest)) <= 30  # 2.5 s; the packets start at the keyframe before 2.5 s
    assert not cut_clip(str(counter_video), 2.5, 5.0, str(dest), Encoding(copy=True))  # already there


def test_a_failed_cut_leaves_no_file(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 100)
    with pytest.raises(CutError, match="ffmpeg failed"):
        cut_clip(str(bad), 0.0, 2.0, str(tmp_path / "out" / "x.mp4"))
    assert os.listdir(tmp_path / "out") == []
