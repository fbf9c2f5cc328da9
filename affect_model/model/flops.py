"""Analytic forward FLOPs of AffectGPT's towers, from their transformers configs alone.

Counts 2 FLOPs per multiply-add of every linear layer, convolution and attention product (QK^T and
AV), which is what ``torch.utils.flop_counter.FlopCounterMode`` counts (norms, activations, softmax
and the position-embedding add are left out); the unit tests check each formula against it on tiny
instances. The audio encoders' formulas are their families' (``affect_model.model.families``).
``_real_size()`` holds the configs of the real checkpoints the presets name, so the counts
need no download. ``sample_flops`` gives one training sample's cost per tower for a ``ModelConfig``.
"""

from __future__ import annotations

import math

from affect_model.model.families import WHISPER_WINDOW_POSITIONS, audio_family, vision_family
from affect_model.model.flop_math import transformer_layer

TEMPLATE_TOKENS = 40  # system prompt + instruction around the slots (LLaMA tokenizer, about)
# the official ###Human template with its question + bos + the answer's ### (90 + 2 with SmolLM2's
# BPE tokenizer as a stand-in for Qwen2.5's: both byte-level BPEs of English text)
OFFICIAL_TEMPLATE_TOKENS = 92
TOKENS_PER_WORD = 1.3


def _real_size() -> dict:
    from transformers import CLIPVisionConfig, HubertConfig, LlamaConfig, Qwen2Config, WhisperConfig

    hubert = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
    hubert.update(do_stable_layer_norm=True, feat_extract_norm="layer", conv_bias=True)
    whisper = dict(d_model=1280, encoder_layers=32, encoder_attention_heads=20, encoder_ffn_dim=5120)
    whisper.update(num_mel_bins=128, max_source_positions=WHISPER_WINDOW_POSITIONS)
    return {
        "facebook/hubert-large-ll60k": HubertConfig(**hubert),
        "TencentGameMate/chinese-hubert-large": HubertConfig(**hubert),
        "openai/whisper-large-v3": WhisperConfig(**whisper),
        "openai/clip-vit-large-patch14": CLIPVisionConfig(
            hidden_size=1024,
            intermediate_size=4096,
            num_hidden_layers=24,
            num_attention_heads=16,
            patch_size=14,
            projection_dim=768,
        ),
        "lmsys/vicuna-7b-v1.5": LlamaConfig(vocab_size=32000, num_hidden_layers=32),
        "Qwen/Qwen2.5-7B-Instruct": Qwen2Config(
            vocab_size=152064,
            hidden_size=3584,
            intermediate_size=18944,
            num_hidden_layers=28,
            num_attention_heads=28,
            num_key_value_heads=4,
        ),
    }


def model_config(path: str):
    """The transformers config of ``path``: a local folder's, else the ``REAL_SIZE`` table's (no network
    round trip for the ids the presets name), else whatever ``AutoConfig`` finds offline."""
    from pathlib import Path

    from transformers import AutoConfig

    table = _real_size()
    if not Path(path).is_dir() and path in table:
        return table[path]
    return AutoConfig.from_pretrained(path)


