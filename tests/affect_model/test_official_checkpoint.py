"""Official AffectGPT .pth checkpoints <-> emer folders: names, shapes, round trips, refusals."""

from __future__ import annotations

import json

import pytest
import torch

from affect_model.model.config import ModelConfig
from affect_model.model.official_checkpoint import (
    export_official,
    import_official,
    official_shapes,
    read_official,
)

# The official model's trainable tensors for the bestsetup_bestfusion config, written out by hand from
# the real configs: CLIP ViT-L/14 image features (projection_dim 768), chinese-hubert-large (hidden
# 1024), Qwen2.5-7B-Instruct (hidden 3584, 28 layers, 28 heads / 4 KV heads of 128, MLP 18944) with
# LoRA r 16 on q, k, v, o, gate, up, down. (name: shape)
HEADS = {
    "image_llama_proj.weight": (3584, 768),
    "image_llama_proj.bias": (3584,),
    "affectgpt_proj.weight": (3584, 768),
    "affectgpt_proj.bias": (3584,),
    "video_attention_mlp.weight": (1, 768),
    "video_attention_mlp.bias": (1,),
    "audio_attention_mlp.weight": (1, 1024),
    "audio_attention_mlp.bias": (1,),
    "audio_llama_proj.weight": (3584, 1024),
    "audio_llama_proj.bias": (3584,),
    "multi_video_embs.weight": (1024, 768),
    "multi_video_embs.bias": (1024,),
    "multi_audio_embs.weight": (1024, 1024),
    "multi_audio_embs.bias": (1024,),
    "attention_mlp.weight": (1024, 2048),
    "attention_mlp.bias": (1024,),
    "fc_att.weight": (2, 1024),
    "fc_att.bias": (2,),
    "multi_llama_proj.weight": (3584, 1024),
    "multi_llama_proj.bias": (3584,),
}
LORA = {  # module: (in, out)
    "self_attn.q_proj": (3584, 3584),
    "self_attn.k_proj": (3584, 512),
    "self_attn.v_proj": (3584, 512),
    "self_attn.o_proj": (3584, 3584),
    "mlp.gate_proj": (3584, 18944),
    "mlp.up_proj": (3584, 18944),
    "mlp.down_proj": (18944, 3584),
}
R = 16


def official_table(layers: int) -> dict[str, tuple[int, ...]]:
    out = dict(HEADS)
    for n in range(layers):
        for module, (i, o) in LORA.items():
            base = f"llama_model.base_model.model.model.layers.{n}.{module}"
            out[f"{base}.lora_A.default.weight"] = (R, i)
            out[f"{base}.lora_B.default.weight"] = (o, R)
    return out


def real_config(folder, layers: int = 28) -> ModelConfig:
    """The affectgpt-qwen25 preset's model section with the three real configs as local files
    (config.json only: shapes come from configs, no weights are read)."""
    from emer.runconfig import load_run_config

    files = {
        "qwen": {
            "model_type": "qwen2",
            "hidden_size": 3584,
            "intermediate_size": 18944,
            "num_hidden_layers": layers,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
            "vocab_size": 152064,
            "max_position_embeddings": 32768,
            "tie_word_embeddings": False,
        },
        "clip": {
            "model_type": "clip",
            "projection_dim": 768,
            "vision_config": {
                "hidden_size": 1024,
                "intermediate_size": 4096,
                "num_hidden_layers": 24,
                "num_attention_heads": 16,
                "patch_size": 14,
                "image_size": 224,
            },
            "text_config": {"hidden_size": 768},
        },
        "hubert": {"model_type": "hubert", "hidden_size": 1024, "num_hidden_layers": 24},
    }
    for name, data in files.items():
        (folder / name).mkdir(exist_ok=True)
        (folder / name / "config.json").write_text(json.dumps(data))
    run = load_run_config(["affectgpt-qwen25"])
    return run.model.replace(
        llm_model=str(folder / "qwen"), vision_model=str(folder / "clip"), audio_model=str(folder / "hubert")
    )


def fake_official(shapes: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=g).to(torch.float16) for k, s in shapes.items()}


def test_official_key_set_of_the_real_model(tmp_path):
    assert official_shapes(real_config(tmp_path)) == official_table(28)


