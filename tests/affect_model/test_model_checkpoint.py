"""Checkpoints hold only the trainable weights + config and reload to identical outputs (local, s3)."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import load_file

from affect_model.model.affectgpt import AffectGPT
from affect_model.model.checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    from_pretrained,
    load_trainable,
    read_config,
    save_pretrained,
)
from affect_model.train.data import MediaProcessor, SampleEncoder, collate


def _perturbed(cfg) -> AffectGPT:
    """A model whose trainable weights differ from a fresh init (so a load that does nothing fails)."""
    torch.manual_seed(1)
    model = AffectGPT(cfg).eval()
    with torch.no_grad():
        for p in model.trainable_parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def _batch(model, rows):
    enc = SampleEncoder(model.config, model.tokenizer, MediaProcessor(model.config))
    return collate([enc(r) for r in rows], model.tokenizer.pad_token_id)


def test_save_load_identical_and_no_frozen_weights(tiny_cfg, rows, tmp_path):
    cfg = tiny_cfg.replace(fusion="attention", lora=True)
    model = _perturbed(cfg)
    batch = _batch(model, rows[:2])
    want = model(**batch).logits
    out = tmp_path / "ckpt"
    save_pretrained(model, str(out))
    assert sorted(os.listdir(out)) == [CONFIG_FILE, WEIGHTS_FILE]
    saved = load_file(str(out / WEIGHTS_FILE))
    trainable = dict(model.named_trainable_parameters())
    assert set(saved) == set(trainable)
    assert not any(k.startswith(("vision.", "audio.")) for k in saved)
    assert all(k.startswith("llm.") == ("lora_" in k) for k in saved)  # from the LLM only LoRA adapters
    frozen_bytes = sum(p.numel() * p.element_size() for p in model.parameters() if not p.requires_grad)
    size = (out / WEIGHTS_FILE).stat().st_size
    assert size < sum(t.numel() * t.element_size() for t in saved.values()) + 64 * 1024 < frozen_bytes
    meta = json.loads((out / CONFIG_FILE).read_text())
    assert meta["model"]["llm_model"] == cfg.llm_model and meta["model"]["fusion"] == "attention"
    assert read_config(str(out)) == cfg

    loaded = from_pretrained(str(out)).eval()
    assert torch.equal(loaded(**batch).logits, want)
    fresh = AffectGPT(cfg).eval()
    assert not torch.equal(fresh(**batch).logits, want)  # the load is what makes them equal


def test_load_trainable_rejects_other_architecture(tiny_cfg, tmp_path):
    model = _perturbed(tiny_cfg)
    save_pretrained(model, str(tmp_path / "a"))
    other = AffectGPT(tiny_cfg.replace(fusion="qformer"), tokenizer=model.tokenizer)
    with pytest.raises(ValueError, match="missing"):
        load_trainable(other, str(tmp_path / "a"))
    missing = load_trainable(other, str(tmp_path / "a"), strict=False)  # stage-1 weights into a fusion model
    assert missing and all(n.startswith(("fusion.", "fusion_proj.")) for n in missing)
    assert torch.equal(other.video_proj.weight, model.video_proj.weight)
    with pytest.raises(FileNotFoundError, match="not an AffectGPT checkpoint"):
        read_config(str(tmp_path / "nothing"))


def test_checkpoint_round_trip_s3(tiny_cfg, request):
    try:
        s3 = request.getfixturevalue("s3")
    except pytest.FixtureLookupError:
        pytest.skip("the s3 fixture (tests/conftest.py, moto) is not available")
    model = _perturbed(tiny_cfg)
    uri = s3.uri("ckpt/affectgpt")
    save_pretrained(model, uri)
    loaded = from_pretrained(uri, load_encoders=False)
    for name, p in model.named_trainable_parameters():
        assert torch.equal(dict(loaded.named_trainable_parameters())[name], p), name
