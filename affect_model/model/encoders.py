"""Frozen encoders: any Hugging Face vision tower over N frames, an audio encoder over 2-second clips.

``VisionEncoder`` loads the vision half of CLIP / SigLIP (or any ``AutoModel`` vision tower) from a
full or vision-only checkpoint and maps ``pixel_values [B, T, 3, H, W]`` to ``[B, T, N, D]`` (N = 1:
the pooled frame embedding, or every patch token). With ``projection`` it loads a full CLIP's vision
tower with its image projection and returns CLIP's image features (``image_embeds``, D = the
projection width: 768 for ViT-L/14), as the official AffectGPT code does. ``AudioEncoder`` loads a
Whisper encoder (from an encoder-only or a full Whisper checkpoint) or a waveform model (HuBERT,
WavLM, wav2vec 2.0) and maps one input per clip ``[B, C, ...]`` to ``[B, C, M, D]`` (M = 1 pooled,
or the clip's encoder frames). Both stay frozen and in eval mode; they run under ``torch.no_grad``.

Audio features per clip are the mean of the encoder's last ``layers`` hidden states (4 by default, as
the AffectGPT framework does with chinese-hubert-large), pooled over time when ``tokens="pooled"``.
Whisper runs on the clip's real length (``window="clip"``): its position table is cut to the clip's
positions, so a 2-s clip costs 100 encoder positions instead of the 1,500 of a 30-s padded window.
We chose this over packing several clips into one 30-s window because it keeps every clip
independent (no attention across clips), works for any clip count and cost scales with the audio.
``window="padded"`` keeps the old behaviour (pad each clip to the checkpoint's window).
"""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
WHISPER_FRAMES_PER_SECOND = 50  # encoder positions per second of audio (mel hop 10 ms, conv stride 2)


def torch_dtype(name: str) -> torch.dtype:
    return _DTYPES[name]


def _auto_config(path: str):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise OSError(
            f"cannot read a model config from {path!r}: pass a Hugging Face id available offline "
            f"or a local folder holding config.json ({err})"
        ) from err


def _vision_config(cfg):
    return getattr(cfg, "vision_config", None) or cfg


def vision_width(path: str, projection: bool = False) -> int:
    """Feature width of the vision tower at ``path`` (reads only its config); ``projection``: the
    width of CLIP's image features (its ``projection_dim``)."""
    cfg = _auto_config(path)
    if projection:
        return int(_projection_dim(path, cfg))
    return int(_vision_config(cfg).hidden_size)


def _projection_dim(path: str, cfg) -> int:
    dim = getattr(cfg, "projection_dim", None)
    if cfg.model_type not in ("clip", "clip_vision_model") or dim is None:
        raise ValueError(
            f"{path}: model.vision_projection needs a CLIP checkpoint with its image projection "
            f"(e.g. openai/clip-vit-large-patch14), got model_type {cfg.model_type!r}"
        )
    return int(dim)


def load_projected_clip(path: str, dtype: torch.dtype) -> nn.Module:
    """CLIP's vision tower with its image projection (``CLIPVisionModelWithProjection``) from a full
    CLIP checkpoint (or a vision-with-projection one); its output's ``image_embeds`` are the features."""
    from transformers import CLIPVisionModelWithProjection

    cfg = _auto_config(path)
    dim = _projection_dim(path, cfg)
    vision = getattr(cfg, "vision_config", None) or cfg
    vision.projection_dim = dim  # a full CLIP keeps it at the top level
    return CLIPVisionModelWithProjection.from_pretrained(path, config=vision, dtype=dtype)


def audio_kind(path: str) -> str:
    """``whisper`` (log-mel input) or ``waveform`` (raw 16 kHz input: HuBERT, WavLM, wav2vec 2.0)."""
    return "whisper" if _auto_config(path).model_type == "whisper" else "waveform"


def audio_positions(path: str) -> int:
    """Encoder positions of a Whisper checkpoint (its input is exactly twice as many mel frames)."""
    return int(_auto_config(path).max_source_positions)


def whisper_clip_positions(clip_seconds: float) -> int:
    """Whisper encoder positions that cover one clip (its log-mel input has twice as many frames)."""
    return math.ceil(clip_seconds * WHISPER_FRAMES_PER_SECOND)


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


def audio_width(path: str) -> int:
    cfg = _auto_config(path)
    return int(cfg.d_model if cfg.model_type == "whisper" else cfg.hidden_size)


def _freeze(model: nn.Module) -> nn.Module:
    model.requires_grad_(False)
    return model.eval()


def load_vision_tower(path: str, dtype: torch.dtype) -> nn.Module:
    """The vision tower alone: ``CLIPVisionModel`` from a full CLIP checkpoint, ``SiglipVisionModel``
    from SigLIP, or ``AutoModel`` for a vision-only checkpoint."""
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

    cfg = _auto_config(path)
    sub = getattr(cfg, "vision_config", None)
    if sub is not None:
        name = MODEL_MAPPING_NAMES.get(sub.model_type)
        if name is None:
            raise ValueError(f"{path}: no transformers class for its vision tower {sub.model_type!r}")
        return getattr(transformers, name).from_pretrained(path, dtype=dtype)
    return transformers.AutoModel.from_pretrained(path, dtype=dtype)


