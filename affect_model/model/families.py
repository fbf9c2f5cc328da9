"""Encoder families: one registry entry per family says how it loads, windows its input and counts FLOPs.

Audio (``AUDIO_FAMILIES``): ``whisper`` (log-mel input per clip; the encoder's position table cut to
the clip's own length with ``model.audio_window = clip``, or each clip padded to the checkpoint's 30-s
window with ``padded``) and ``waveform`` (raw 16 kHz samples per clip: HuBERT, wav2vec 2.0, WavLM,
data2vec-audio). Vision (``VISION_FAMILIES``): ``clip`` (a class token, and CLIP's image projection
for ``model.vision_projection``) and ``siglip`` (no class token, no projection). ``audio_family`` /
``vision_family`` find the entry of a checkpoint config's ``model_type``; ``encoders``, ``media``,
``flops`` and the benchmarks ask them and never compare family names. A new family is one entry here.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from affect_model.model.config import ModelConfig
from affect_model.model.flop_math import conv_out, transformer_layer

if TYPE_CHECKING:  # transformers is imported where a model loads
    from transformers import PretrainedConfig, SequenceFeatureExtractor

WHISPER_FRAMES_PER_SECOND = 50  # encoder positions per second of audio (mel hop 10 ms, conv stride 2)
WHISPER_WINDOW_POSITIONS = 1500  # a 30-s window


@dataclasses.dataclass(frozen=True)
class AudioFamily:
    """A family of audio encoders taking raw waveform clips (the default behaviour of every hook)."""

    name: str
    model_types: tuple[str, ...]  # transformers ``model_type``s of its checkpoints
    input_key: str = "input_values"  # the encoder's keyword for a batch of clips
    input_shape: str = "[batch, clips, samples]"  # what ``AudioEncoder.forward`` takes

    @property
    def input_dims(self) -> int:
        return self.input_shape.count(",") + 1

    def load(self, path: str, cfg: PretrainedConfig, dtype: torch.dtype) -> nn.Module:
        import transformers

        return transformers.AutoModel.from_pretrained(path, dtype=dtype)

    def width(self, cfg: PretrainedConfig) -> int:
        return int(cfg.hidden_size)

    def clip_positions(self, clip_seconds: float) -> int:
        """Encoder positions kept per clip (0 = all the encoder gives)."""
        return 0

    def fit_window(self, model: nn.Module, positions: int, window: str) -> nn.Module:
        """The encoder made to take one clip's input as ``model.audio_window`` says."""
        return model

    def check_extractor(
        self, fe: SequenceFeatureExtractor, model_cfg: ModelConfig, cfg: PretrainedConfig
    ) -> None:
        """Refuse a feature extractor that does not fit the encoder (``cfg``) and ``model_cfg``."""

    def extract(self, fe: SequenceFeatureExtractor, clips: np.ndarray, model_cfg: ModelConfig) -> np.ndarray:
        """One encoder input per clip of ``clips [C, samples]``."""
        out = fe(
            list(clips),
            sampling_rate=model_cfg.sample_rate,
            padding="max_length",
            max_length=model_cfg.clip_samples,
            return_tensors="np",
        )
        return out[self.input_key]

    def input_size(self, cfg: PretrainedConfig, model_cfg: ModelConfig) -> tuple[int, ...]:
        """The shape of one clip's encoder input (what ``extract`` gives per clip)."""
        return (model_cfg.clip_samples,)

    def encoder_flops(
        self, cfg: PretrainedConfig, model_cfg: ModelConfig, window: str | None = None
    ) -> tuple[int, int, str]:
        """(forward FLOPs of one clip, encoder frames per clip, the window used)."""
        flops, frames = waveform_encoder(cfg, model_cfg.clip_samples)
        return flops, frames, "clip"


