"""The two stages of the clips job: ``SegmentStage`` (CPU) and ``AsrStage`` (GPU where asked).

``SegmentStage`` takes one source video a row and returns one row per segment (many rows out): it
copies the video locally (``source.local_video``), probes it, segments it by its subtitle file
(``segment.parse_subtitles``; the dropped lines become rejected rows) or by Silero VAD plus speaker
merging (``vad``, ``speakers``), rejects segments outside the duration bounds, runs the face filter
(``faces.FaceFilter``) on frames sampled inside each segment, and cuts every kept segment into
``clips/<video>_<start_ms>_<end_ms>.mp4`` (``cut``). A kept VAD segment carries its audio (FLAC
bytes) for ``AsrStage``, which transcribes it (``create_backend(clips.asr, "asr")``) and fills the
subtitle columns. A video that cannot be used at all gives one row of ``kind`` "video" with the
reason; every row says how many rows its video gave (``rows_total``), so the driver knows when a
video is complete. The VAD models, the speaker encoder and the face detector load once per actor.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

from core import storage
from core.llm import LLMRequest, create_backend
from core.schema import SAMPLE_RATE, decode_audio, encode_audio
from core.stage import FAILED, REJECTED, Stage
from pipelines.clips import columns as C
from pipelines.clips.cut import clip_name, cut_clip
from pipelines.clips.faces import FaceFilter
from pipelines.clips.segment import Segment, SubtitleError, parse_subtitles
from pipelines.clips.source import (
    Probe,
    SourceError,
    audio_16k,
    clip_audio,
    frames_at,
    local_video,
    probe,
    sample_times,
)
from pipelines.clips.speakers import SpeakerEncoder, merge_same_speaker
from pipelines.clips.vad import speech_segments

log = logging.getLogger(__name__)


class SegmentStage(Stage):
    """One source video in, its segments out (kept ones cut into clips/)."""

    name = "segment"
    needs = (C.VIDEO, C.SOURCE, C.SUBTITLE_FILE)
    produces = C.ROW_COLUMNS

    def setup(self) -> None:
        self.output = self.options["output"]
        self._faces = None
        self._speakers = None

    def faces(self):
        if self._faces is None:
            self._faces = FaceFilter(self.cfg.faces)
        return self._faces

    def speakers(self):
        if self._speakers is None:
            self._speakers = SpeakerEncoder()
        return self._speakers

    def run_rows(self, rows: list[dict[str, Any]]) -> None:
        out: list[dict[str, Any]] = []
        for row in rows:
            got = self.video_rows(row)
            for r in got:
                r[C.ROWS_TOTAL] = len(got)
            out += got
        rows[:] = out

    def video_rows(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        stage, clock = "source", Clock()
        try:
            with clock(C.SECONDS_SOURCE), local_video(row[C.SOURCE], self.cfg.max_video_bytes) as path:
                info = probe(path)
                stage = "subtitles" if row[C.SUBTITLE_FILE] else "vad"
                if not info.has_audio:
                    raise SourceError(_no_audio(row[C.SUBTITLE_FILE]))
                segments, dropped, audio = self.segments(path, info, row, clock)
                stage = "cut"
                rows = [self.segment_row(row, path, info, s, audio, clock) for s in segments]
        except (SourceError, SubtitleError) as err:
            return [{**C.video_failure(row, stage, str(err)), **clock.video_seconds()}]
        except Exception as err:  # noqa: BLE001 - one broken video is one failure row, not a crashed job
            log.warning("clips: video %s failed at %s", row[C.SOURCE], stage, exc_info=True)
            return [{**C.video_failure(row, stage, f"{type(err).__name__}: {err}"), **clock.video_seconds()}]
        out = rows + dropped
        out[0].update(clock.video_seconds())
        return out

    def segments(self, path: str, info: Probe, row: dict[str, Any], clock: Clock):
        """(segments, rejected rows of dropped subtitle lines, the 16 kHz audio or None)."""
        sub = row[C.SUBTITLE_FILE]
        if sub:
            text = storage.read_bytes(sub).decode("utf-8-sig", errors="replace")
            segments, dropped = parse_subtitles(text, info.duration_s, label=sub)
            if not segments:
                raise SubtitleError(f"subtitles {sub}: no usable line ({len(dropped)} dropped)")
            return segments, [C.dropped_row(row, d) for d in dropped], None
        audio = audio_16k(path)
        with clock(C.SECONDS_VAD):
            spans = speech_segments(audio, SAMPLE_RATE, self.cfg.vad)
        if not spans:
            raise SourceError("Silero VAD found no speech in the audio (and there is no subtitle file)")
        sp = self.cfg.speakers
        with clock(C.SECONDS_SPEAKERS):
            encoder = self.speakers()
            merged = merge_same_speaker(spans, audio, SAMPLE_RATE, encoder, sp.threshold, sp.max_gap_s)
        return merged, [], audio

    def segment_row(
        self, row: dict, path: str, info: Probe, seg: Segment, audio, clock: Clock
    ) -> dict[str, Any]:
        name = clip_name(row[C.VIDEO], seg.start, seg.end)
        out = C.segment_row(row, name, seg)
        reason = self.duration_problem(seg)
        if reason:
            out.update(outcome=REJECTED, stage="duration", reason=reason)
            return out
        if self.cfg.check_faces:
            times = sample_times(seg.start, seg.end, self.cfg.faces.frames)
            with clock.row(out, C.SECONDS_FACES):
                verdict = self.faces().check(frames_at(path, times, info, self.cfg.frame_short_side))
            out.update(C.face_fields(verdict))
            if verdict.reason:
                out.update(outcome=REJECTED, stage="faces", reason=verdict.reason)
                return out
        uri = storage.join(self.output, C.CLIPS_DIR, f"{name}.mp4")
        with clock.row(out, C.SECONDS_CUT):
            cut_clip(path, seg.start, seg.end, uri, self.cfg.cut)
        out[C.CLIP] = uri
        if not seg.text and self.cfg.transcribe and audio is not None:
            out[C.ASR_AUDIO] = encode_audio(clip_audio(audio, seg.start, seg.end))
        return out

    def duration_problem(self, seg: Segment) -> str:
        lo, hi = self.cfg.min_duration_s, self.cfg.max_duration_s
        if seg.duration < lo:
            return f"duration {seg.duration:.2f} s: under clips.min_duration_s = {lo:g}"
        if seg.duration > hi:
            return f"duration {seg.duration:.2f} s: over clips.max_duration_s = {hi:g}"
        return ""


class Clock:
    """Seconds per step: ``with clock(step)`` adds to the video's total (``video_seconds``, which
    excludes the time of nested steps), ``with clock.row(row, column)`` sets a segment row's."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._nested = 0.0  # time of the steps run inside an open ``clock(step)``

    @contextlib.contextmanager
    def __call__(self, column: str) -> Iterator[None]:
        start, nested = time.perf_counter(), self._nested
        try:
            yield
        finally:
            took = time.perf_counter() - start
            inner, self._nested = self._nested - nested, nested + took
            self.seconds[column] = self.seconds.get(column, 0.0) + took - inner

    @contextlib.contextmanager
    def row(self, row: dict[str, Any], column: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            took = time.perf_counter() - start
            row[column] = round(took, 4)
            self._nested += took

    def video_seconds(self) -> dict[str, float]:
        return {c: round(s, 4) for c, s in self.seconds.items()}


def _no_audio(subtitle: str) -> str:
    if subtitle:
        return "has no audio stream: a clip without speech cannot be annotated"
    return "has no audio stream: the VAD path is impossible (no subtitle file either)"


class AsrStage(Stage):
    """Transcribes the kept clips that carry audio (no subtitle); the others pass through."""

    name = "asr"
    role = "asr"
    needs = (C.NAME,)
    produces = C.ROW_COLUMNS

    def setup(self) -> None:
        self.backend = create_backend(self.cfg.asr, "asr")
        self.backend.steps = ["asr"]

    def process(self, rows: list[dict[str, Any]]) -> None:
        todo = [r for r in rows if r.get(C.ASR_AUDIO)]
        if todo:
            start = time.perf_counter()
            reqs = [LLMRequest("", audio=decode_audio(r[C.ASR_AUDIO]), id=r[C.NAME]) for r in todo]
            results = self.backend.generate(reqs)
            share = round((time.perf_counter() - start) / len(todo), 4)
            for r, res in zip(todo, results):
                r[C.SECONDS_ASR] = share
                if res.ok:
                    r.update(C.text_fields(res.text))
                    r[C.ASR_MODEL] = self.cfg.asr.model
                else:
                    r.update(outcome=FAILED, stage="asr", reason=f"transcription failed: {res.error}")
        for r in rows:
            r.pop(C.ASR_AUDIO, None)
