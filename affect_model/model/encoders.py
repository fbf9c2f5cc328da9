"""Frozen encoders: any Hugging Face vision tower over N frames, an audio encoder over 2-second clips.

``VisionEncoder`` loads the vision half of CLIP / SigLIP (or any ``AutoModel`` vision tower) from a
full or vision-only checkpoint and maps ``pixel_values [B, T, 3, H, W]`` to ``[B, T, N, D]`` (N = 1:
the pooled frame embedding, or every patch token). With ``projection`` it loads a full CLIP's vision
tower with its image projection and returns CLIP's image features (``image_embeds``, D = the
projection width: 768 for ViT-L/14), as the official AffectGPT code does. ``AudioEncoder`` loads the
audio encoder its checkpoint's family says (``affect_model.model.families``: a Whisper encoder from an
encoder-only or a full Whisper checkpoint, or a waveform model: HuBERT, WavLM, wav2vec 2.0) and maps
one input per clip ``[B, C, ...]`` to ``[B, C, M, D]`` (M = 1 pooled, or the clip's encoder frames).
Both stay frozen and in eval mode; they run under ``torch.no_grad``.

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

import torch
from torch import nn

from affect_model.model.families import audio_family, vision_family

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


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
    if dim is None or not vision_family(cfg.model_type).projection:
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


def audio_config(path: str):
    """The transformers config of the audio checkpoint at ``path`` (its family:
    ``audio_family(cfg.model_type)``)."""
    return _auto_config(path)


def audio_width(path: str) -> int:
    cfg = _auto_config(path)
    return audio_family(cfg.model_type).width(cfg)


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
    """The audio encoder of the checkpoint at ``path``, loaded as its family says."""
    cfg = _auto_config(path)
    return audio_family(cfg.model_type).load(path, cfg, dtype)


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
        self.family = audio_family(model.config.model_type)
        self.window = window
        self.positions = self.family.clip_positions(clip_seconds)  # kept per clip; 0 = all
        self.model = _freeze(self.family.fit_window(model, self.positions, window))
        self.tokens = tokens
        self.clip_seconds = clip_seconds
        self.layers = layers
        self.hidden_size = self.family.width(self.model.config)

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
        """The family's input per clip (Whisper: log-mel ``[B, C, mels, frames]``; waveform models:
        ``[B, C, samples]``) -> ``[B, C, M, D]``."""
        family = self.family
        if audio_features.dim() != family.input_dims:
            raise ValueError(
                f"audio_features: expected {family.input_shape} for a {family.name} encoder, "
                f"got {tuple(audio_features.shape)}"
            )
        b, c = audio_features.shape[:2]
        flat = audio_features.flatten(0, 1).to(self.model.dtype)
        hidden = self._hidden(**{family.input_key: flat})
        if self.positions:  # a padded window: keep the positions that cover the clip itself
            hidden = hidden[:, : self.positions]
        feats = hidden.mean(1, keepdim=True) if self.tokens == "pooled" else hidden
        return feats.reshape(b, c, feats.shape[1], feats.shape[2])