@dataclasses.dataclass(frozen=True)
class WhisperFamily(AudioFamily):
    """Whisper's encoder: log-mel input, the real clip length or the checkpoint's padded window."""

    input_key: str = "input_features"
    input_shape: str = "[batch, clips, mels, frames]"

    def load(self, path: str, cfg: PretrainedConfig, dtype: torch.dtype) -> nn.Module:
        import transformers
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        if "WhisperEncoder" in (cfg.architectures or []):
            return WhisperEncoder.from_pretrained(path, dtype=dtype)
        full = transformers.WhisperModel.from_pretrained(path, dtype=dtype)  # full checkpoint: the encoder
        return full.get_encoder()

    def width(self, cfg: PretrainedConfig) -> int:
        return int(cfg.d_model)

    def clip_positions(self, clip_seconds: float) -> int:
        return math.ceil(clip_seconds * WHISPER_FRAMES_PER_SECOND)

    def fit_window(self, model: nn.Module, positions: int, window: str) -> nn.Module:
        return truncate_whisper_positions(model, positions) if window == "clip" else model

    def check_extractor(
        self, fe: SequenceFeatureExtractor, model_cfg: ModelConfig, cfg: PretrainedConfig
    ) -> None:
        name = model_cfg.audio_model
        if fe.n_samples < model_cfg.clip_samples:
            raise ValueError(
                f"{name}: Whisper window {fe.chunk_length} s is shorter than "
                f"model.clip_seconds = {model_cfg.clip_seconds}"
            )
        frames = 2 * int(cfg.max_source_positions)
        if model_cfg.audio_window == "padded" and fe.nb_max_frames != frames:
            raise ValueError(
                f"{name}: the feature extractor makes {fe.nb_max_frames} mel frames but "
                f"the encoder takes exactly {frames}; use the checkpoint's own preprocessor_config.json"
            )

    def extract(self, fe: SequenceFeatureExtractor, clips: np.ndarray, model_cfg: ModelConfig) -> np.ndarray:
        length = {}  # padded: the extractor's own 30-s window
        if model_cfg.audio_window != "padded":  # real-length log-mel: pad only up to the clip's positions
            positions = self.clip_positions(model_cfg.clip_seconds)
            length = {"padding": "max_length", "max_length": 2 * positions * fe.hop_length}
        out = fe(list(clips), sampling_rate=model_cfg.sample_rate, return_tensors="np", **length)
        return out[self.input_key]

    def input_size(self, cfg: PretrainedConfig, model_cfg: ModelConfig) -> tuple[int, ...]:
        return (cfg.num_mel_bins, 2 * self.clip_positions(model_cfg.clip_seconds))

    def encoder_flops(
        self, cfg: PretrainedConfig, model_cfg: ModelConfig, window: str | None = None
    ) -> tuple[int, int, str]:
        clip = self.clip_positions(model_cfg.clip_seconds)
        window = window or model_cfg.audio_window
        run = cfg.max_source_positions if window == "padded" else clip
        return whisper_encoder(cfg, run), clip, window


@dataclasses.dataclass(frozen=True)
class VisionFamily:
    """A family of ViT vision towers: whether it has a class token and offers CLIP's image projection."""

    name: str
    model_types: tuple[str, ...]
    class_token: bool
    projection: bool


AUDIO_FAMILIES = (
    WhisperFamily("whisper", ("whisper",)),
    AudioFamily("waveform", ("hubert", "wav2vec2", "wavlm", "data2vec-audio")),
)
VISION_FAMILIES = (
    VisionFamily("clip", ("clip", "clip_vision_model"), class_token=True, projection=True),
    VisionFamily("siglip", ("siglip", "siglip_vision_model"), class_token=False, projection=False),
)


def _find(families: tuple, model_type: str, what: str):
    for family in families:
        if model_type in family.model_types:
            return family
    known = ", ".join(t for f in families for t in f.model_types)
    raise ValueError(
        f"{what} model_type {model_type!r}: no encoder family for it in affect_model.model.families "
        f"(known: {known}); add an entry there"
    )


def audio_family(model_type: str) -> AudioFamily:
    """The audio family of a checkpoint config's ``model_type``."""
    return _find(AUDIO_FAMILIES, model_type, "audio encoder")


def vision_family(model_type: str) -> VisionFamily:
    """The vision family of a checkpoint config's ``model_type``."""
    return _find(VISION_FAMILIES, model_type, "vision tower")


def truncate_whisper_positions(encoder: nn.Module, positions: int) -> nn.Module:
    """Keep the first ``positions`` rows of a Whisper encoder's position table, so that it takes log-mel
    input of ``2 * positions`` frames (the real clip) instead of its full window."""
    if positions >= encoder.config.max_source_positions:
        return encoder
    old = encoder.embed_positions
    new = nn.Embedding(positions, old.embedding_dim, device=old.weight.device, dtype=old.weight.dtype)
    new.weight.data.copy_(old.weight.data[:positions])
    encoder.embed_positions = new.requires_grad_(False)
    encoder.config.max_source_positions = positions
    encoder.max_source_positions = positions
    return encoder


def waveform_encoder(cfg: PretrainedConfig, samples: int) -> tuple[int, int]:
    """HuBERT / wav2vec 2.0 / WavLM on ``samples`` raw samples: ``(flops, frames)``."""
    length, ch_in, total = samples, 1, 0
    for dim, kernel, stride in zip(cfg.conv_dim, cfg.conv_kernel, cfg.conv_stride, strict=True):
        length = conv_out(length, kernel, stride)
        total += 2 * length * ch_in * dim * kernel
        ch_in = dim
    d, k = cfg.hidden_size, cfg.num_conv_pos_embeddings
    total += 2 * length * ch_in * d  # feature projection
    pos_len = conv_out(length, k, 1, k // 2)  # grouped positional conv (one extra frame is trimmed)
    total += 2 * pos_len * d * (d // cfg.num_conv_pos_embedding_groups) * k
    total += cfg.num_hidden_layers * transformer_layer(length, d, cfg.intermediate_size)
    return total, length


def whisper_encoder(cfg: PretrainedConfig, positions: int) -> int:
    """Whisper's encoder on ``2 * positions`` log-mel frames (1500 positions: the 30-s window)."""
    d = cfg.d_model
    conv = 2 * (2 * positions) * cfg.num_mel_bins * d * 3 + 2 * positions * d * d * 3
    return conv + cfg.encoder_layers * transformer_layer(positions, d, cfg.encoder_ffn_dim)
