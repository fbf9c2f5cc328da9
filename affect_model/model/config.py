"""``ModelConfig``: the ``model`` section of the run config, plus presets for the papers' settings.

Frozen parts (vision tower, audio encoder, LLM, tokenizer) are referenced by Hugging Face id or local
path and loaded with ``from_pretrained``; everything else describes the trainable glue: one BLIP-2
Q-Former per modality, optional audio-video pre-fusion, linear projections and optional LoRA.
``debug_config(root)`` builds tiny random-weight checkpoints in ``root`` (see ``affect_model.model.tiny``)
and points a config at them, so tests go through the same loading code as real models.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from affect_model.model.tiny import build_tiny_models
from core.config import Config, check_choice, check_range

DTYPES = ("float32", "bfloat16", "float16")
FUSIONS = ("none", "qformer", "attention")
TOKEN_MODES = ("pooled", "all")
AUDIO_WINDOWS = ("clip", "padded")
SLOTS = ("video", "audio", "fusion", "subtitle")

# Our own wording of the task the papers train on (audio + video + subtitle -> emotion description).
DEFAULT_PROMPT = (
    "Video frames of a person: {video}\n"
    "What the person sounds like: {audio}\n"
    "Audio and video together: {fusion}\n"
    'Subtitle: "{subtitle}"\n'
    "From the facial expressions, the voice and the words, describe the clues to this person's "
    "emotional state and infer the emotions they feel."
)
DEFAULT_SYSTEM = "You are an expert in multimodal emotion recognition."


@dataclasses.dataclass(frozen=True)
class ModelConfig(Config):
    """AffectGPT architecture. Keys are ``model.<field>`` in the run config."""

    # frozen parts: Hugging Face ids or local / s3-synced folders
    vision_model: str = "openai/clip-vit-large-patch14"
    audio_model: str = "facebook/hubert-large-ll60k"
    llm_model: str = "Qwen/Qwen2.5-7B-Instruct"
    tokenizer: str = ""  # empty: the LLM's folder
    encoder_dtype: str = "bfloat16"
    llm_dtype: str = "bfloat16"
    # inputs
    frames: int = 8
    video_tokens: str = "pooled"  # pooled: one feature per frame; all: every patch token
    audio_clips: int = 8
    clip_seconds: float = 2.0
    sample_rate: int = 16000
    audio_tokens: str = "pooled"  # pooled: one feature per clip; all: every encoder frame of the clip
    audio_layers: int = 4  # per clip: mean of the encoder's last N hidden states (AffectGPT: 4)
    audio_window: str = "clip"  # Whisper only. clip: real clip length; padded: each clip padded to 30 s
    use_video: bool = True
    use_audio: bool = True
    use_subtitle: bool = True
    subtitle_language: str = "en"
    # Q-Formers (BLIP-2 / Video-LLaMA: 2 layers, hidden 768)
    video_queries: int = 32
    audio_queries: int = 8
    qformer_layers: int = 2
    qformer_hidden: int = 768
    qformer_heads: int = 12
    qformer_intermediate: int = 3072
    qformer_dropout: float = 0.1
    # pre-fusion of audio and video before the LLM (paper 002): none, qformer or attention
    fusion: str = "none"
    fusion_queries: int = 16
    fusion_layers: int = 2
    # LoRA on the LLM (peft)
    lora: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    gradient_checkpointing: bool = False
    # prompt
    chat_format: str = "auto"  # auto: the tokenizer's chat template if it has one, else plain
    system_prompt: str = DEFAULT_SYSTEM
    prompt: str = DEFAULT_PROMPT
    max_subtitle_tokens: int = 128
    # the official AffectGPT framework: max_length 1024 (prompt + answer in training), 1200 new tokens
    max_length: int = 1024  # LLM positions of one training sample; the answer is cut to fit; 0 = no cap
    max_answer_tokens: int = 1024  # answer tokens incl. the closing eos (also capped by max_length)
    max_new_tokens: int = 1200  # generation (emer infer and the per-epoch evaluation)

    def problems(self) -> list[str]:
        out: list[str] = []
        for key in ("vision_model", "audio_model", "llm_model"):
            if not getattr(self, key):
                out.append(f"model.{key} = '': must be a Hugging Face id or a local folder")
        check_choice(out, "model.encoder_dtype", self.encoder_dtype, DTYPES)
        check_choice(out, "model.llm_dtype", self.llm_dtype, DTYPES)
        check_choice(out, "model.video_tokens", self.video_tokens, TOKEN_MODES)
        check_choice(out, "model.audio_tokens", self.audio_tokens, TOKEN_MODES)
        check_choice(out, "model.audio_window", self.audio_window, AUDIO_WINDOWS)
        check_choice(out, "model.subtitle_language", self.subtitle_language, ("en", "zh"))
        check_choice(out, "model.fusion", self.fusion, FUSIONS)
        check_choice(out, "model.chat_format", self.chat_format, ("auto", "plain"))
        for key, lo, hi in (
            ("frames", 1, 256),
            ("audio_clips", 1, 256),
            ("audio_layers", 1, 64),
            ("video_queries", 1, 1024),
            ("audio_queries", 1, 1024),
            ("qformer_layers", 1, 48),
            ("qformer_hidden", 8, 8192),
            ("qformer_heads", 1, 128),
            ("qformer_intermediate", 8, 65536),
            ("fusion_queries", 1, 1024),
            ("fusion_layers", 1, 48),
            ("lora_r", 1, 1024),
            ("lora_alpha", 1, 100000),
            ("max_subtitle_tokens", 0, 100000),
            ("max_length", 0, 1000000),
            ("max_answer_tokens", 1, 100000),
            ("max_new_tokens", 1, 100000),
            ("sample_rate", 1000, 192000),
        ):
            check_range(out, f"model.{key}", getattr(self, key), lo, hi)
        check_range(out, "model.clip_seconds", self.clip_seconds, 0.1, 60.0)
        check_range(out, "model.qformer_dropout", self.qformer_dropout, 0.0, 0.9)
        check_range(out, "model.lora_dropout", self.lora_dropout, 0.0, 0.9)
        if self.qformer_hidden % self.qformer_heads:
            out.append(
                f"model.qformer_hidden = {self.qformer_hidden}: must be divisible by "
                f"model.qformer_heads ({self.qformer_heads})"
            )
        if not (self.use_video or self.use_audio):
            out.append(
                "model.use_video = false: at least one of model.use_video / model.use_audio must be true"
            )
        if self.fusion != "none" and not (self.use_video and self.use_audio):
            out.append(
                f"model.fusion = {self.fusion!r}: pre-fusion needs both model.use_video and model.use_audio"
            )
        if self.lora and not self.lora_targets:
            out.append("model.lora_targets = []: must name at least one module when model.lora is true")
        out.extend(self._prompt_problems())
        return out

    def _prompt_problems(self) -> list[str]:
        out = []
        used = {
            "video": self.use_video,
            "audio": self.use_audio,
            "fusion": self.fusion != "none",
            "subtitle": self.use_subtitle,
        }
        for slot, on in used.items():
            if on and "{" + slot + "}" not in self.prompt:
                out.append(f"model.prompt: must contain the slot {{{slot}}} (model.{_switch(slot)} is on)")
        if self.prompt.count("{") != sum(self.prompt.count("{" + s + "}") for s in SLOTS):
            out.append("model.prompt: only the slots {video}, {audio}, {fusion}, {subtitle} may use braces")
        return out

    @property
    def tokenizer_path(self) -> str:
        return self.tokenizer or self.llm_model

    @property
    def clip_samples(self) -> int:
        return int(round(self.clip_seconds * self.sample_rate))

    def slot_lengths(self) -> dict[str, int]:
        """How many LLM input positions each multimodal slot takes (0 when that slot is off)."""
        return {
            "video": self.video_queries if self.use_video else 0,
            "audio": self.audio_queries if self.use_audio else 0,
            "fusion": self.fusion_queries if self.fusion != "none" else 0,
        }


def _switch(slot: str) -> str:
    return "fusion" if slot == "fusion" else f"use_{slot}"


# ---------------------------------------------------------------- presets


def paper_affectgpt() -> ModelConfig:
    """AffectGPT of the EMER-Coarse paper (Video-LLaMA based, section 4): frozen encoders and LLM,
    only the Q-Formers and projections train; 8 frames, 32 video / 8 audio queries, 2-layer Q-Formers,
    no pre-fusion, no LoRA. Video-LLaMA's EVA ViT-g / ImageBind towers have no transformers class, so
    the nearest supported ones stand in: CLIP ViT-L/14 and HuBERT-large (as the AffectGPT framework,
    which uses chinese-hubert-large: a drop-in id); the LLM is Vicuna-7B."""
    return ModelConfig(
        vision_model="openai/clip-vit-large-patch14",
        audio_model="facebook/hubert-large-ll60k",
        llm_model="lmsys/vicuna-7b-v1.5",
        chat_format="plain",
        fusion="none",
        lora=False,
    )


def paper_affectgpt_prefusion(fusion: str = "attention") -> ModelConfig:
    """AffectGPT of the MER-Caption paper (002): audio-video pre-fusion outside the LLM (attention or
    Q-Former), CLIP ViT-L/14 + HuBERT-large, Qwen2.5-7B-Instruct with LoRA."""
    return ModelConfig(
        vision_model="openai/clip-vit-large-patch14",
        audio_model="facebook/hubert-large-ll60k",
        llm_model="Qwen/Qwen2.5-7B-Instruct",
        fusion=fusion,
        lora=True,
        lora_r=16,
        lora_alpha=32,
    )


def debug_config(root: str | Path, **changes) -> ModelConfig:
    """A tiny config for tests and demos: builds (once) tiny random-weight CLIP vision, Whisper encoder
    and Qwen2 checkpoints under ``root`` and references them by path. ``changes`` override fields."""

    paths = build_tiny_models(root, audio=changes.pop("audio_kind", "whisper"))
    base = dict(
        vision_model=paths["vision"],
        audio_model=paths["audio"],
        llm_model=paths["llm"],
        encoder_dtype="float32",
        llm_dtype="float32",
        frames=4,
        audio_clips=3,
        video_queries=4,
        audio_queries=2,
        qformer_layers=1,
        qformer_hidden=32,
        qformer_heads=2,
        qformer_intermediate=64,
        fusion_queries=2,
        fusion_layers=1,
        lora_r=4,
        lora_alpha=8,
        max_subtitle_tokens=24,
        max_answer_tokens=24,
        max_new_tokens=8,
    )
    base.update(changes)
    return ModelConfig(**base)
