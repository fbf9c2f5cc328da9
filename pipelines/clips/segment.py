"""A segment of a source video, the unit the clips job filters and cuts, and subtitle parsing.

``Segment`` is shared by both segmentation paths: subtitle timestamps (``method="subtitle"``, the
line's text and its language by script) and VAD with speaker merging (``method="vad"``, the merged
voice's ``speaker_similarity``). Times are seconds from the start of the source video.

``parse_subtitles`` reads SRT, ASS/SSA or WebVTT (``pysubs2``, format detected from the content) and
returns the usable lines as segments plus the lines it dropped, each with its reason: a line of zero
(or negative) length, one with no text, one that starts at or past the video's end (one that only
runs past it is cut at the end), and both lines of an overlapping pair (a clip of either would hold
the other's speech). A file that does not parse, or holds no line, is a ``SubtitleError`` naming it.
``segments_from_subtitles`` is the same without the dropped lines.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SUBTITLE_SUFFIXES = (".srt", ".ass", ".ssa", ".vtt")
CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef]")


@dataclass(frozen=True)
class Segment:
    """One stretch of speech in a source video, in seconds; ``text`` is empty until known."""

    start: float
    end: float
    method: str  # "subtitle" | "vad"
    text: str = ""
    language: str = ""  # "zh" | "en" | ""
    speaker_similarity: float | None = None

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.end - self.start


@dataclass(frozen=True)
class DroppedLine:
    """A subtitle line that gives no segment: its number (1-based), times and why."""

    line: int
    start: float
    end: float
    reason: str


class SubtitleError(ValueError):
    """A subtitle file that cannot be used at all (does not parse, holds no line)."""


def language_of(text: str) -> str:
    """``zh`` when the text holds CJK characters, ``en`` for other text, ``""`` for none."""
    if not text.strip():
        return ""
    return "zh" if CJK.search(text) else "en"


def _load(path_or_text: str | Path, label: str):
    import pysubs2

    text = path_or_text
    if isinstance(path_or_text, Path) or (
        "\n" not in str(path_or_text) and str(path_or_text).lower().endswith(SUBTITLE_SUFFIXES)
    ):
        text = Path(path_or_text).read_bytes().decode("utf-8-sig", errors="replace")
    try:
        subs = pysubs2.SSAFile.from_string(str(text))
    except (pysubs2.Pysubs2Error, ValueError, KeyError, IndexError) as err:
        raise SubtitleError(
            f"subtitles {label}: not SRT, ASS or WebVTT ({type(err).__name__}: {err}); fix or remove the file"
        ) from err
    lines = [e for e in subs if not e.is_comment and not e.is_drawing]
    if not lines:
        raise SubtitleError(f"subtitles {label}: no dialogue line found; fix or remove the file")
    return lines


def parse_subtitles(
    path_or_text: str | Path, video_duration_s: float, label: str = ""
) -> tuple[list[Segment], list[DroppedLine]]:
    """The usable lines of a subtitle file (or its text) as segments, and the dropped lines."""
    label = label or (str(path_or_text) if "\n" not in str(path_or_text) else "text")
    raw = []
    for i, event in enumerate(_load(path_or_text, label), start=1):
        start, end = event.start / 1000.0, event.end / 1000.0
        text = " ".join(event.plaintext.split())
        raw.append((i, start, end, text))
    dropped: list[DroppedLine] = []
    keep = []
    for i, start, end, text in raw:
        reason = _line_problem(start, end, text, video_duration_s)
        if reason:
            dropped.append(DroppedLine(i, start, end, reason))
        else:
            keep.append((i, start, min(end, video_duration_s), text))
    segments, overlap = [], _overlapping(keep)
    for i, start, end, text in keep:
        if i in overlap:
            dropped.append(DroppedLine(i, start, end, overlap[i]))
        else:
            segments.append(Segment(start, end, "subtitle", text, language_of(text)))
    dropped.sort(key=lambda d: d.line)
    return segments, dropped


def _line_problem(start: float, end: float, text: str, duration: float) -> str:
    if end <= start:
        return f"zero-length line ({start:.3f} s to {end:.3f} s)"
    if not text:
        return "line has no text"
    if start >= duration:
        return f"line starts at {start:.3f} s, at or past the video's end ({duration:.3f} s)"
    return ""


def _overlapping(lines: list[tuple[int, float, float, str]]) -> dict[int, str]:
    """Line number -> reason, for every line that overlaps another in time."""
    out: dict[int, str] = {}
    ordered = sorted(lines, key=lambda x: (x[1], x[2]))
    last = None  # the line reaching furthest so far
    for b in ordered:
        if last is not None and b[1] < last[2]:
            out.setdefault(last[0], f"overlaps line {b[0]} ({b[1]:.3f}-{b[2]:.3f} s)")
            out[b[0]] = f"overlaps line {last[0]} ({last[1]:.3f}-{last[2]:.3f} s)"
        if last is None or b[2] > last[2]:
            last = b
    return out


def segments_from_subtitles(path_or_text: str | Path, video_duration_s: float) -> list[Segment]:
    """The segments of a subtitle file (SRT/ASS/VTT) or its text; dropped lines are logged."""
    segments, dropped = parse_subtitles(path_or_text, video_duration_s)
    for d in dropped:
        log.info("subtitle line %d dropped: %s", d.line, d.reason)
    return segments
