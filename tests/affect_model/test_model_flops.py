"""The analytic FLOP formulas against torch's FlopCounterMode on tiny towers; the real-size audio costs."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from affect_model.model import encoders, families, flops
from affect_model.model.config import ModelConfig, debug_config
from affect_model.model.qformer import ModalityQFormer
from affect_model.model.tiny import build_tiny_clip_vision, build_tiny_hubert, build_tiny_whisper_encoder


def _counted(module: torch.nn.Module, *args) -> int:
    with FlopCounterMode(display=False) as counter:
        module(*args)
    return counter.get_total_flops()


def _eager(enc):
    enc.model.set_attn_implementation("eager")  # CPU SDPA kernels are not counted by FlopCounterMode
    return enc


@pytest.mark.parametrize("clips", [1, 3])
def test_encoder_formulas_match_flop_counter(tmp_path, clips):
    hubert = _eager(encoders.AudioEncoder(build_tiny_hubert(tmp_path / "h")))
    got = _counted(hubert, torch.randn(1, clips, 32000))
    assert got == pytest.approx(clips * families.waveform_encoder(hubert.model.config, 32000)[0], rel=0.02)
    whisper = _eager(encoders.AudioEncoder(build_tiny_whisper_encoder(tmp_path / "w", window_seconds=4)))
    got = _counted(whisper, torch.randn(1, clips, 16, 200))  # a 2-s clip on its real length
    assert got == pytest.approx(clips * families.whisper_encoder(whisper.model.config, 100), rel=0.02)
    padded = _eager(encoders.AudioEncoder(str(tmp_path / "w"), window="padded"))
    got = _counted(padded, torch.randn(1, clips, 16, 400))
    assert got == pytest.approx(clips * families.whisper_encoder(padded.model.config, 200), rel=0.02)
    vision = _eager(encoders.VisionEncoder(build_tiny_clip_vision(tmp_path / "v")))
    got = _counted(vision, torch.randn(1, clips, 3, 32, 32))
    assert got == pytest.approx(clips * flops.vision_tower(vision.model.config)[0], rel=0.02)


def test_llm_and_qformer_formulas_match_flop_counter(tiny_root):
    from transformers import AutoModelForCausalLM

    cfg = debug_config(tiny_root)
    llm = AutoModelForCausalLM.from_pretrained(cfg.llm_model, attn_implementation="eager")
    got = _counted(llm, torch.zeros(1, 20, dtype=torch.long))
    assert got == pytest.approx(flops.causal_llm(llm.config, 20), rel=0.02)
    q = ModalityQFormer(cfg, 48, 5, 7)
    q.qformer.set_attn_implementation("eager")
    proj = torch.nn.Linear(cfg.qformer_hidden, 64)
    got = _counted(lambda x: proj(q(x)), torch.randn(1, 7, 3, 48))
    assert got == pytest.approx(flops.qformer(cfg, 5, 21, 48, cfg.qformer_layers, 64), rel=0.02)


def test_real_size_hubert_on_clips_costs_far_less_than_padded_whisper():
    cfg = ModelConfig()  # 8 clips of 2 s
    hubert = flops.audio_tower(cfg, "facebook/hubert-large-ll60k")
    whisper_padded = flops.audio_tower(cfg, "openai/whisper-large-v3", window="padded")
    whisper_clip = flops.audio_tower(cfg, "openai/whisper-large-v3", window="clip")
    assert flops.model_config("facebook/hubert-large-ll60k").num_hidden_layers == 24
    # conv front end 9.81 G + projection 0.10 G + positional conv 1.68 G + 24 layers x 2.53 G on 99 frames
    assert hubert["flops"] / 8 == pytest.approx(72.35e9, rel=0.01)
    assert whisper_padded["flops"] / 8 == pytest.approx(2.27e12, rel=0.02)  # 32 layers on 1500 positions
    assert hubert["flops"] * 25 < whisper_padded["flops"]
    assert whisper_clip["flops"] * 15 < whisper_padded["flops"]
    per_tower = flops.sample_flops(cfg)["train"]
    assert max(per_tower["audio"], per_tower["video"]) < per_tower["llm"]


@pytest.mark.parametrize("fusion", [True, False])
def test_official_heads_formula_matches_flop_counter(fusion):
    from affect_model.model.official import OfficialHeads

    heads = OfficialHeads(video=12, audio=20, llm=24, fusion=fusion)
    got = _counted(heads, torch.randn(1, 8, 12), torch.randn(1, 6, 20))
    assert got == flops.official_heads(12, 20, 24, frames=8, clips=6, fusion=fusion)


def test_official_layout_sends_three_tokens_where_the_qformer_layout_sends_56():
    from emer.runconfig import load_run_config

    official = load_run_config(["affectgpt-qwen25"]).model
    qformer = official.replace(layout="qformer", chat_format="auto", target="description", fusion="qformer")
    a, q = flops.sample_flops(official), flops.sample_flops(qformer)
    assert sum(official.slot_lengths().values()) == 3 and sum(qformer.slot_lengths().values()) == 56
    assert a["llm_tokens"] == 3 + flops.OFFICIAL_TEMPLATE_TOKENS + 64 + 195
    assert a["train"]["qformers"] < q["train"]["qformers"] / 50  # the heads are ~60x cheaper than Q-Formers
    assert a["forward"]["video"] == q["forward"]["video"] and a["forward"]["audio"] == q["forward"]["audio"]
