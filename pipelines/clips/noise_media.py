"""ffmpeg and libav for MER-NOISE: read a clip's audio at its own rate and channels, decode a noise
file at that rate, and write the noisy clip (the blurred video re-encoded with the mixed audio).

Every failure is a ``MediaError`` whose message is the reason recorded for the clip. The output is
written by ffmpeg into a temporary folder and only then copied to its URI (``storage.write_bytes``:
atomic locally, one PUT on S3), so a clip appears whole or not at all. The encode asks for bitexact
output (no encoder version or creation time in the file) so a rerun writes the same bytes.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import tempfile

import numpy as np

from core import storage
from pipelines.clips.noise import NoiseConfig, blur_filter
from pipelines.media import MediaError

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ClipInfo:
    """What the noisy clip keeps from its source: frame size, audio rate and channels."""

    width: int
    height: int
    rate: int
    channels: int


def probe(path: str) -> ClipInfo:
    """The clip's video size and audio format; ``MediaError`` when it has no video or no audio."""
    import av  # heavy: libav bindings, imported on use

    if os.path.getsize(path) == 0:
        raise MediaError("empty file (0 bytes)")
    try:
        container = av.open(path)
    except (av.error.FFmpegError, ValueError, OSError) as err:
        raise MediaError(f"cannot open container: {' '.join(str(err).split())[:300]}") from err
    with container:
        if not container.streams.video:
            raise MediaError("no video stream")
        if not container.streams.audio:
            raise MediaError("no audio stream: MER-NOISE adds noise to the clip's audio, so it needs one")
        video, audio = container.streams.video[0].codec_context, container.streams.audio[0].codec_context
        return ClipInfo(
            width=int(video.width),
            height=int(video.height),
            rate=int(audio.sample_rate),
            channels=int(audio.layout.nb_channels),
        )


def _ffmpeg(args: list[str], what: str, timeout_s: float, data: bytes | None = None) -> bytes:
    cmd = ["ffmpeg", *(["-nostdin"] if data is None else []), "-v", "error", "-y", *args]
    try:
        done = subprocess.run(cmd, input=data, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as err:
        raise MediaError(f"{what}: ffmpeg ran past {timeout_s:.0f} s (noise.ffmpeg_timeout_s)") from err
    if done.returncode != 0:
        tail = " ".join(done.stderr.decode("utf-8", "replace").split())[-400:]
        raise MediaError(f"{what}: ffmpeg failed ({done.returncode}): {tail}")
    return done.stdout


def decode_audio(path: str, info: ClipInfo, timeout_s: float) -> np.ndarray:
    """The first audio stream as float32 (samples, channels) at its own rate."""
    raw = _ffmpeg(
        ["-i", path, "-map", "0:a:0", "-vn", "-f", "f32le", "-acodec", "pcm_f32le", "-"],
        "cannot decode the clip's audio",
        timeout_s,
    )
    audio = np.frombuffer(raw, dtype="<f4")
    if audio.size < info.channels:
        raise MediaError("the audio stream decodes to no samples")
    return audio[: audio.size - audio.size % info.channels].reshape(-1, info.channels)


def decode_noise(uri: str, rate: int, timeout_s: float) -> np.ndarray:
    """A noise file (local or s3://, any format ffmpeg reads) as mono float32 at ``rate``."""
    try:
        data = storage.read_bytes(uri)
    except FileNotFoundError as err:
        raise MediaError(f"noise file {uri} does not exist (moved or deleted since the listing)") from err
    raw = _ffmpeg(
        ["-i", "pipe:0", "-vn", "-ac", "1", "-ar", str(rate), "-f", "f32le", "-acodec", "pcm_f32le", "-"],
        f"cannot decode noise file {uri}",
        timeout_s,
        data,
    )
    return np.frombuffer(raw, dtype="<f4").copy()


def write_noisy(
    path: str, audio: np.ndarray, info: ClipInfo, factor: int, out_uri: str, cfg: NoiseConfig
) -> int:
    """Encode ``path``'s video blurred by ``factor`` with ``audio`` (float32, samples x channels, at
    ``info.rate``) as its sound into ``out_uri``; returns the bytes written."""
    width, height = info.width - info.width % 2, info.height - info.height % 2
    with tempfile.TemporaryDirectory(prefix="emer-noise-") as tmp:
        out = os.path.join(tmp, "noisy.mp4")
        args = [
            *("-i", path),
            *("-f", "f32le", "-ar", str(info.rate), "-ac", str(info.channels), "-i", "pipe:0"),
            *("-map", "0:v:0", "-map", "1:a:0", "-vf", blur_filter(factor, width, height)),
            *("-c:v", cfg.video_codec, "-preset", cfg.preset, "-crf", str(cfg.crf), "-pix_fmt", "yuv420p"),
            *("-c:a", cfg.audio_codec, "-b:a", cfg.audio_bitrate),
            *(
                "-map_metadata",
                "-1",
                "-fflags",
                "+bitexact",
                "-flags:v",
                "+bitexact",
                "-flags:a",
                "+bitexact",
            ),
            *("-movflags", "+faststart", out),
        ]
        _ffmpeg(args, "cannot encode the noisy clip", cfg.ffmpeg_timeout_s, audio.astype("<f4").tobytes())
        with open(out, "rb") as f:
            data = f.read()
    storage.write_bytes(out_uri, data)
    return len(data)
