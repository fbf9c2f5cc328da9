"""MER-NOISE (MER2024 §2.2): the ``noise`` config section and what one clip's corruption is.

Per clip, from a seed of its own (``clip_seed``: the run's ``noise.seed`` and the clip name, so a
rerun or a resumed run draws the same), ``draw`` picks a speech-to-noise ratio uniformly in
``snr_db`` (the paper: 5-10 dB), a noise file from the noise folder (the paper: MUSAN's speech
subset; music and noise may carry emotion of their own), a start offset in it, and a blur factor
from ``blur_factors`` (down-sample by the factor, then up-sample back to the clip's size).
``mix_at_snr`` scales the noise so ``10*log10(P_signal / P_noise)`` is the drawn SNR, powers being
mean squares over the whole clip (all channels), and measures it back; a mix that would clip is
scaled down as a whole (signal and noise alike, so the SNR stays; the gain is recorded).
``noise_window`` loops or trims the noise to the clip's length from the drawn offset.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import posixpath

import numpy as np

from core.config import Config, check_range
from core.resources import Resources
from pipelines.config import VIDEO_SUFFIXES

log = logging.getLogger(__name__)

NOISE_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
PEAK = 0.99  # a mix whose peak passes this is scaled down as a whole (AAC input must not clip)


@dataclasses.dataclass(frozen=True)
class NoiseConfig(Config):
    """The ``noise`` section: what ``emer noise`` draws per clip and how it writes the noisy clip."""

    seed: int = 0  # run seed; each clip's own seed is derived from it and the clip name
    snr_db: list[float] = dataclasses.field(default_factory=lambda: [5.0, 10.0])  # [low, high], uniform
    blur_factors: list[int] = dataclasses.field(default_factory=lambda: [1, 2, 4])  # 1 = no blur
    extensions: list[str] = dataclasses.field(default_factory=lambda: list(VIDEO_SUFFIXES))  # clips
    noise_extensions: list[str] = dataclasses.field(default_factory=lambda: list(NOISE_SUFFIXES))
    video_codec: str = "libx264"  # the noisy clip is always re-encoded (the blur changes every frame)
    crf: int = 18  # x264 quality; 18 is visually lossless, so blur factor 1 stays near the original
    preset: str = "veryfast"
    audio_codec: str = "aac"
    audio_bitrate: str = "128k"
    max_clip_bytes: int = 512 * 2**20  # larger clips fail unread
    ffmpeg_timeout_s: float = 300.0  # per ffmpeg call
    noise_cache: int = 8  # decoded noise files kept per actor
    max_failure_fraction: float = 0.5  # more failed clips than this share: exit non-zero
    max_errored_blocks: int = 20  # clips lost to crashed workers before the job aborts; -1 = no limit
    batch_size: int = 1  # clips per batch of the Ray job
    pool: Resources = Resources()  # CPU actors: one CPU each, as many as the cluster allows

    def problems(self) -> list[str]:
        out: list[str] = []
        if len(self.snr_db) != 2 or self.snr_db[0] > self.snr_db[1]:
            out.append(f"noise.snr_db = {self.snr_db!r}: must be [low, high] with low <= high, e.g. [5, 10]")
        if not self.blur_factors or any(f < 1 or f > 64 for f in self.blur_factors):
            out.append(
                f"noise.blur_factors = {self.blur_factors!r}: must be a non-empty list of integers "
                "between 1 (no blur) and 64, e.g. [1, 2, 4]"
            )
        for key in ("extensions", "noise_extensions"):
            value = getattr(self, key)
            if not value or any(not (e.startswith(".") and len(e) > 1) for e in value):
                out.append(f"noise.{key} = {value!r}: must be a non-empty list of suffixes like '.wav'")
        check_range(out, "noise.crf", self.crf, 0, 51)
        check_range(out, "noise.max_clip_bytes", self.max_clip_bytes, 1, None)
        check_range(out, "noise.ffmpeg_timeout_s", self.ffmpeg_timeout_s, 1.0, None)
        check_range(out, "noise.noise_cache", self.noise_cache, 1, 1024)
        check_range(out, "noise.max_failure_fraction", self.max_failure_fraction, 0.0, 1.0)
        check_range(out, "noise.batch_size", self.batch_size, 1, 1024)
        check_range(out, "noise.max_errored_blocks", self.max_errored_blocks, -1, None)
        return out


@dataclasses.dataclass(frozen=True)
class Draw:
    """What one clip gets; ``offset`` is a fraction of the noise file's length (its samples are
    known only once the file is decoded at the clip's rate)."""

    clip_seed: int
    snr_db: float
    noise_file: str  # URI of the noise file
    offset: float  # in [0, 1)
    blur_factor: int


