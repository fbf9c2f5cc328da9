"""Trainable glue between the frozen encoders and the LLM: Q-Formers and audio-video pre-fusion.

``ModalityQFormer``: learned query tokens + a BLIP-2 Q-Former (transformers' ``Blip2QFormerModel``,
cross-attention in every layer) over one modality's encoder features, with learned frame / clip
position embeddings, as in Video-LLaMA. ``QFormerFusion`` and ``AttentionFusion`` implement the
pre-fusion of paper 002: both modalities' query outputs are fused outside the LLM, either by a
third Q-Former or by learned queries attending (softmax over all audio and video tokens).
"""

from __future__ import annotations

import torch
from torch import nn

from affect_model.model.config import ModelConfig

INIT_STD = 0.02


def qformer_config(cfg: ModelConfig, encoder_width: int, layers: int):
    from transformers import Blip2QFormerConfig

    return Blip2QFormerConfig(
        hidden_size=cfg.qformer_hidden,
        num_hidden_layers=layers,
        num_attention_heads=cfg.qformer_heads,
        intermediate_size=cfg.qformer_intermediate,
        hidden_dropout_prob=cfg.qformer_dropout,
        attention_probs_dropout_prob=cfg.qformer_dropout,
        encoder_hidden_size=encoder_width,
        cross_attention_frequency=1,
        initializer_range=INIT_STD,
    )


def _valid_mask(mask: torch.Tensor | None, b: int, t: int, device: torch.device) -> torch.Tensor:
    """[B, T] bool; a row with nothing valid (e.g. a clip without audio) attends to its zero padding
    instead of producing NaNs."""
    if mask is None:
        return torch.ones(b, t, dtype=torch.bool, device=device)
    mask = mask.to(device=device, dtype=torch.bool)
    empty = ~mask.any(dim=1, keepdim=True)
    return mask | empty


class ModalityQFormer(nn.Module):
    """Queries cross-attending to ``[B, T, N, D]`` encoder features (T frames or clips of N tokens)."""

    def __init__(self, cfg: ModelConfig, encoder_width: int, num_queries: int, positions: int) -> None:
        super().__init__()
        from transformers import Blip2QFormerModel

        self.position = nn.Embedding(positions, encoder_width)
        nn.init.normal_(self.position.weight, std=INIT_STD)
        self.query_tokens = nn.Parameter(torch.randn(1, num_queries, cfg.qformer_hidden) * INIT_STD)
        self.qformer = Blip2QFormerModel(qformer_config(cfg, encoder_width, cfg.qformer_layers))

    def forward(self, feats: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``feats [B, T, N, D]``, ``mask [B, T]`` (True = real frame/clip) -> ``[B, queries, hidden]``."""
        if feats.dim() != 4:
            raise ValueError(
                f"encoder features: expected [batch, positions, tokens, width], got {tuple(feats.shape)}"
            )
        b, t, n, _ = feats.shape
        if t > self.position.num_embeddings:
            raise ValueError(
                f"{t} frames/clips but the Q-Former has {self.position.num_embeddings} positions"
            )
        pos = self.position(torch.arange(t, device=feats.device))
        x = feats.to(pos.dtype) + pos[None, :, None, :]
        enc_mask = _valid_mask(mask, b, t, feats.device).repeat_interleave(n, dim=1)
        queries = self.query_tokens.expand(b, -1, -1)
        out = self.qformer(
            query_embeds=queries,
            encoder_hidden_states=x.reshape(b, t * n, -1),
            encoder_attention_mask=enc_mask.long(),
        )
        return out.last_hidden_state


class QFormerFusion(nn.Module):
    """Pre-fusion by a Q-Former whose queries attend to the video and audio query outputs together."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        from transformers import Blip2QFormerModel

        hidden = cfg.qformer_hidden
        self.modality = nn.Embedding(2, hidden)
        nn.init.normal_(self.modality.weight, std=INIT_STD)
        self.query_tokens = nn.Parameter(torch.randn(1, cfg.fusion_queries, hidden) * INIT_STD)
        self.qformer = Blip2QFormerModel(qformer_config(cfg, hidden, cfg.fusion_layers))

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        both = torch.cat([video + self.modality.weight[0], audio + self.modality.weight[1]], dim=1)
        queries = self.query_tokens.expand(both.shape[0], -1, -1)
        return self.qformer(query_embeds=queries, encoder_hidden_states=both).last_hidden_state


class AttentionFusion(nn.Module):
    """Pre-fusion by attention: each learned query scores every video and audio token, the scores are
    softmax-normalised over all of them, and the query's output is the weighted sum of the tokens.
    With one query this is the score-softmax-weighted-sum of paper 002's attention fusion."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        hidden = cfg.qformer_hidden
        self.norm = nn.LayerNorm(hidden)
        self.key = nn.Linear(hidden, hidden)
        self.queries = nn.Parameter(torch.randn(cfg.fusion_queries, hidden) * INIT_STD)
        self.scale = hidden**-0.5
        self.last_weights: torch.Tensor | None = None  # [B, queries, tokens], for inspection

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        tokens = torch.cat([video, audio], dim=1)  # [B, S, H]
        keys = self.key(self.norm(tokens))
        weights = torch.softmax(torch.einsum("qh,bsh->bqs", self.queries, keys) * self.scale, dim=-1)
        self.last_weights = weights.detach()
        return torch.einsum("bqs,bsh->bqh", weights, tokens)


def build_fusion(cfg: ModelConfig) -> nn.Module | None:
    if cfg.fusion == "qformer":
        return QFormerFusion(cfg)
    if cfg.fusion == "attention":
        return AttentionFusion(cfg)
    return None
