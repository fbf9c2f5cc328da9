"""``ModelConfig``: the ``model`` section of the run config (the papers' settings live in configs/*.yaml).

Frozen parts (vision tower, audio encoder, LLM, tokenizer) are referenced by Hugging Face id or local
path and loaded with ``from_pretrained``; everything else describes the trainable glue. Two layouts:
``qformer`` (one BLIP-2 Q-Former per modality, optional audio-video pre-fusion, linear projections)
and ``affectgpt`` (the official ICML-2025 code: attention pooling to one token per modality and the
attention pre-fusion on raw features, named like the official checkpoint; see
``affect_model.model.official``). Both take optional LoRA on the LLM.
``debug_config(root)`` builds tiny random-weight checkpoints in ``root`` (see ``affect_model.model.tiny``)
and points a config at them, so tests go through the same loading code as real models.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from affect_model.model.tiny import build_tiny_models
from core.config import Config, check_choice, check_range, read_yaml

DTYPES = ("float32", "bfloat16", "float16")
FUSIONS = ("none", "qformer", "attention")
TOKEN_MODES = ("pooled", "all")
AUDIO_WINDOWS = ("clip", "padded")
SLOTS = ("video", "audio", "fusion", "subtitle")
LAYOUTS = ("qformer", "affectgpt")
CHAT_FORMATS = ("auto", "plain", "affectgpt")
MEDIA_SAMPLING = ("emer", "affectgpt")
TARGETS = ("description", "ovlabel", "hybrid")

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

    # qformer: Q-Formers (+ optional pre-fusion); affectgpt: the official attention layout (1 token each)
    layout: str = "qformer"
    # frozen parts: Hugging Face ids or local / s3-synced folders
    vision_model: str = "openai/clip-vit-large-patch14"
    audio_model: str = "facebook/hubert-large-ll60k"
    llm_model: str = "Qwen/Qwen2.5-7B-Instruct"
    tokenizer: str = ""  # empty: the LLM's folder
    vision_projection: bool = False  # CLIP image features with the projection (image_embeds), as official
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
    # emer: uniform frames + consecutive clips with masks; affectgpt: the official frame / clip sampling
    media_sampling: str = "emer"
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
    # auto: the tokenizer's chat template if it has one, else plain; affectgpt: the official literal
    # template (###Human: ... ###Assistant: , answer + ### + eos, five added special tokens)
    chat_format: str = "auto"
    # what a training sample asks for: description, ovlabel (the OV labels) or hybrid (either, per
    # sample, as the official label_type: hybird); only with chat_format affectgpt for ovlabel / hybrid
    target: str = "description"
    system_prompt: str = DEFAULT_SYSTEM
    prompt: str = DEFAULT_PROMPT
    max_subtitle_tokens: int = 128
    # the official AffectGPT framework: max_length 1024 (prompt + answer in training), 1200 new tokens
    max_length: int = 1024  # LLM positions of one training sample; the answer is cut to fit; 0 = no cap
    max_answer_tokens: int = 1024  # answer tokens incl. the closing eos (also capped by max_length)
    max_new_tokens: int = 1200  # generation (emer infer and the per-epoch evaluation)
    do_sample: bool = False  # generation: sampling (official: true) or greedy
    top_p: float = 1.0  # nucleus sampling (official: 0.9); only with do_sample
    stop: str = ""  # generation stops after this string (official: ###); "" = at eos only

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
        check_choice(out, "model.chat_format", self.chat_format, CHAT_FORMATS)
        check_choice(out, "model.layout", self.layout, LAYOUTS)
        check_choice(out, "model.media_sampling", self.media_sampling, MEDIA_SAMPLING)
        check_choice(out, "model.target", self.target, TARGETS)
        check_range(out, "model.top_p", self.top_p, 0.01, 1.0)
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
        out.extend(self._layout_problems())
        if self.chat_format != "affectgpt":
            out.extend(self._prompt_problems())
        return out

    def _layout_problems(self) -> list[str]:
        out = []
        if self.layout == "affectgpt":
            if not (self.use_video and self.use_audio):
                out.append(
                    "model.layout = 'affectgpt': needs model.use_video and model.use_audio (as official)"
                )
            if self.fusion not in ("none", "attention"):
                out.append(
                    f"model.fusion = {self.fusion!r}: model.layout = 'affectgpt' takes none or attention"
                )
            if self.video_tokens != "pooled" or self.audio_tokens != "pooled":
                out.append("model.layout = 'affectgpt': model.video_tokens / audio_tokens must be 'pooled'")
            if self.chat_format != "affectgpt":
                out.append("model.layout = 'affectgpt': set model.chat_format = 'affectgpt' (its prompt)")
        if self.target != "description" and self.chat_format != "affectgpt":
            out.append(
                f"model.target = {self.target!r}: the OV-label question needs model.chat_format = 'affectgpt'"
            )
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
        if self.layout == "affectgpt":  # num_{video,audio,multi}_query_token: 1
            return {
                "video": int(self.use_video),
                "audio": int(self.use_audio),
                "fusion": int(self.fusion != "none"),
            }
        return {
            "video": self.video_queries if self.use_video else 0,
            "audio": self.audio_queries if self.use_audio else 0,
            "fusion": self.fusion_queries if self.fusion != "none" else 0,
        }


def _switch(slot: str) -> str:
    return "fusion" if slot == "fusion" else f"use_{slot}"


# ---------------------------------------------------------------- tiny debug config


def debug_config(root: str | Path, **changes) -> ModelConfig:
    """A tiny config for tests and demos: builds (once) tiny random-weight CLIP vision, Whisper encoder
    and Qwen2 checkpoints under ``root`` and references them by path. ``changes`` override fields;
    ``layout="affectgpt"`` gives the official layout (a tiny full CLIP with its projection, HuBERT,
    the official prompt, sampling and attention pre-fusion)."""

    official = changes.get("layout") == "affectgpt"
    audio = changes.pop("audio_kind", "hubert" if official else "whisper")
    paths = build_tiny_models(root, audio=audio, vision="clip-full" if official else "clip-vision")
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
    if official:
        base.update(official_switches())
    base.update(changes)
    return ModelConfig(**base)


# The official layout's switches a tiny config takes from its preset (sizes and towers stay tiny).
OFFICIAL_SWITCHES = ("vision_projection", "chat_format", "media_sampling", "fusion", "target")
OFFICIAL_SWITCHES += ("audio_clips", "frames", "stop")
OFFICIAL_PRESET = Path(__file__).resolve().parents[2] / "configs" / "affectgpt-qwen25.yaml"


def official_switches() -> dict:
    """``OFFICIAL_SWITCHES`` as ``configs/affectgpt-qwen25.yaml`` sets them: the preset is the only copy."""
    model = read_yaml(OFFICIAL_PRESET)["model"]
    return {key: model[key] for key in OFFICIAL_SWITCHES}