def vision_tower(cfg) -> tuple[int, int]:
    """A ViT (CLIP / SigLIP vision) on one frame: ``(flops, tokens)``."""
    patches = (cfg.image_size // cfg.patch_size) ** 2
    d = cfg.hidden_size
    tokens = patches + (1 if vision_family(cfg.model_type).class_token else 0)
    embed = 2 * patches * cfg.num_channels * cfg.patch_size**2 * d
    return embed + cfg.num_hidden_layers * transformer_layer(tokens, d, cfg.intermediate_size), tokens


def causal_llm(cfg, tokens: int) -> int:
    """A LLaMA / Qwen2-style decoder (GQA, SwiGLU) with its LM head over ``tokens`` positions."""
    d = cfg.hidden_size
    heads = cfg.num_attention_heads
    kv = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or d // heads
    layer = transformer_layer(tokens, d, cfg.intermediate_size, kv=kv * head_dim, glu=True)
    return cfg.num_hidden_layers * layer + 2 * tokens * d * cfg.vocab_size


def qformer(cfg, queries: int, enc_tokens: int, enc_width: int, layers: int, llm_width: int) -> int:
    """A BLIP-2 Q-Former (cross-attention in every layer) + the projection into the LLM."""
    h, f = cfg.qformer_hidden, cfg.qformer_intermediate
    self_part = transformer_layer(queries, h, f)
    cross = 2 * queries * h * h * 2 + 2 * 2 * enc_tokens * enc_width * h + 4 * queries * enc_tokens * h
    return layers * (self_part + cross) + 2 * queries * h * llm_width


def official_heads(video: int, audio: int, llm: int, frames: int, clips: int, fusion: bool) -> int:
    """The official attention heads (``affect_model.model.official``): per-step scores, weighted sums,
    projections into the LLM and the attention pre-fusion on time means."""
    m = max(video, audio)
    total = 2 * frames * video + 2 * frames * video + 2 * video * llm  # scores, weighted sum, projection
    total += 2 * clips * audio + 2 * clips * audio + 2 * audio * llm
    if fusion:
        total += 2 * video * m + 2 * audio * m + 2 * (2 * m) * m + 2 * m * 2 + 2 * 2 * m + 2 * m * llm
    return total


def audio_tower(cfg, audio_model: str | None = None, window: str | None = None) -> dict:
    """Forward FLOPs and encoder positions of one sample's ``audio_clips`` clips."""
    path = audio_model or cfg.audio_model
    acfg = model_config(path)
    family = audio_family(acfg.model_type)
    per_clip, frames, window = family.encoder_flops(acfg, cfg, window)
    width = family.width(acfg)
    tokens = cfg.audio_clips * (1 if cfg.audio_tokens == "pooled" else frames)
    return {
        "model": path,
        "window": window,
        "flops": cfg.audio_clips * per_clip,
        "tokens": tokens,
        "width": width,
    }


def sample_flops(cfg, answer_words: int = 150, subtitle_tokens: int = 64, audio: dict | None = None) -> dict:
    """Per-sample FLOPs by tower: encoders forward, the trained glue and the LLM, forward and training
    step, for an LLM sequence estimated from ``answer_words`` and ``subtitle_tokens`` and the layout's
    prompt template (see ``tower_flops``)."""
    slots = sum(cfg.slot_lengths().values())
    template = OFFICIAL_TEMPLATE_TOKENS if cfg.layout == "affectgpt" else TEMPLATE_TOKENS
    llm_tokens = slots + template + subtitle_tokens + math.ceil(answer_words * TOKENS_PER_WORD)
    return tower_flops(cfg, llm_tokens, audio)


def tower_flops(cfg, llm_tokens: int, audio: dict | None = None) -> dict:
    """One sample's FLOPs by tower for an LLM sequence of ``llm_tokens`` positions: encoders forward,
    the trained glue (Q-Formers, or the official attention heads for ``layout = "affectgpt"``) and the LLM.

    Training: the frozen LLM runs forward + backward to its inputs (no weight gradients: 2x forward,
    4N per token; LoRA's small extra matmuls are left out), the trained glue forward + backward with
    weight gradients (3x forward, 6N)."""
    vcfg = model_config(cfg.vision_model)
    vcfg = getattr(vcfg, "vision_config", None) or vcfg
    frame_flops, frame_tokens = vision_tower(vcfg)
    vwidth = vcfg.hidden_size
    if cfg.vision_projection:  # CLIP's image projection on the pooled feature
        frame_flops += 2 * vcfg.hidden_size * vcfg.projection_dim
        vwidth = vcfg.projection_dim
    vtokens = cfg.frames * (1 if cfg.video_tokens == "pooled" else frame_tokens)
    audio = audio or audio_tower(cfg)
    lcfg = model_config(cfg.llm_model)
    if cfg.layout == "affectgpt":
        fusion = cfg.fusion != "none"
        glue = official_heads(vwidth, audio["width"], lcfg.hidden_size, cfg.frames, cfg.audio_clips, fusion)
    else:
        glue = qformer(cfg, cfg.video_queries, vtokens, vwidth, cfg.qformer_layers, lcfg.hidden_size)
        glue += qformer(
            cfg, cfg.audio_queries, audio["tokens"], audio["width"], cfg.qformer_layers, lcfg.hidden_size
        )
    forward = {
        "video": cfg.frames * frame_flops if cfg.use_video else 0,
        "audio": audio["flops"] if cfg.use_audio else 0,
        "qformers": glue,  # the trained glue: Q-Formers, or the official heads
        "llm": causal_llm(lcfg, llm_tokens),
    }
    train = {**forward, "qformers": 3 * forward["qformers"], "llm": 2 * forward["llm"]}
    return {"llm_tokens": llm_tokens, "forward": forward, "train": train}