def test_import_export_reimport_bit_identical(tmp_path):
    from safetensors.torch import load_file

    cfg = real_config(tmp_path, layers=2)  # real widths, 2 layers: the test stays small
    state = fake_official(official_table(2))
    src = tmp_path / "released.pth"
    torch.save(
        {
            "model": state,
            "optimizer": {"state": {}},
            "config": {"run": {"lr": 1e-5}},
            "scaler": None,
            "epoch": 59,
        },
        src,
    )
    import_official(str(src), cfg, str(tmp_path / "a"))
    first = load_file(tmp_path / "a" / "trainable.safetensors")
    assert "heads.affectgpt_proj.weight" in first
    assert "llm.base_model.model.model.layers.1.mlp.down_proj.lora_B.default.weight" in first
    export_official(str(tmp_path / "a"), str(tmp_path / "out.pth"))
    back = torch.load(tmp_path / "out.pth", weights_only=True)
    assert set(back) == {"model"} and set(back["model"]) == set(state)
    assert all(
        torch.equal(back["model"][k], state[k]) and back["model"][k].dtype == state[k].dtype for k in state
    )
    import_official(str(tmp_path / "out.pth"), cfg, str(tmp_path / "b"))
    second = load_file(tmp_path / "b" / "trainable.safetensors")
    assert set(first) == set(second) and all(torch.equal(first[k], second[k]) for k in first)


def test_tampered_or_foreign_checkpoints_are_refused_by_name(tmp_path):
    from train_helpers import RunsCode

    cfg = real_config(tmp_path, layers=1)
    good = fake_official(official_table(1))
    cases = {
        "unknown": ({**good, "llama_model.lm_head.weight": torch.zeros(2, 2)}, "llama_model.lm_head.weight"),
        "missing": ({k: v for k, v in good.items() if k != "fc_att.bias"}, "missing key(s): fc_att.bias"),
        "shape": ({**good, "fc_att.weight": torch.zeros(3, 1024)}, "fc_att.weight (3, 1024) != (2, 1024)"),
    }
    for name, (state, needle) in cases.items():
        path = tmp_path / f"{name}.pth"
        torch.save({"model": state}, path)
        with pytest.raises(ValueError) as err:
            import_official(str(path), cfg, str(tmp_path / name))
        assert needle in str(err.value), name
        assert not (tmp_path / name).exists()
    torch.save({"state_dict": good}, tmp_path / "foreign.pth")
    with pytest.raises(ValueError, match="not an official AffectGPT checkpoint"):
        read_official(str(tmp_path / "foreign.pth"))
    marker = tmp_path / "ran"
    torch.save({"model": good, "config": RunsCode(marker)}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="will not load: .*open"):
        read_official(str(tmp_path / "evil.pth"))
    assert not marker.exists()


def test_tiny_model_logits_unchanged_through_export_and_import(tiny_root, rows, tmp_path):
    from affect_model.model.affectgpt import AffectGPT
    from affect_model.model.checkpoint import from_pretrained, save_pretrained
    from affect_model.model.config import debug_config
    from affect_model.train.data import MediaProcessor, SampleEncoder, collate

    cfg = debug_config(tiny_root, layout="affectgpt", lora=True, target="description")
    torch.manual_seed(1)
    model = AffectGPT(cfg).eval()
    with torch.no_grad():
        for p in model.trainable_parameters():
            p.add_(torch.randn_like(p) * 0.05)  # LoRA B starts at zero: make every tensor matter
    enc = SampleEncoder(cfg, model.tokenizer, MediaProcessor(cfg))
    batch = collate([enc(r) for r in rows[:2]], model.tokenizer.pad_token_id)
    with torch.no_grad():
        before = model(**batch).logits
    save_pretrained(model, str(tmp_path / "run"))
    export_official(str(tmp_path / "run"), str(tmp_path / "tiny.pth"))
    names = set(torch.load(tmp_path / "tiny.pth", weights_only=True)["model"])
    assert "image_llama_proj.weight" in names and "fc_att.weight" in names
    assert all(n.startswith("llama_model.base_model.model.model.layers.") for n in names if "lora_" in n)
    import_official(str(tmp_path / "tiny.pth"), cfg, str(tmp_path / "back"))
    again = from_pretrained(str(tmp_path / "back")).eval()
    with torch.no_grad():
        after = again(**batch).logits
    assert torch.equal(before, after)


def test_qformer_layout_has_no_official_names(tiny_cfg, tmp_path):
    with pytest.raises(ValueError, match="model.layout = 'qformer'"):
        official_shapes(tiny_cfg)
