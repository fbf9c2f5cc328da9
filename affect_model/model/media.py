"""Model-side preprocessing of one sample's media: JPEG frames -> pixel values, 16 kHz audio -> clips.

``MediaProcessor`` uses the frozen encoders' own processors, loaded from the same ids / paths as the
encoders: the vision tower's image processor (``AutoImageProcessor``) and the audio encoder's
feature extractor, used as the encoder's family says (``affect_model.model.families``:
``WhisperFeatureExtractor`` -> log-mel per clip, of the clip's own length unless
``audio_window = "padded"``; ``Wav2Vec2FeatureExtractor`` -> waveform per clip, normalised as the
checkpoint's preprocessor config says). Frames are sampled uniformly to ``frames``; audio is cut into
``audio_clips`` clips of ``clip_seconds`` (consecutive, or spread evenly over longer audio).

``media_sampling = "affectgpt"`` samples as the official code: frames at ``arange(0, n, n / k)``
(every frame when there are fewer, the last one repeated up to k), each resized to the processor's
input size without keeping the aspect ratio before the processor runs (as the official decoder reads
224 x 224); audio shorter than one clip is zero-padded to it, then exactly ``audio_clips`` clips start
evenly from 0 to the end (overlapping when the audio is shorter than all of them end to end). Every
frame and clip is real (masks all true).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import torch

from affect_model.model import encoders
from affect_model.model.config import ModelConfig
from affect_model.model.families import audio_family
from core.schema import decode_audio


def decode_jpeg(data: bytes):
    from PIL import Image

    try:
        return Image.open(io.BytesIO(data)).convert("RGB")
    except Exception as err:  # PIL raises several types for bad data
        raise ValueError(f"frame: not a decodable image ({len(data)} bytes): {err}") from err


def uniform_indices(n: int, k: int) -> list[int]:
    """k indices spread evenly over range(n) (repeats when n < k)."""
    if n <= 0:
        return []
    return [int(round(x)) for x in np.linspace(0, n - 1, k)]


def clip_starts(n_samples: int, clip: int, k: int) -> list[int]:
    """Start samples of up to k clips: consecutive when the audio fits, else spread evenly."""
    if n_samples <= 0:
        return []
    count = -(-n_samples // clip)
    if count <= k:
        return [i * clip for i in range(count)]
    return [int(round(x)) for x in np.linspace(0, n_samples - clip, k)]


def official_indices(n: int, k: int) -> list[int]:
    """The official frame indices: ``arange(0, n, n / min(n, k))`` floored, the last repeated up to k."""
    if n <= 0:
        return []
    idx = [int(x) for x in np.arange(0, n, n / min(n, k))][:k]
    return idx + [idx[-1]] * (k - len(idx))


def official_clip_starts(n_samples: int, clip: int, k: int, sample_rate: int) -> list[int]:
    """Start samples of the official k clips over ``n_samples`` (already padded to at least one clip):
    start i at ``i * (duration - clip) / (k - 1)`` seconds, cut at ``int(seconds * rate)``."""
    duration, seconds = n_samples / sample_rate, clip / sample_rate
    step = max(duration - seconds, 0.0) / max(k - 1, 1)
    return [int(i * step * sample_rate) for i in range(k)]


class MediaProcessor:
    """Frames and audio of one sample -> encoder inputs with masks of the real frames / clips."""

    def __init__(self, cfg: ModelConfig) -> None:
        from transformers import AutoFeatureExtractor, AutoImageProcessor

        self.cfg = cfg
        self.image_processor = AutoImageProcessor.from_pretrained(cfg.vision_model) if cfg.use_video else None
        self.feature_extractor = (
            AutoFeatureExtractor.from_pretrained(cfg.audio_model) if cfg.use_audio else None
        )
        self.audio_cfg = encoders.audio_config(cfg.audio_model) if cfg.use_audio else None
        self.audio_family = audio_family(self.audio_cfg.model_type) if cfg.use_audio else None
        if self.feature_extractor is not None:
            self._check_audio()

    def _check_audio(self) -> None:
        fe, cfg = self.feature_extractor, self.cfg
        if fe.sampling_rate != cfg.sample_rate:
            raise ValueError(
                f"{cfg.audio_model}: feature extractor expects {fe.sampling_rate} Hz but "
                f"model.sample_rate = {cfg.sample_rate}; resample the audio or fix the config"
            )
        self.audio_family.check_extractor(fe, cfg, self.audio_cfg)

    def video(self, frames: Sequence[bytes]) -> tuple[torch.Tensor, torch.Tensor]:
        """JPEG bytes -> ``pixel_values [T, 3, H, W]`` and ``frame_mask [T]`` (False for padding)."""
        t = self.cfg.frames
        official = self.cfg.media_sampling == "affectgpt"
        idx = official_indices(len(frames), t) if official else uniform_indices(len(frames), t)
        images = [decode_jpeg(frames[i]) for i in idx]
        mask = torch.zeros(t, dtype=torch.bool)
        if not images:
            size = self._image_size()
            return torch.zeros(t, 3, *size), mask
        if official:
            h, w = self._image_size()
            images = [im.resize((w, h)) for im in images]  # aspect ratio not kept (Pillow default filter)
        pixels = self.image_processor(images=images, return_tensors="pt")["pixel_values"].float()
        mask[:] = True
        return pixels, mask

    def _image_size(self) -> tuple[int, int]:
        from PIL import Image

        blank = Image.new("RGB", (8, 8))
        return tuple(self.image_processor(images=[blank], return_tensors="pt")["pixel_values"].shape[-2:])

    def audio(self, waveform) -> tuple[torch.Tensor, torch.Tensor]:
        """16 kHz waveform -> one encoder input per clip ``[C, ...]`` and ``clip_mask [C]``."""
        wave = decode_audio(waveform)
        clip, c = self.cfg.clip_samples, self.cfg.audio_clips
        clips = np.zeros((c, clip), dtype=np.float32)
        if self.cfg.media_sampling == "affectgpt":
            wave = np.pad(wave, (0, max(0, clip - len(wave))))
            starts = official_clip_starts(len(wave), clip, c, self.cfg.sample_rate)
        else:
            starts = clip_starts(len(wave), clip, c)
        for i, s in enumerate(starts):
            piece = wave[s : s + clip]
            clips[i, : len(piece)] = piece
        mask = torch.zeros(c, dtype=torch.bool)
        mask[: len(starts)] = True
        feats = self.audio_family.extract(self.feature_extractor, clips, self.cfg)
        return torch.from_numpy(np.asarray(feats, dtype=np.float32)), mask
