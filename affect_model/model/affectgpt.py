"""``AffectGPT``: frozen encoders -> per-modality Q-Formers (+ optional pre-fusion) -> frozen causal LLM.

Video frames and 2-second audio clips go through frozen encoders (``encode_video`` /
``encode_audio``; their outputs can be cached and passed back as ``video_embeds`` / ``audio_embeds``),
then through one Q-Former per modality; optional pre-fusion (paper 002) fuses both query outputs
outside the LLM. Linear projections map every query token into the LLM's embedding space, where the
tokens replace the prompt's slot positions (``slot_ids``). Only Q-Formers, fusion, projections (and
LoRA adapters when ``lora`` is on) train. ``layout = "affectgpt"`` swaps the Q-Formers for the
official attention heads (``affect_model.model.official``: one token per modality and one fused token).
Nothing here knows about Ray or DeepSpeed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import torch
from torch import nn

from affect_model.model import encoders
from affect_model.model.config import ModelConfig
from affect_model.model.official import OfficialHeads
from affect_model.model.prompt import (
    IGNORE,
    SLOT_AUDIO,
    SLOT_FUSION,
    SLOT_TEXT,
    SLOT_VIDEO,
    add_prompt_tokens,
)
from affect_model.model.qformer import ModalityQFormer, build_fusion

log = logging.getLogger(__name__)

_TENSOR_INPUTS = ("pixel_values", "frame_mask", "audio_features", "clip_mask", "video_embeds", "audio_embeds")


def load_tokenizer(cfg: ModelConfig):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(cfg.tokenizer_path)
    if tok.pad_token_id is None:
        tok.pad_token = tok.unk_token or tok.eos_token
    if cfg.chat_format == "affectgpt":
        add_prompt_tokens(tok)
    return tok


def _load_llm(cfg: ModelConfig) -> nn.Module:
    from transformers import AutoModelForCausalLM

    llm = AutoModelForCausalLM.from_pretrained(cfg.llm_model, dtype=encoders.torch_dtype(cfg.llm_dtype))
    return wrap_llm(llm, cfg)


def wrap_llm(llm: nn.Module, cfg: ModelConfig) -> nn.Module:
    """Freeze the LLM, turn on gradient checkpointing and add LoRA as ``cfg`` says."""
    llm.requires_grad_(False)
    if cfg.gradient_checkpointing:
        llm.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    if cfg.lora:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            task_type="CAUSAL_LM",
            inference_mode=False,
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=list(cfg.lora_targets),
        )
        llm = get_peft_model(llm, lora)
    return llm


class AffectGPT(nn.Module):
    """See the module docstring. ``load_encoders=False`` skips the frozen encoders (training on cached
    features); their widths are then read from the encoders' configs."""

    def __init__(self, cfg: ModelConfig, tokenizer=None, load_encoders: bool = True) -> None:
        super().__init__()
        self.config = cfg
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(cfg)
        enc_dtype = encoders.torch_dtype(cfg.encoder_dtype)
        self.vision = self.audio = None
        if cfg.use_video and load_encoders:
            self.vision = encoders.VisionEncoder(
                cfg.vision_model, enc_dtype, cfg.video_tokens, projection=cfg.vision_projection
            )
        if cfg.use_audio and load_encoders:
            self.audio = encoders.AudioEncoder.from_config(cfg, enc_dtype)
        self.llm = _load_llm(cfg)
        width = self.llm.get_input_embeddings().embedding_dim
        self.video_qformer = self.video_proj = self.audio_qformer = self.audio_proj = self.fusion_proj = None
        self.heads = self.fusion = None
        vw = aw = 0
        if cfg.use_video:
            vw = (
                self.vision.hidden_size
                if self.vision is not None
                else encoders.vision_width(cfg.vision_model, cfg.vision_projection)
            )
        if cfg.use_audio:
            aw = self.audio.hidden_size if self.audio is not None else encoders.audio_width(cfg.audio_model)
        if cfg.layout == "affectgpt":
            self.heads = OfficialHeads(vw, aw, width, fusion=cfg.fusion != "none")
        else:
            self._build_qformers(cfg, vw, aw, width)
        self.train(False)
        log.info(
            "AffectGPT (%s layout): %d trainable / %d total parameters (fusion=%s, lora=%s)",
            cfg.layout,
            sum(p.numel() for p in self.trainable_parameters()),
            sum(p.numel() for p in self.parameters()),
            cfg.fusion,
            cfg.lora,
        )

    def _build_qformers(self, cfg: ModelConfig, vw: int, aw: int, width: int) -> None:
        if cfg.use_video:
            self.video_qformer = ModalityQFormer(cfg, vw, cfg.video_queries, cfg.frames)
            self.video_proj = nn.Linear(cfg.qformer_hidden, width)
        if cfg.use_audio:
            self.audio_qformer = ModalityQFormer(cfg, aw, cfg.audio_queries, cfg.audio_clips)
            self.audio_proj = nn.Linear(cfg.qformer_hidden, width)
        self.fusion = build_fusion(cfg)
        if self.fusion is not None:
            self.fusion_proj = nn.Linear(cfg.qformer_hidden, width)

    # ------------------------------------------------------------ trainable state

    def named_trainable_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        return ((n, p) for n, p in self.named_parameters() if p.requires_grad)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters an optimizer should see: Q-Formers, fusion, projections (+ LoRA)."""
        return [p for _, p in self.named_trainable_parameters()]

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        return {n: p.detach() for n, p in self.named_trainable_parameters()}

    def train(self, mode: bool = True) -> AffectGPT:
        """Frozen encoders always stay in eval mode; the LLM follows ``mode`` only where it matters
        (LoRA dropout, gradient checkpointing)."""
        super().train(mode)
        for enc in (self.vision, self.audio):
            if enc is not None:
                enc.eval()
        self.llm.train(mode and (self.config.lora or self.config.gradient_checkpointing))
        return self

    # ------------------------------------------------------------ encoders and query tokens

    def encode_video(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Frozen vision features ``[B, T, N, D]`` of ``pixel_values [B, T, 3, H, W]`` (cacheable)."""
        if self.vision is None:
            raise RuntimeError(
                "encode_video: the vision encoder is not loaded (use_video off or load_encoders=False)"
            )
        return self.vision(pixel_values)

    def encode_audio(self, audio_features: torch.Tensor) -> torch.Tensor:
        """Frozen audio features ``[B, C, M, D]`` of one encoder input per clip (cacheable)."""
        if self.audio is None:
            raise RuntimeError(
                "encode_audio: the audio encoder is not loaded (use_audio off or load_encoders=False)"
            )
        return self.audio(audio_features)

    def query_tokens(
        self,
        *,
        pixel_values=None,
        frame_mask=None,
        audio_features=None,
        clip_mask=None,
        video_embeds=None,
        audio_embeds=None,
    ) -> dict[str, torch.Tensor]:
        """Projected query tokens per slot (``video``, ``audio``, ``fusion``), each ``[B, Q, llm_width]``.
        Cached ``*_embeds`` take precedence over raw inputs."""
        if self.heads is not None:
            video = self._features(video_embeds, pixel_values, "pixel_values", self.encode_video)
            audio = self._features(audio_embeds, audio_features, "audio_features", self.encode_audio)
            # one pooled feature per frame / clip: [B, T, 1, D] -> [B, T, D]
            return self.heads(video.flatten(2), audio.flatten(2), frame_mask, clip_mask)
        out: dict[str, torch.Tensor] = {}
        hidden: dict[str, torch.Tensor] = {}
        branches = (
            (
                "video",
                self.video_qformer,
                self.video_proj,
                video_embeds,
                pixel_values,
                "pixel_values",
                self.encode_video,
                frame_mask,
            ),
            (
                "audio",
                self.audio_qformer,
                self.audio_proj,
                audio_embeds,
                audio_features,
                "audio_features",
                self.encode_audio,
                clip_mask,
            ),
        )
        for slot, qformer, proj, cached, raw, raw_name, encode, mask in branches:
            if qformer is not None:
                hidden[slot] = qformer(self._features(cached, raw, raw_name, encode), mask)
                out[slot] = proj(hidden[slot])
        if self.fusion is not None:
            out["fusion"] = self.fusion_proj(self.fusion(hidden["video"], hidden["audio"]))
        return out

    @staticmethod
    def _features(cached, raw, name: str, encode):
        """Cached encoder outputs if given, else the frozen encoder over the raw input."""
        if cached is not None:
            return cached
        if raw is None:
            raise ValueError(
                f"batch has neither {name} nor cached {name.split('_')[0]}_embeds; "
                "build it with affect_model.train.data.SampleEncoder"
            )
        return encode(raw)

    def embed_inputs(
        self, input_ids: torch.Tensor, slot_ids: torch.Tensor, tokens: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """LLM input embeddings with every slot position replaced by its projected query tokens (slot
        ids are embedded as id 0 first: the official prompt's added tokens lie past the LLM's table)."""
        emb = self.llm.get_input_embeddings()(input_ids.masked_fill(slot_ids != SLOT_TEXT, 0))
        for name, slot in (("video", SLOT_VIDEO), ("audio", SLOT_AUDIO), ("fusion", SLOT_FUSION)):
            mask = slot_ids == slot
            have = tokens.get(name)
            want = 0 if have is None else have.shape[1]
            counts = mask.sum(dim=1)
            if bool((counts != want).any()):
                raise ValueError(
                    f"prompt has {counts.tolist()} {name} slot positions per row but the model makes "
                    f"{want} {name} tokens: build batches with the same ModelConfig as the model"
                )
            if want:
                emb = emb.masked_scatter(mask.unsqueeze(-1), have.to(emb.dtype))
        return emb

    def _inputs_embeds(self, input_ids, slot_ids, media: dict) -> torch.Tensor:
        unknown = set(media) - set(_TENSOR_INPUTS)
        if unknown:
            raise TypeError(
                f"AffectGPT got unexpected inputs {sorted(unknown)}; known: {', '.join(_TENSOR_INPUTS)}"
            )
        return self.embed_inputs(input_ids, slot_ids, self.query_tokens(**media))

    # ------------------------------------------------------------ training and inference

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        slot_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        names: list[str] | None = None,
        **media,
    ):
        """Causal-LM output (``.loss`` over the answer tokens when ``labels`` is given). ``media``:
        ``pixel_values``/``frame_mask``, ``audio_features``/``clip_mask``, or cached ``video_embeds``/
        ``audio_embeds`` (with the same masks). ``names`` is batch metadata and is ignored."""
        embeds = self._inputs_embeds(input_ids, slot_ids, media)
        return self.llm(inputs_embeds=embeds, attention_mask=attention_mask, labels=labels, use_cache=False)

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        slot_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        names: list[str] | None = None,
        max_new_tokens: int | None = None,
        generation_kwargs: dict | None = None,
        **media,
    ) -> list[str]:
        """Answers for a prompt-only batch (``SampleEncoder(with_answer=False)``), one string per row:
        greedy, or sampled with ``top_p`` when ``model.do_sample``; cut at ``model.stop`` when set.
        Padding may be on either side."""
        if labels is not None and bool((labels != IGNORE).any()):
            raise ValueError("generate: the batch holds answers; build it with with_answer=False")
        embeds = self._inputs_embeds(input_ids, slot_ids, media)
        embeds, attention_mask = _left_align(embeds, attention_mask)
        cfg = self.config
        kwargs = {"do_sample": cfg.do_sample, **({"top_p": cfg.top_p} if cfg.do_sample else {})}
        if cfg.stop:
            kwargs.update(stop_strings=[cfg.stop], tokenizer=self.tokenizer)
        kwargs.update(generation_kwargs or {})
        out = self.llm.generate(
            inputs_embeds=embeds,
            attention_mask=attention_mask,
            max_new_tokens=max_new_tokens or self.config.max_new_tokens,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.tokenizer.eos_token_id,
            **kwargs,
        )
        texts = self.tokenizer.batch_decode(out, skip_special_tokens=True)
        return [(t.split(cfg.stop)[0] if cfg.stop else t).strip() for t in texts]


def _left_align(embeds: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move every row's padding to the left (generation continues from the last position)."""
    mask = mask.to(torch.long)
    if bool(mask[:, -1].all()):
        return embeds, mask
    length = mask.shape[1]
    # stable sort puts padding (0) first while keeping the order of real tokens
    order = torch.sort(mask, dim=1, stable=True).indices
    return embeds.gather(1, order.unsqueeze(-1).expand_as(embeds)), mask.gather(1, order)[:, :length]