def load_audio_encoder(path: str, dtype: torch.dtype) -> nn.Module:
    """A Whisper encoder (encoder-only folder or full Whisper checkpoint) or a waveform ``AutoModel``."""
    import transformers
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    cfg = _auto_config(path)
    if cfg.model_type != "whisper":
        return transformers.AutoModel.from_pretrained(path, dtype=dtype)
    if "WhisperEncoder" in (cfg.architectures or []):
        return WhisperEncoder.from_pretrained(path, dtype=dtype)
    full = transformers.WhisperModel.from_pretrained(path, dtype=dtype)  # full checkpoint: keep the encoder
    return full.get_encoder()


class VisionEncoder(nn.Module):
    """Frozen vision tower applied frame by frame."""

    def __init__(
        self, path: str, dtype: torch.dtype = torch.float32, tokens: str = "pooled", projection: bool = False
    ) -> None:
        super().__init__()
        if projection and tokens != "pooled":
            raise ValueError(
                "VisionEncoder: projection=True gives one image feature per frame (tokens='pooled')"
            )
        loaded = load_projected_clip(path, dtype) if projection else load_vision_tower(path, dtype)
        self.model = _freeze(loaded)
        self.tokens = tokens
        self.projection = projection
        cfg = self.model.config
        self.hidden_size = int(cfg.projection_dim if projection else _vision_config(cfg).hidden_size)

    @torch.no_grad()
    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, H, W]`` -> ``[B, T, N, D]``."""
        if pixel_values.dim() != 5:
            raise ValueError(
                f"pixel_values: expected [batch, frames, 3, H, W], got {tuple(pixel_values.shape)}"
            )
        b, t = pixel_values.shape[:2]
        flat = pixel_values.flatten(0, 1).to(self.model.dtype)
        out = self.model(pixel_values=flat)
        if self.projection:
            feats = out.image_embeds.unsqueeze(1)
        elif self.tokens == "pooled":
            pooled = getattr(out, "pooler_output", None)
            feats = (pooled if pooled is not None else out.last_hidden_state.mean(1)).unsqueeze(1)
        else:
            feats = out.last_hidden_state
        return feats.reshape(b, t, feats.shape[1], feats.shape[2])


class AudioEncoder(nn.Module):
    """Frozen audio encoder applied clip by clip: mean of the last ``layers`` hidden states per clip."""

    def __init__(
        self,
        path: str,
        dtype: torch.dtype = torch.float32,
        tokens: str = "pooled",
        clip_seconds: float = 2.0,
        layers: int = 4,
        window: str = "clip",
    ) -> None:
        super().__init__()
        model = load_audio_encoder(path, dtype)
        self.kind = "whisper" if model.config.model_type == "whisper" else "waveform"
        self.window = window
        self.positions = whisper_clip_positions(clip_seconds) if self.kind == "whisper" else 0
        if self.kind == "whisper" and window == "clip":
            model = truncate_whisper_positions(model, self.positions)
        self.model = _freeze(model)
        self.tokens = tokens
        self.clip_seconds = clip_seconds
        self.layers = layers
        cfg = self.model.config
        self.hidden_size = int(cfg.d_model if self.kind == "whisper" else cfg.hidden_size)

    @classmethod
    def from_config(cls, cfg, dtype: torch.dtype) -> AudioEncoder:
        """The audio encoder a ``ModelConfig`` describes."""
        return cls(
            cfg.audio_model, dtype, cfg.audio_tokens, cfg.clip_seconds, cfg.audio_layers, cfg.audio_window
        )

    def _hidden(self, **inputs) -> torch.Tensor:
        """Mean of the last ``layers`` hidden states (1: the last hidden state) ``[N, frames, D]``."""
        if self.layers <= 1:
            return self.model(**inputs).last_hidden_state
        states = self.model(**inputs, output_hidden_states=True).hidden_states
        return torch.stack(states[-self.layers :]).mean(0)

    @torch.no_grad()
    def forward(self, audio_features: torch.Tensor) -> torch.Tensor:
        """Whisper: log-mel ``[B, C, mels, frames]``; waveform models: ``[B, C, samples]``.
        Returns ``[B, C, M, D]``."""
        want = 4 if self.kind == "whisper" else 3
        if audio_features.dim() != want:
            shape = "[batch, clips, mels, frames]" if want == 4 else "[batch, clips, samples]"
            raise ValueError(
                f"audio_features: expected {shape} for a {self.kind} encoder, "
                f"got {tuple(audio_features.shape)}"
            )
        b, c = audio_features.shape[:2]
        flat = audio_features.flatten(0, 1).to(self.model.dtype)
        if self.kind == "whisper":
            # padded window: keep the positions that cover the clip itself (a no-op for window="clip")
            hidden = self._hidden(input_features=flat)[:, : self.positions]
        else:
            hidden = self._hidden(input_values=flat)
        feats = hidden.mean(1, keepdim=True) if self.tokens == "pooled" else hidden
        return feats.reshape(b, c, feats.shape[1], feats.shape[2])
