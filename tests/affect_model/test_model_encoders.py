"""Encoder loading from the checkpoint layouts real models use; SigLIP + HuBERT variant end to end."""

from __future__ import annotations

import math

import torch

from affect_model.model import encoders
from affect_model.model.affectgpt import AffectGPT
from affect_model.model.config import debug_config
from affect_model.model.tiny import build_tiny_clip_full, build_tiny_hubert, build_tiny_siglip_vision
from affect_model.train.data import MediaProcessor, SampleEncoder, collate


def test_vision_tower_from_full_clip_checkpoint(tmp_path):
    from transformers import CLIPModel

    path = build_tiny_clip_full(tmp_path / "clip")
    tower = encoders.load_vision_tower(path, torch.float32)
    assert type(tower).__name__ == "CLIPVisionModel"
    full = CLIPModel.from_pretrained(path)
    for name, p in tower.named_parameters():
        assert torch.equal(p, dict(full.vision_model.named_parameters())[name]), name
    enc = encoders.VisionEncoder(path, tokens="all")
    feats = enc(torch.zeros(2, 3, 3, 32, 32))
    assert feats.shape == (2, 3, 17, 32)  # 16 patches + CLS per frame
    assert encoders.vision_width(path) == 32


def test_whisper_encoder_from_full_whisper_checkpoint(tmp_path):
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    cfg = WhisperConfig(
        num_mel_bins=16,
        d_model=32,
        encoder_layers=1,
        encoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_layers=1,
        decoder_attention_heads=2,
        decoder_ffn_dim=64,
        max_source_positions=100,
        max_target_positions=32,
        vocab_size=64,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=3,
        suppress_tokens=[],
        begin_suppress_tokens=[],
    )
    full = WhisperForConditionalGeneration(cfg)
    full.save_pretrained(str(tmp_path / "whisper"))
    enc = encoders.load_audio_encoder(str(tmp_path / "whisper"), torch.float32)
    assert type(enc).__name__ == "WhisperEncoder"
    for name, p in enc.named_parameters():
        assert torch.equal(p, dict(full.model.encoder.named_parameters())[name]), name


def test_siglip_and_hubert_variant(tmp_path, tiny_root, rows):
    siglip = build_tiny_siglip_vision(tmp_path / "siglip")
    cfg = debug_config(tiny_root, audio_kind="hubert", vision_model=siglip)
    assert encoders.audio_kind(cfg.audio_model) == "waveform"
    model = AffectGPT(cfg).train()
    assert type(model.vision.model).__name__ == "SiglipVisionModel"
    assert type(model.audio.model).__name__ == "HubertModel"
    media = MediaProcessor(cfg)
    enc = SampleEncoder(cfg, model.tokenizer, media)
    batch = collate([enc(r) for r in rows[:2]], model.tokenizer.pad_token_id)
    assert batch["audio_features"].shape == (2, cfg.audio_clips, cfg.clip_samples)  # raw waveform clips
    out = model(**batch)
    out.loss.backward()
    assert math.isfinite(out.loss.item())
    assert model.encode_audio(batch["audio_features"]).shape == (2, cfg.audio_clips, 1, 32)


def test_hubert_builder_is_idempotent(tmp_path):
    first = build_tiny_hubert(tmp_path / "h")
    stamp = (tmp_path / "h" / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_hubert(tmp_path / "h") == first
    assert (tmp_path / "h" / "model.safetensors").stat().st_mtime_ns == stamp
