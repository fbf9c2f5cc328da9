"""Cutting one clip out of a source video with ffmpeg, atomically, under a deterministic name.

Accurate seek: a fast input seek (``-ss`` before ``-i``) to ``SEEK_MARGIN_S`` before the start, then
an exact output seek (``-ss`` after ``-i``) for the rest, so a re-encoded clip starts on the frame at
its start time whatever the keyframes. The default re-encodes to H.264 / AAC (``libx264``, ``aac``);
``copy=True`` copies the streams (fast, no quality loss, but the cut snaps to the keyframe at or
before the start, which the card says). The clip is written to ``<name>.tmp-<8 hex>`` beside its
target and renamed into place (``core.storage``'s temp names, so the job's clean-up knows them); an
``s3://`` target is uploaded from a local temp file in one PUT. A clip that already exists is a
finished cut (it only ever appears complete) and is not cut again.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import subprocess
import tempfile
import uuid

from core import storage
from core.config import Config, check_range

log = logging.getLogger(__name__)

SEEK_MARGIN_S = 3.0  # the input seek stops this far before the start; the output seek decodes the rest


class CutError(RuntimeError):
    """ffmpeg could not cut the clip (its last error line is the message)."""


@dataclasses.dataclass(frozen=True)
class Encoding(Config):
    """How clips are written (``clips.cut``): re-encoded (codecs, CRF, preset) or stream-copied."""

    copy: bool = False  # stream copy: no re-encoding, but the cut snaps to a keyframe
    video_codec: str = "libx264"
    audio_codec: str = "aac"
    crf: int = 20  # libx264 quality (lower: better, bigger)
    preset: str = "veryfast"
    threads: int = 1  # ffmpeg threads per cut (a decode actor asks one CPU)
    timeout_s: float = 300.0  # one cut longer than this fails its segment

    def problems(self) -> list[str]:
        out: list[str] = []
        check_range(out, "cut.crf", self.crf, 0, 51)
        check_range(out, "cut.threads", self.threads, 0, 64)
        check_range(out, "cut.timeout_s", self.timeout_s, 0.0, None)
        for key in ("video_codec", "audio_codec", "preset"):
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", getattr(self, key)):
                out.append(f"cut.{key} = {getattr(self, key)!r}: must be an ffmpeg name ([A-Za-z0-9_.-])")
        return out


def clip_name(video: str, start: float, end: float) -> str:
    """``<video>_<start_ms>_<end_ms>``: the clip's id (and file stem), the same on every run."""
    return f"{video}_{round(start * 1000):d}_{round(end * 1000):d}"


def ffmpeg_args(src: str, start: float, end: float, out: str, enc: Encoding) -> list[str]:
    """The ffmpeg command line cutting [start, end) of ``src`` into the MP4 file ``out``."""
    fast = 0.0 if enc.copy else max(0.0, start - SEEK_MARGIN_S)
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-ss", f"{fast:.3f}", "-i", src]
    cmd += ["-ss", f"{start - fast:.3f}", "-t", f"{end - start:.3f}", "-map", "0:v:0", "-map", "0:a:0?"]
    cmd += ["-sn", "-dn", "-map_metadata", "-1"]
    if enc.copy:
        cmd += ["-c", "copy", "-avoid_negative_ts", "make_zero"]
    else:
        cmd += ["-c:v", enc.video_codec, "-crf", str(enc.crf), "-preset", enc.preset]
        cmd += ["-pix_fmt", "yuv420p", "-c:a", enc.audio_codec, "-threads", str(enc.threads)]
    return [*cmd, "-movflags", "+faststart", "-f", "mp4", out]


def _run(cmd: list[str], timeout_s: float) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout_s or None)
    except FileNotFoundError as err:
        raise CutError("ffmpeg is not installed (apt-get install -y ffmpeg)") from err
    except subprocess.TimeoutExpired as err:
        raise CutError(f"ffmpeg did not finish the cut in {timeout_s:g} s") from err
    if proc.returncode != 0:
        lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise CutError(f"ffmpeg failed: {lines[-1] if lines else f'exit {proc.returncode}'}")


def cut_clip(src: str, start: float, end: float, dest: str, enc: Encoding = Encoding()) -> bool:
    """Cut [start, end) s of the local video ``src`` into ``dest`` (local or ``s3://``, ``.mp4``).

    Returns False when ``dest`` already exists (a finished cut), True after cutting it."""
    if end <= start:
        raise ValueError(f"cut {src}: end {end:.3f} s is not after start {start:.3f} s")
    if storage.exists(dest):
        return False
    if storage.is_s3(dest):
        with tempfile.TemporaryDirectory(prefix="emer-cut-") as tmp:
            local = os.path.join(tmp, "clip.mp4")
            _run(ffmpeg_args(src, start, end, local, enc), enc.timeout_s)
            with open(local, "rb") as f:
                storage.write_bytes(dest, f.read())
        return True
    path = storage.filesystem(dest)[1]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"  # storage.is_temp knows this name
    try:
        _run(ffmpeg_args(src, start, end, tmp, enc), enc.timeout_s)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return True
