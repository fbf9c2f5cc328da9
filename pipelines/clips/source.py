"""A source video of the clips job: a local copy, what its container says, its audio and frames.

``local_video`` gives a local path (an ``s3://`` object is streamed to a temp file, refused past
``clips.max_video_bytes``); ``probe`` reads duration, frame rate and whether there is an audio stream
from the container (nothing decoded; a file that does not open, or holds no video stream, is a
``SourceError``); ``audio_16k`` decodes the whole audio track to 16 kHz mono (VAD, speakers, ASR);
``frames_at`` decodes the frames at given times, scaled so the short side is ``short_side`` pixels.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from collections.abc import Iterator, Sequence

import numpy as np

from core import storage
from core.schema import SAMPLE_RATE
from pipelines.media import MediaError, probe_and_audio


class SourceError(RuntimeError):
    """The source video cannot be used; the message names the reason (the job adds the file)."""


@dataclasses.dataclass(frozen=True)
class Probe:
    duration_s: float
    fps: float
    width: int
    height: int
    has_audio: bool


@contextlib.contextmanager
def local_video(uri: str, max_bytes: int) -> Iterator[str]:
    """A local path for ``uri`` for the block: itself, or an S3 object streamed to a temp file."""
    try:
        size = storage.file_size(uri)
    except FileNotFoundError as err:
        raise SourceError("no such file (moved or deleted since the listing)") from err
    if size == 0:
        raise SourceError("empty file (0 bytes)")
    if size > max_bytes:
        raise SourceError(f"{size} bytes, over clips.max_video_bytes = {max_bytes}: raise it to read it")
    if not storage.is_s3(uri):
        yield uri
        return
    with tempfile.NamedTemporaryFile(suffix=os.path.splitext(uri)[1], prefix="emer-video-") as tmp:
        try:
            storage.copy_to(uri, tmp, max_bytes)
        except storage.SizeLimitExceeded as err:
            raise SourceError(f"over clips.max_video_bytes = {max_bytes} while streaming") from err
        tmp.flush()
        yield tmp.name


def probe(path: str) -> Probe:
    """Duration, frame rate, size and audio presence from the container."""
    import av

    try:
        container = av.open(path)
    except (av.error.FFmpegError, ValueError, OSError) as err:
        raise SourceError(f"does not decode: {type(err).__name__}: {err}") from err
    with container:
        if not container.streams.video:
            raise SourceError("holds no video stream")
        v = container.streams.video[0]
        fps = float(v.average_rate or v.guessed_rate or 0)
        duration = float(v.duration * v.time_base) if v.duration and v.time_base else 0.0
        if not duration and container.duration:
            duration = container.duration / 1_000_000
        if fps <= 0 or duration <= 0:
            raise SourceError(f"does not decode: video stream of {duration:.3f} s at {fps:g} fps")
        width, height = int(v.codec_context.width), int(v.codec_context.height)
        return Probe(duration, fps, width, height, bool(container.streams.audio))


def audio_16k(path: str) -> np.ndarray:
    """The first audio stream as 16 kHz mono float32 (``SourceError`` when it does not decode)."""
    try:
        audio = probe_and_audio(path, backend="ffmpeg")[1]
    except MediaError as err:
        raise SourceError(str(err)) from err
    if audio is None or audio.size == 0:
        raise SourceError("no audio samples decoded")
    return audio


def clip_audio(audio: np.ndarray, start: float, end: float) -> np.ndarray:
    """The [start, end) s slice of a 16 kHz waveform."""
    return np.ascontiguousarray(audio[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)])


def frames_at(path: str, times: Sequence[float], info: Probe, short_side: int = 240) -> np.ndarray:
    """RGB frames (N, H, W, 3) uint8 at ``times`` (s), the short side scaled to ``short_side``."""
    import decord

    scale = min(1.0, short_side / max(1, min(info.width, info.height)))
    width, height = (max(2, round(info.width * scale / 2) * 2), max(2, round(info.height * scale / 2) * 2))
    try:
        reader = decord.VideoReader(path, width=width, height=height, num_threads=1)
        last = len(reader) - 1
        idx = [min(last, max(0, round(t * info.fps))) for t in times]
        return reader.get_batch(idx).asnumpy()
    except (RuntimeError, decord.DECORDError, IndexError) as err:
        raise SourceError(f"frames do not decode: {type(err).__name__}: {err}") from err


def sample_times(start: float, end: float, n: int) -> list[float]:
    """``n`` times spread evenly inside [start, end) (centres of n equal parts)."""
    step = (end - start) / max(1, n)
    return [start + step * (k + 0.5) for k in range(n)]
