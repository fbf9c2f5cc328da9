"""The official AffectGPT layout (MERTools ``MER2025_Track23``, "bestsetup_bestfusion"): trainable heads.

Per modality, attention pooling: one ``Linear(D, 1)`` score per time step (frame or 2-s clip), the
features summed with those scores as weights (no softmax), then a projection into the LLM: one token
per modality. The pre-fusion works on the time-averaged raw encoder features: both are mapped to the
wider of the two widths, ``attention_mlp`` (2M -> M) then ``fc_att`` (M -> 2) give one weight per
modality, the weighted sum goes through ``multi_llama_proj``: one fused token.

Module names are the official checkpoint's (``affectgpt_proj`` is the video projection), so a state dict
maps one to one (``affect_model.model.official_checkpoint``). Masks (emer's own media sampling) drop
padded steps from the sums and means; with the official sampling every step is real and the maths is
the official one.
"""

from __future__ import annotations

import torch
from torch import nn

# official module name -> (input width key, output width key); widths: v (video), a (audio),
# m = max(v, a), h (LLM). The official model also owns ``image_llama_proj`` (v -> h) for single images,
# unused by the video task: see official_checkpoint.
HEADS = {
    "video_attention_mlp": ("v", "1"),
    "affectgpt_proj": ("v", "h"),
    "audio_attention_mlp": ("a", "1"),
    "audio_llama_proj": ("a", "h"),
    "multi_video_embs": ("v", "m"),
    "multi_audio_embs": ("a", "m"),
    "attention_mlp": ("2m", "m"),
    "fc_att": ("m", "2"),
    "multi_llama_proj": ("m", "h"),
}
FUSION_HEADS = ("multi_video_embs", "multi_audio_embs", "attention_mlp", "fc_att", "multi_llama_proj")


def head_shapes(video: int, audio: int, llm: int, fusion: bool = True) -> dict[str, tuple[int, int]]:
    """``{module: (in, out)}`` of the official heads for encoder widths ``video`` / ``audio`` and LLM
    width ``llm`` (the fusion heads only with ``fusion``)."""
    m = max(video, audio)
    width = {"v": video, "a": audio, "m": m, "2m": 2 * m, "h": llm, "1": 1, "2": 2}
    return {
        name: (width[i], width[o]) for name, (i, o) in HEADS.items() if fusion or name not in FUSION_HEADS
    }


def _masked(feats: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``[B, T, D]`` features with padded steps zeroed (``mask`` ``[B, T]``, True = real)."""
    if mask is None:
        return feats
    return feats * mask.to(feats.dtype).unsqueeze(-1)


def attention_pool(feats: torch.Tensor, score: nn.Linear, mask: torch.Tensor | None) -> torch.Tensor:
    """``sum_t score(x_t) * x_t`` over time (no softmax), padded steps left out: ``[B, T, D] -> [B, D]``."""
    weights = _masked(score(feats), mask)  # [B, T, 1]
    return (feats.transpose(1, 2) @ weights).squeeze(-1)


def time_mean(feats: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the real time steps: ``[B, T, D] -> [B, D]``."""
    if mask is None:
        return feats.mean(1)
    count = mask.sum(1, keepdim=True).clamp(min=1).to(feats.dtype)
    return _masked(feats, mask).sum(1) / count


class OfficialHeads(nn.Module):
    """The official trainable heads for video width ``video``, audio width ``audio`` and LLM width
    ``llm``. ``forward`` returns ``{"video", "audio"[, "fusion"]}`` tokens ``[B, 1, llm]``."""

    def __init__(self, video: int, audio: int, llm: int, fusion: bool = True) -> None:
        super().__init__()
        self.fusion = fusion
        for name, (i, o) in head_shapes(video, audio, llm, fusion).items():
            self.add_module(name, nn.Linear(i, o))

    def forward(
        self,
        video: torch.Tensor,
        audio: torch.Tensor,
        frame_mask: torch.Tensor | None = None,
        clip_mask: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """``video`` ``[B, T, Dv]`` (one feature per frame), ``audio`` ``[B, C, Da]`` (one per clip)."""
        dtype = self.affectgpt_proj.weight.dtype
        video, audio = video.to(dtype), audio.to(dtype)
        out = {
            "video": self.affectgpt_proj(attention_pool(video, self.video_attention_mlp, frame_mask)),
            "audio": self.audio_llama_proj(attention_pool(audio, self.audio_attention_mlp, clip_mask)),
        }
        if self.fusion:
            v = self.multi_video_embs(time_mean(video, frame_mask))
            a = self.multi_audio_embs(time_mean(audio, clip_mask))
            weights = self.fc_att(self.attention_mlp(torch.cat([v, a], dim=1)))  # [B, 2]
            fused = (torch.stack([v, a], dim=2) @ weights.unsqueeze(2)).squeeze(2)  # [B, M]
            out["fusion"] = self.multi_llama_proj(fused)
        return {k: t.unsqueeze(1) for k, t in out.items()}