def clip_seed(run_seed: int, name: str) -> int:
    """A 63-bit seed of the clip's own, from the run seed and the clip name (stable across runs,
    machines and Python versions: a hash, not ``hash()``)."""
    digest = hashlib.sha256(f"mer-noise:{run_seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def draw(cfg: NoiseConfig, name: str, noise_files: list[str]) -> Draw:
    """The clip's SNR, noise file, offset and blur factor; ``noise_files`` in a fixed (sorted) order."""
    seed = clip_seed(cfg.seed, name)
    rng = np.random.default_rng(seed)
    low, high = cfg.snr_db
    return Draw(
        clip_seed=seed,
        snr_db=float(rng.uniform(low, high)),
        noise_file=noise_files[int(rng.integers(len(noise_files)))],
        offset=float(rng.random()),
        blur_factor=int(cfg.blur_factors[int(rng.integers(len(cfg.blur_factors)))]),
    )


def noise_window(noise: np.ndarray, length: int, offset: float) -> tuple[np.ndarray, int]:
    """``length`` samples of mono ``noise`` from ``offset`` (a fraction of its length), looped
    around its end as often as needed; and the start sample."""
    if noise.size == 0:
        raise ValueError("the noise file holds no samples")
    start = min(int(offset * noise.size), noise.size - 1)
    return noise[(start + np.arange(length)) % noise.size], start


def power(x: np.ndarray) -> float:
    """Mean square over every sample (and channel), in float64."""
    return float(np.mean(np.square(x, dtype=np.float64))) if x.size else 0.0


def snr_db(signal: np.ndarray, noise: np.ndarray) -> float:
    """``10*log10(P_signal / P_noise)``; ``noise`` may be mono beside a (samples, channels) signal."""
    return 10.0 * float(np.log10(power(signal) / power(noise)))


def mix_at_snr(signal: np.ndarray, noise: np.ndarray, target_db: float) -> tuple[np.ndarray, float, float]:
    """``signal`` (samples, channels) plus mono ``noise`` (samples,) scaled to ``target_db``.

    Returns the mix (float32), the SNR measured back from the scaled noise, and the gain applied to
    the whole mix to keep its peak under ``PEAK`` (1.0 when none was needed). Raises ``ValueError``
    when the signal or the noise window is silent: no ratio can be set."""
    p_signal, p_noise = power(signal), power(noise)
    if p_signal <= 0.0:
        raise ValueError("the clip's audio track is silent (power 0): no SNR can be set")
    if p_noise <= 0.0:
        raise ValueError("the noise window is silent (power 0): no SNR can be set")
    scale = np.sqrt(p_signal / (p_noise * 10.0 ** (target_db / 10.0)))
    scaled = noise.astype(np.float64) * scale
    measured = snr_db(signal, scaled)
    mix = signal.astype(np.float64) + scaled[:, None]
    peak = float(np.max(np.abs(mix)))
    gain = PEAK / peak if peak > PEAK else 1.0
    return (mix * gain).astype(np.float32), measured, gain


def blur_filter(factor: int, width: int, height: int) -> str:
    """The ffmpeg filter that blurs by ``factor``: area-average down to 1/factor of the size, bilinear
    back up to ``width`` x ``height`` (even numbers: H.264 in 4:2:0 needs them). Factor 1 only
    rounds the size to even."""
    if factor <= 1:
        return f"scale={width}:{height}:flags=bilinear"
    small_w, small_h = max(2, round(width / factor)), max(2, round(height / factor))
    return f"scale={small_w}:{small_h}:flags=area,scale={width}:{height}:flags=bilinear"


def relative_name(uri: str, root: str) -> str:
    """``uri`` relative to the noise folder ``root`` (what the table records)."""
    root = root.rstrip("/").replace("\\", "/")
    uri = uri.replace("\\", "/")
    return posixpath.relpath(uri, root) if uri.startswith(root + "/") else posixpath.basename(uri)
