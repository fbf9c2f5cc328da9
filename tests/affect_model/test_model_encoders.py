"""Encoder loading from the checkpoint layouts real models use; SigLIP + HuBERT variant end to end."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch

from affect_model.model import encoders
from affect_model.model.affectgpt import AffectGPT
from affect_model.model.config import debug_config
from affect_model.model.families import audio_family
from affect_model.model.tiny import (
    build_tiny_clip_full,
    build_tiny_hubert,
    build_tiny_siglip_vision,
    build_tiny_whisper_encoder,
)
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
    assert audio_family(encoders.audio_config(cfg.audio_model).model_type).name == "waveform"
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


def test_hubert_clip_vector_is_mean_of_last_four_layers_then_time(tmp_path):
    path = build_tiny_hubert(tmp_path / "h")
    enc = encoders.AudioEncoder(path, tokens="pooled", clip_seconds=2.0, layers=4)
    clips = torch.randn(2, 3, 32000)
    feats = enc(clips)
    assert feats.shape == (2, 3, 1, 32)  # one vector per 2-s clip
    with torch.no_grad():
        states = enc.model(input_values=clips.flatten(0, 1), output_hidden_states=True).hidden_states
    assert len(states) == 6  # embeddings + 5 layers
    manual = (states[-1] + states[-2] + states[-3] + states[-4]) / 4
    torch.testing.assert_close(feats.reshape(6, 32), manual.mean(1))
    assert not torch.allclose(feats.reshape(6, 32), states[-1].mean(1), atol=1e-3)
    frames = encoders.AudioEncoder(path, tokens="all", layers=4)(clips)
    assert frames.shape == (2, 3, 99, 32)  # 2 s at 16 kHz through the 320x conv front end
    torch.testing.assert_close(frames.mean(2, keepdim=True), feats)


def test_whisper_runs_on_the_real_clip_length(tmp_path):
    path = build_tiny_whisper_encoder(tmp_path / "w", window_seconds=4)  # a 200-position window
    lengths = {}
    for seconds in (1.0, 2.0):
        enc = encoders.AudioEncoder(path, tokens="all", clip_seconds=seconds, layers=1)
        assert enc.model.embed_positions.num_embeddings == int(seconds * 50)
        lengths[seconds] = enc(torch.randn(1, 2, 16, int(seconds * 100))).shape
    assert lengths == {1.0: (1, 2, 50, 32), 2.0: (1, 2, 100, 32)}  # scales with the clip, not the window
    padded = encoders.AudioEncoder(path, tokens="all", clip_seconds=1.0, window="padded")
    assert padded.model.embed_positions.num_embeddings == 200
    assert padded(torch.randn(1, 2, 16, 400)).shape == (1, 2, 50, 32)  # padded, then cut to the clip


def test_whisper_media_makes_real_length_log_mel(tmp_path, tiny_root):
    import numpy as np

    path = build_tiny_whisper_encoder(tmp_path / "w", window_seconds=4)
    cfg = debug_config(tiny_root, audio_model=path, clip_seconds=1.0, audio_clips=2)
    wave = np.random.default_rng(0).standard_normal(24000).astype(np.float32) * 0.1
    feats, mask = MediaProcessor(cfg).audio(wave)
    assert feats.shape == (2, 16, 100) and mask.tolist() == [True, True]
    padded, _ = MediaProcessor(dataclasses.replace(cfg, audio_window="padded")).audio(wave)
    assert padded.shape == (2, 16, 400)
    # the same log-mel without the padding (the last frame's STFT window sees the clip's edge instead)
    torch.testing.assert_close(feats[..., :99], padded[..., :99])
    model_feats = encoders.AudioEncoder.from_config(cfg, torch.float32)(feats[None])
    assert model_feats.shape == (1, 2, 1, 32)


def test_default_audio_encoder_is_hubert_family():
    import pytest
    import yaml

    from affect_model.model.config import ModelConfig
    from core.config import ConfigError

    configs = Path(__file__).resolve().parents[2] / "configs"
    presets = [
        yaml.safe_load((configs / f"{n}.yaml").read_text())["model"]["audio_model"]
        for n in ("stage1", "stage2", "affectgpt-qwen25")
    ]
    for model_id in (ModelConfig().audio_model, *presets):
        assert "hubert" in model_id.lower(), model_id
    cfg = ModelConfig()
    assert cfg.audio_layers == 4 and cfg.clip_seconds == 2.0 and cfg.audio_tokens == "pooled"
    for bad in ({"audio_layers": 0}, {"audio_window": "30s"}):
        with pytest.raises(ConfigError):
            ModelConfig(**bad)
