"""A segment of a source video, the unit the clips job filters and cuts.

``Segment`` is shared by both segmentation paths: subtitle timestamps (``method="subtitle"``, the
line's text and its language by script) and VAD with speaker merging (``method="vad"``, the merged
voice's ``speaker_similarity``). Times are seconds from the start of the source video.
"""

from __future__ import annotations

from dataclasses import dataclass


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
