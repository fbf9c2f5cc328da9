"""Decode one clip into what the pipeline carries, and the checks that filter clips.

Video: decord samples N frames uniformly, resized to a square, and they are JPEG-encoded at once
(raw frames would be ~1.2 MB a clip; JPEG ~40 KB). Audio: 16 kHz mono float32 through libav (PyAV,
in-process) or an ffmpeg subprocess, never decord's AudioReader (it leaks memory); it travels and
is stored as 16-bit FLAC bytes. A clip without an audio stream decodes with ``audio=None`` (the
check turns it into a reason). Decoders read local paths (``pipelines.fetch`` makes one).

A clip over ``max_duration_s`` is refused before anything is decoded: from the video stream's
duration in the container (``probe_duration``), else from decord's frame count, as ``Rejected``.
Audio is decoded only up to ``audio_cap_s`` (the max duration plus the A/V tolerance and 1 s), so a
track longer than its video still fails the length check without being decoded whole. Audio that
ends before its video (an ordinary ``ffmpeg -shortest`` file) is padded with silence to the video's
length (``pad_audio``; the padding is ``audio_shortfall_s``); only a gross mismatch is rejected.
``check_clip`` returns the reason a decoded clip is rejected, or None.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import subprocess

import numpy as np

from core.schema import SAMPLE_RATE

log = logging.getLogger(__name__)


class MediaError(Exception):
    """A clip that cannot be decoded; the message is the reason recorded in failures/."""


class Rejected(MediaError):
    """A clip refused by a check before it was decoded (``code``: the check's metric tag)."""

    def __init__(self, reason: str, code: str = "check") -> None:
        super().__init__(reason)
        self.code = code

    def __reduce__(self):  # it comes back from the decode child process
        return type(self), (str(self), self.code)


@dataclasses.dataclass
class Decoded:
    frames: list[bytes]  # JPEG, time order
    audio: np.ndarray | None  # 16 kHz mono float32, padded to the video length; None = no audio stream
    duration_s: float  # of the video stream: frame count / fps
    fps: float
    width: int  # source size
    height: int
    num_video_frames: int
    faces: list[int] | None = None  # faces per sampled frame, when the face check ran
    audio_shortfall_s: float = 0.0  # seconds of silence appended to ``audio`` (see ``pad_audio``)

    @property
    def audio_s(self) -> float:
        """Seconds of the decoded audio track itself (without the padding)."""
        return 0.0 if self.audio is None else len(self.audio) / SAMPLE_RATE - self.audio_shortfall_s


def pad_audio(audio: np.ndarray | None, duration_s: float) -> tuple[np.ndarray | None, float]:
    """``audio`` padded with silence at the end to ``duration_s`` seconds, and the seconds added.

    Audio as long as the video or longer, missing (None) or empty is returned as it is (0.0 added):
    the check judges those."""
    want = int(round(duration_s * SAMPLE_RATE))
    if audio is None or audio.size == 0 or audio.size >= want:
        return audio, 0.0
    padded = np.concatenate([audio, np.zeros(want - audio.size, dtype=audio.dtype)])
    return padded, (want - audio.size) / SAMPLE_RATE


def sample_indices(total: int, n: int) -> list[int]:
    """``n`` frame indices spread uniformly over ``total`` frames (centres of n equal segments)."""
    if total <= 0:
        return []
    return [min(total - 1, int((k + 0.5) * total / n)) for k in range(n)]


def decode_video(path: str, n: int, size: int, max_s: float | None = None) -> tuple[np.ndarray, dict]:
    """``n`` RGB frames (n, size, size, 3) sampled uniformly, and the stream's frame count and rate.

    A stream longer than ``max_s`` (frame count / fps) is ``Rejected`` before any frame is decoded.
    """
    import decord

    if os.path.getsize(path) == 0:
        raise MediaError("empty file (0 bytes)")
    try:
        reader = decord.VideoReader(path, width=size, height=size, num_threads=1)
        total, fps = len(reader), float(reader.get_avg_fps())
        if max_s is not None and total > 0 and fps > 0 and total / fps > max_s:
            reason = f"{too_long(total / fps, max_s)}; from the frame count, before decoding"
            raise Rejected(reason, "too_long")
        frames = reader.get_batch(sample_indices(total, n)).asnumpy()
    except (RuntimeError, decord.DECORDError, AssertionError, IndexError) as err:
        raise MediaError(f"cannot decode video: {_short(err)}") from err
    if total <= 0 or fps <= 0:
        raise MediaError(f"video stream has {total} frames at {fps} fps")
    return frames, {"duration_s": total / fps, "fps": fps, "num_video_frames": total}


def probe_duration(path: str) -> float | None:
    """Seconds of the first video stream from the container's metadata (nothing is decoded).

    None when the container cannot be opened (the decoders then give the reason) or does not say:
    the container-wide duration is not used, libav may only estimate it from the bitrate.
    """
    import av

    try:
        container = av.open(path)
    except (av.error.FFmpegError, ValueError, OSError):
        return None
    with container:
        if not container.streams.video:
            return None
        stream = container.streams.video[0]
        if stream.duration and stream.time_base:
            return float(stream.duration * stream.time_base)
        if stream.frames and stream.average_rate:
            return stream.frames / float(stream.average_rate)
    return None


def audio_cap_s(cfg) -> float:
    """Seconds of audio worth decoding: past it the clip fails a duration or A/V-length check anyway."""
    return cfg.max_duration_s + max(cfg.av_tolerance_s, cfg.av_tolerance_ratio * cfg.max_duration_s) + 1.0


def probe_and_audio(
    path: str, backend: str = "pyav", max_s: float | None = None, timeout_s: float = 120.0
) -> tuple[dict, np.ndarray | None]:
    """Source frame size and the first audio stream as 16 kHz mono float32 (None: no audio stream),
    at most its first ``max_s`` seconds."""
    import av

    try:
        container = av.open(path)
    except (av.error.FFmpegError, ValueError) as err:
        raise MediaError(f"cannot open container: {_short(err)}") from err
    with container:
        video = container.streams.video
        meta = {
            "width": int(video[0].codec_context.width) if video else 0,
            "height": int(video[0].codec_context.height) if video else 0,
        }
        if backend == "ffmpeg":
            return meta, _audio_ffmpeg(path, max_s, timeout_s)
        if not container.streams.audio:
            return meta, None
        return meta, _audio_pyav(container, max_s)


def _audio_pyav(container, max_s: float | None = None) -> np.ndarray:
    import av

    stream = container.streams.audio[0]
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    limit = int(max_s * SAMPLE_RATE) if max_s is not None else None
    chunks, bad, total = [], 0, 0
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.error.FFmpegError:
            bad += 1  # like the ffmpeg CLI: skip a corrupt packet, the length check judges the rest
            continue
        for frame in frames:
            out = [o.to_ndarray().reshape(-1) for o in resampler.resample(frame)]
            chunks += out
            total += sum(len(o) for o in out)
        if limit is not None and total >= limit:
            break  # the rest is never decoded
    else:
        chunks += [o.to_ndarray().reshape(-1) for o in resampler.resample(None)]
    if bad:
        log.debug("skipped %d corrupt audio packets", bad)
    audio = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
    return audio[:limit] if limit is not None else audio


def _audio_ffmpeg(path: str, max_s: float | None = None, timeout_s: float = 120.0) -> np.ndarray | None:
    cmd = [
        "ffmpeg",
        "-nostdin",
        "-v",
        "error",
        "-i",
        path,
        "-map",
        "0:a:0?",
        "-vn",
        "-ac",
        "1",
        "-ar",
        str(SAMPLE_RATE),
        *(["-t", f"{max_s:.3f}"] if max_s is not None else []),
        "-f",
        "f32le",
        "pipe:1",
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout_s or None)
    except FileNotFoundError as err:
        raise MediaError(
            "ffmpeg is not installed (apt-get install -y ffmpeg), or use audio_backend=pyav"
        ) from err
    except subprocess.TimeoutExpired as err:
        raise MediaError(f"ffmpeg audio decode timed out after {timeout_s:g} s") from err
    err = proc.stderr.decode("utf-8", "replace")
    if proc.returncode != 0 and "does not contain any stream" not in err:
        last = err.strip().splitlines()[-1] if err.strip() else f"ffmpeg exit {proc.returncode}"
        raise MediaError(f"cannot decode audio: {last}")
    if not proc.stdout:
        return None  # "-map 0:a:0?" maps nothing when there is no audio stream
    return np.frombuffer(proc.stdout, dtype=np.float32).copy()


def encode_jpeg(frames: np.ndarray, quality: int = 90) -> list[bytes]:
    from PIL import Image

    out = []
    for frame in frames:
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
        out.append(buf.getvalue())
    return out


def decode_jpeg(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


class FaceCounter:
    """Faces per frame with OpenCV's frontal-face Haar cascade (loaded once per actor)."""

    def __init__(self) -> None:
        try:
            import cv2
        except ImportError as err:
            raise RuntimeError(
                "annotate.face_check = true needs OpenCV: pip install 'opencv-python-headless<5'"
            ) from err
        self.cv2 = cv2
        self.cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
        if self.cascade.empty():
            raise RuntimeError("OpenCV's haarcascade_frontalface_default.xml did not load")

    def count(self, frame: np.ndarray) -> int:
        gray = self.cv2.cvtColor(np.ascontiguousarray(frame), self.cv2.COLOR_RGB2GRAY)
        side = min(gray.shape[:2])
        found = self.cascade.detectMultiScale(
            gray, scaleFactor=1.1, minNeighbors=5, minSize=(max(16, side // 8), max(16, side // 8))
        )
        return len(found)


def decode_clip(path: str, cfg, faces: FaceCounter | None = None) -> Decoded:
    """Frames (JPEG) + audio + metadata of one clip; raises ``MediaError`` with the reason.

    ``cfg``: the ``AnnotateConfig`` (media fields, duration bounds, A/V tolerance, decode timeout).
    A clip over ``max_duration_s`` is ``Rejected`` before its frames or audio are decoded.
    """
    probed = probe_duration(path)
    if probed is not None and probed > cfg.max_duration_s:
        reason = f"{too_long(probed, cfg.max_duration_s)}; from the container's metadata, before decoding"
        raise Rejected(reason, "too_long")
    frames, meta = decode_video(path, cfg.frames, cfg.frame_size, cfg.max_duration_s)
    size, audio = probe_and_audio(path, cfg.audio_backend, audio_cap_s(cfg), cfg.decode_timeout_s)
    counts = [faces.count(f) for f in frames] if faces is not None else None
    if audio is not None and not np.isfinite(audio).all():
        raise MediaError("audio holds NaN/inf samples")
    audio, shortfall = pad_audio(audio, meta["duration_s"])
    return Decoded(
        frames=encode_jpeg(frames, cfg.jpeg_quality),
        audio=audio,
        faces=counts,
        audio_shortfall_s=shortfall,
        **meta,
        **size,
    )


def check_clip(row: dict, cfg) -> str | None:
    """Why a decoded clip is rejected, or None to keep it.

    ``row`` holds ``duration_s``, ``has_audio``, ``audio_s`` (the audio track's own length) and
    ``faces`` (None when not counted). Audio shorter than its video is kept (it was padded with
    silence) unless it covers under ``av_min_audio_fraction`` of the video; audio longer than the
    video by more than ``max(av_tolerance_s, av_tolerance_ratio * duration)`` is rejected.
    """
    duration = row["duration_s"]
    if duration < cfg.min_duration_s:
        return f"too short: {duration:.2f} s < min_duration_s {cfg.min_duration_s} s"
    if duration > cfg.max_duration_s:
        return too_long(duration, cfg.max_duration_s)
    if not row["has_audio"]:
        return "no audio stream" if cfg.require_audio else None
    reason = av_mismatch(row["audio_s"], duration, cfg)
    if reason:
        return reason
    faces = row.get("faces")
    if faces is not None:
        one = sum(1 for c in faces if c == 1)
        if one < cfg.face_min_fraction * len(faces):
            return (
                f"face check: {one} of {len(faces)} frames show exactly one face "
                f"(need {cfg.face_min_fraction:.0%})"
            )
    return None


def av_mismatch(audio_s: float, duration: float, cfg) -> str | None:
    """Why the audio length is a gross mismatch with the video's, or None (see ``check_clip``)."""
    allowed = max(cfg.av_tolerance_s, cfg.av_tolerance_ratio * duration)
    if audio_s > duration + allowed:
        return (
            f"audio length {audio_s:.2f} s is longer than video {duration:.2f} s by more than "
            f"{allowed:.2f} s (annotate.av_tolerance_s / av_tolerance_ratio): damaged or mismatched file"
        )
    if audio_s < cfg.av_min_audio_fraction * duration:
        return (
            f"audio length {audio_s:.2f} s covers under {cfg.av_min_audio_fraction:.0%} of video "
            f"{duration:.2f} s (annotate.av_min_audio_fraction): damaged or mismatched file"
        )
    return None


def too_long(duration: float, max_s: float) -> str:
    return f"too long: {duration:.2f} s > max_duration_s {max_s} s"


def _short(err: BaseException, limit: int = 200) -> str:
    text = " ".join(str(err).split())
    return text[:limit] + ("..." if len(text) > limit else "")
