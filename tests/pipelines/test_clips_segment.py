"""Subtitle parsing for the clips job: SRT, ASS and VTT give the same segments; bad lines are dropped
with their reasons; a file that does not parse is an error naming it."""

from __future__ import annotations

import pytest
from clips_helpers import SRT, VTT, ass_text

from pipelines.clips.segment import (
    Segment,
    SubtitleError,
    language_of,
    parse_subtitles,
    segments_from_subtitles,
)


def test_srt_ass_and_vtt_give_the_same_segments_with_text_and_language():
    want = [
        Segment(1.0, 3.5, "subtitle", "Hello there, how are you?", "en"),
        Segment(4.2, 6.7, "subtitle", "我很好，谢谢。", "zh"),
    ]
    for text in (SRT, ass_text(), VTT):
        assert segments_from_subtitles(text, 10.0) == want


def test_bad_lines_are_dropped_with_reasons_and_a_line_past_the_end_is_cut():
    srt = "".join(
        f"{i}\n00:00:{a},000 --> 00:00:{b},000\n{t}\n\n"
        for i, (a, b, t) in enumerate(
            [
                ("01", "03", "fine"),
                ("04", "04", "zero"),
                ("05", "07", "A"),
                ("06", "08", "B"),
                ("09", "10", " "),
                ("11", "14", "runs past the end"),
                ("13", "15", "starts past"),
            ],
            start=1,
        )
    )
    segments, dropped = parse_subtitles(srt, 12.5, label="x.srt")
    assert [(s.start, s.end, s.text) for s in segments] == [
        (1.0, 3.0, "fine"),
        (11.0, 12.5, "runs past the end"),
    ]
    reasons = {d.line: d.reason for d in dropped}
    assert reasons[2] == "zero-length line (4.000 s to 4.000 s)"
    assert reasons[3].startswith("overlaps line 4") and reasons[4].startswith("overlaps line 3")
    assert reasons[5] == "line has no text"
    assert reasons[7] == "line starts at 13.000 s, at or past the video's end (12.500 s)"


@pytest.mark.parametrize("text", ["this is not a subtitle file\nat all\n", "1\nnot a time\nhello\n"])
def test_a_file_that_does_not_parse_is_an_error_naming_it(text):
    with pytest.raises(SubtitleError, match=r"subtitles broken\.srt: "):
        parse_subtitles(text, 10.0, label="broken.srt")


def test_language_by_script():
    assert [language_of(t) for t in ("你好 hello", "hello", "  ", "¿qué?")] == ["zh", "en", "", "en"]
