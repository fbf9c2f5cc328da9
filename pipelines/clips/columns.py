"""The clips job's rows: column names and the row builders shared by its stages and its outputs.

One row per segment of a source video (kept, rejected by a filter, failed while cut or
transcribed), or one row of ``kind`` "video" for a video that could not be used at all. The clip
table (``clips.parquet``) holds these columns; ``subtitles.csv`` takes ``name`` and the subtitle
columns of the kept rows in the MER layout ``emer annotate`` reads (``pipelines.inputs``).
"""

from __future__ import annotations

from typing import Any

from core.schema import CLIP, NAME
from core.stage import FAILED, OK, REJECTED
from pipelines.clips.cut import clip_name
from pipelines.clips.segment import DroppedLine, Segment, language_of
from pipelines.inputs import SUBTITLE_COLUMNS

CLIPS_DIR = "clips"
VIDEO, SOURCE, SUBTITLE_FILE = "video", "source", "subtitle_file"
KIND, ROWS_TOTAL = "kind", "rows_total"  # "segment" | "video"; rows its video gave
START, END, DURATION, METHOD, LINE = "start_s", "end_s", "duration_s", "method", "subtitle_line"
TEXT, LANGUAGE = "text", "language"
CHINESE, ENGLISH = SUBTITLE_COLUMNS[1], SUBTITLE_COLUMNS[2]  # "chinese", "english"
SPEAKER_SIMILARITY = "speaker_similarity"
FACES_PER_FRAME, ONE_FACE_FRACTION = "faces_per_frame", "one_face_fraction"
SAME_PERSON, IDENTITY_METHOD = "same_person", "identity_method"
ASR_MODEL, ASR_AUDIO = "asr_model", "asr_audio"  # asr_audio: FLAC bytes, only between the stages
OUTCOME, STAGE, REASON = "outcome", "stage", "reason"
# Seconds each step took, measured inside the stages (a model's first load included). Per video,
# on its first row (the others null): vad (Silero), speakers (encoder + merging), source (the rest
# of the video's time: copy, probe, subtitle parsing, 16 kHz audio decode, ASR audio encoding).
# Per segment: faces (frame decode + detection), cut (ffmpeg), asr (the clip's share of its
# transcription batch). A column's sum is the step's total time.
SECONDS_SOURCE, SECONDS_VAD, SECONDS_SPEAKERS = "seconds_source", "seconds_vad", "seconds_speakers"
SECONDS_FACES, SECONDS_CUT, SECONDS_ASR = "seconds_faces", "seconds_cut", "seconds_asr"
TIMING_COLUMNS = (SECONDS_SOURCE, SECONDS_VAD, SECONDS_SPEAKERS, SECONDS_FACES, SECONDS_CUT, SECONDS_ASR)

ROW_COLUMNS = (
    NAME,
    VIDEO,
    SOURCE,
    KIND,
    START,
    END,
    DURATION,
    METHOD,
    LINE,
    TEXT,
    LANGUAGE,
    CHINESE,
    ENGLISH,
    SPEAKER_SIMILARITY,
    FACES_PER_FRAME,
    ONE_FACE_FRACTION,
    SAME_PERSON,
    IDENTITY_METHOD,
    ASR_MODEL,
    CLIP,
    OUTCOME,
    STAGE,
    REASON,
    SUBTITLE_FILE,
    ROWS_TOTAL,
    *TIMING_COLUMNS,
)
OUTCOMES = (OK, REJECTED, FAILED)


def text_fields(text: str) -> dict[str, Any]:
    """The subtitle columns of a text: ``chinese`` when it holds CJK characters, else ``english``."""
    lang = language_of(text)
    zh, en = (text, "") if lang == "zh" else ("", text)
    return {TEXT: text, LANGUAGE: lang, CHINESE: zh, ENGLISH: en}


def _base(video_row: dict[str, Any]) -> dict[str, Any]:
    return {VIDEO: video_row[VIDEO], SOURCE: video_row[SOURCE], SUBTITLE_FILE: video_row[SUBTITLE_FILE]}


def segment_row(video_row: dict[str, Any], name: str, seg: Segment) -> dict[str, Any]:
    """A kept-so-far segment (outcome ok; the filters may reject it)."""
    return {
        NAME: name,
        **_base(video_row),
        KIND: "segment",
        START: round(seg.start, 3),
        END: round(seg.end, 3),
        DURATION: round(seg.duration, 3),
        METHOD: seg.method,
        SPEAKER_SIMILARITY: seg.speaker_similarity,
        **text_fields(seg.text),
        OUTCOME: OK,
    }


def dropped_row(video_row: dict[str, Any], d: DroppedLine) -> dict[str, Any]:
    """A subtitle line that gave no segment, rejected at stage ``subtitles`` with its reason."""
    return {
        NAME: clip_name(video_row[VIDEO], d.start, d.end),
        **_base(video_row),
        KIND: "segment",
        START: round(d.start, 3),
        END: round(d.end, 3),
        DURATION: round(d.end - d.start, 3),
        METHOD: "subtitle",
        LINE: d.line,
        OUTCOME: REJECTED,
        STAGE: "subtitles",
        REASON: f"subtitle line {d.line}: {d.reason}",
    }


def video_failure(video_row: dict[str, Any], stage: str, reason: str) -> dict[str, Any]:
    """The one row of a video that could not be used: the reason names the file."""
    return {
        NAME: video_row[VIDEO],
        **_base(video_row),
        KIND: "video",
        OUTCOME: FAILED,
        STAGE: stage,
        REASON: f"video {video_row[SOURCE]}: {reason}",
    }


def step_seconds(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Total seconds per step over ``rows`` (the timing columns' sums, step name without prefix)."""
    return {c.removeprefix("seconds_"): round(sum(r.get(c) or 0.0 for r in rows), 3) for c in TIMING_COLUMNS}


def face_fields(verdict: Any) -> dict[str, Any]:
    """The face filter's numbers (``faces.FaceVerdict``) as columns."""
    return {
        FACES_PER_FRAME: list(verdict.faces_per_frame),
        ONE_FACE_FRACTION: round(float(verdict.one_face_fraction), 4),
        SAME_PERSON: verdict.same_person,
        IDENTITY_METHOD: verdict.identity_method,
    }
