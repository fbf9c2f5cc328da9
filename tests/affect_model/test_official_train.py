"""End to end in the official layout on tiny weights (CPU): `emer train --stage 1 --config stage1
--config affectgpt-qwen25` -> export to the official key set -> import back -> `emer infer` asks the
OV-label question with the converted checkpoint."""

from __future__ import annotations

import json

import pytest
import torch
from train_helpers import write_coarse

from affect_model.model.checkpoint import read_trainable
from affect_model.model.config import debug_config
from core import storage
from emer.cli import main

pytestmark = pytest.mark.slow


def tiny_overrides(cfg) -> list[str]:
    """Dotted overrides that point the official preset at the tiny debug weights and sizes."""
    keys = ("vision_model", "audio_model", "llm_model", "encoder_dtype", "llm_dtype", "lora_r", "lora_alpha")
    return [f"--model.{k}={getattr(cfg, k)}" for k in keys] + ["--model.max_new_tokens=6"]


@pytest.mark.timeout(1500)  # 11 min measured on the shared 2-core box under load
def test_official_preset_trains_exports_imports_and_infers(ray_local, tiny_root, tmp_path, capsys):
    tiny = debug_config(tiny_root, layout="affectgpt")
    coarse = write_coarse(tmp_path, 6)
    runs = tmp_path / "runs"
    common = ["--config", "stage1", "--config", "affectgpt-qwen25", *tiny_overrides(tiny)]
    train = [
        f"--train.coarse_uri={coarse}",
        f"--train.storage_path={runs}",
        "--train.workers.actors=1",
        "--train.workers.num_gpus=0",
        "--train.workers.num_cpus=1",
        "--train.batch_size=2",
        "--train.max_steps=2",
        "--train.warmup_steps=1",
        "--train.precision=fp32",
        "--train.torch_adam=true",
        "--train.checkpoint_every=2",
        "--train.eval_each_epoch=false",
        "--train.shuffle_buffer=0",
    ]
    assert main(["train", "--stage", "1", *common, *train]) == 0
    run = runs / "stage1"
    history = json.loads(storage.read_text(str(run / "history.json")))
    assert len(history["steps"]) == 2 and all(s["loss"] > 0 for s in history["steps"])
    saved = read_trainable(str(run / "weights"))
    assert any(k.startswith("heads.affectgpt_proj") for k in saved) and any("lora_A" in k for k in saved)

    pth = tmp_path / "official.pth"
    # export reads the model config from the run's weights: it takes no --config (nor overrides)
    assert main(["models", "export-affectgpt", str(run), "--output", str(pth)]) == 0
    keys = set(torch.load(pth, weights_only=True)["model"])
    assert {"affectgpt_proj.weight", "multi_llama_proj.weight", "image_llama_proj.weight"} <= keys
    assert not any(k.startswith("heads.") or k.startswith("llm.") for k in keys)

    back = tmp_path / "imported"
    assert main(["models", "import-affectgpt", str(pth), "--output", str(back), *common]) == 0
    again = read_trainable(str(back))
    assert set(again) == set(saved) and all(torch.equal(again[k], saved[k]) for k in saved)

    capsys.readouterr()
    out = str(tmp_path / "pred" / "rows.parquet")
    args = ["infer", "--checkpoint", str(back), "--split", "rows", "--input", coarse, "--output", out]
    assert main([*args, "--question", "ovlabel", *common, "--train.infer.batch_size=3"]) == 0
    assert '"described": 6' in capsys.readouterr().out
    pred = storage.read_table(out)
    assert pred.num_rows == 6 and all(isinstance(t, str) for t in pred.column("description").to_pylist())
