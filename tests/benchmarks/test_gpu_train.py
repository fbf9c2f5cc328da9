"""``benchmarks/gpu_train.py``: its CPU dry run runs with Ray, DeepSpeed, vLLM, decord, openai,
soundfile and PyAV blocked (the bare CUDA image) and prints a JSON of the promised keys and types; the
batch search, out-of-memory recovery, chip peaks and the MFU convention behave as documented."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_measure as measure  # noqa: E402
import gpu_models as models  # noqa: E402

from affect_model.model import flops  # noqa: E402

BLOCKER = ROOT / "tests" / "benchmarks" / "without_heavy_libs.py"
LAYOUT_KEYS = {"model", "build_s", "max_batch", "train", "live", "generate", "cached_vs_live_samples_per_s"}
STEP_KEYS = {
    "batch",
    "step_s",
    "samples_per_s",
    "llm_tokens_per_s",
    "peak_mem_gb",
    "model_tflop_per_step",
    "mfu",
}


def _run_blocked(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run(
        [sys.executable, str(BLOCKER), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=280
    )


def test_the_blocker_hides_the_heavy_libraries():
    code = (
        "import importlib.util, sys; sys.path.insert(0, 'tests/benchmarks'); import without_heavy_libs as w; "
        "w.install(); assert importlib.util.find_spec('deepspeed') is None\n"
        "for name in ('ray', 'deepspeed.ops', 'vllm', 'decord', 'openai', 'soundfile', 'av'):\n"
        "    try:\n        __import__(name)\n    except ImportError:\n        print('blocked', name)"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split("\n")[:-1] == [
        f"blocked {n}" for n in ("ray", "deepspeed.ops", "vllm", "decord", "openai", "soundfile", "av")
    ]


def test_every_model_module_imports_without_the_heavy_libraries():
    names = sorted(f"affect_model.model.{p.stem}" for p in (ROOT / "affect_model" / "model").glob("[!_]*.py"))
    assert "affect_model.model.affectgpt" in names and "affect_model.model.checkpoint" in names
    res = _run_blocked("-m", *names, "gpu_models", "gpu_measure")
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip() == f"imported {len(names) + 2}"


@pytest.mark.slow
def test_cpu_dry_run_without_heavy_libraries_prints_every_figure(tmp_path):
    out = tmp_path / "gpu_train.json"
    res = _run_blocked(
        "benchmarks/gpu_train.py",
        *("--out", str(out), "--root", str(tmp_path / "models")),
        *("--batch-cap", "2", "--gen-batch-cap", "2", "--steps", "1", "--warmup", "0"),
    )
    assert res.returncode == 0, res.stderr[-3000:]
    printed = json.loads(res.stdout)
    assert printed == json.loads(out.read_text())
    assert (
        printed["dry_run"] is True
        and "DRY RUN" in printed["label"]
        and "not a GPU figure" in printed["label"]
    )
    assert printed["device"]["type"] == "cpu" and printed["device"]["bf16_peak_tflops"] is None
    assert isinstance(printed["versions"]["torch"], str) and isinstance(
        printed["versions"]["transformers"], str
    )
    assert printed["settings"]["answer_lengths"]["kind"] == "lognormal"
    assert "4N" in printed["settings"]["mfu_convention"] and "6N" in printed["settings"]["mfu_convention"]
    assert list(printed["layouts"]) == models.layout_names()
    assert "[gpu_train +" in res.stderr  # progress lines
    for name, lay in printed["layouts"].items():
        assert LAYOUT_KEYS <= set(lay), name
        assert lay["max_batch"]["batch"] == 2 and [t["batch"] for t in lay["max_batch"]["trials"]] == [1, 2]
        for phase in ("train", "live"):
            step = lay[phase]
            assert STEP_KEYS <= set(step), (name, phase)
            assert step["batch"] == 2 and step["step_s"] > 0 and step["samples_per_s"] > 0
            assert step["model_tflop_per_step"] > 0 and step["mfu"] is None and step["peak_mem_gb"] is None
            assert math.isfinite(step["loss"])
        assert lay["live"]["model_tflop_per_step"] > lay["train"]["model_tflop_per_step"]  # + encoders
        assert (
            isinstance(lay["cached_vs_live_samples_per_s"], float) and lay["cached_vs_live_samples_per_s"] > 0
        )
        gen = lay["generate"]
        assert gen["batch"] == 2 and gen["new_tokens_per_row"] == 8 and gen["tokens_per_s"] > 0
        assert lay["deepspeed"]["ran"] is False and "reason" in lay["deepspeed"]
    assert printed["layouts"]["qformer/qwen2.5-7b/prefusion"]["model"]["parameters"]["lora"] > 0
    assert printed["layouts"]["qformer/vicuna-7b/stage1"]["model"]["parameters"]["lora"] == 0


def test_search_doubles_then_bisects_to_the_largest_batch_that_fits():
    res = measure.largest_batch(lambda b: {"peak_mem_gb": b} if b <= 37 else None, 8, 128, math.inf)
    assert res["batch"] == 37 and res["first_oom"] == 38 and "bisected" in res["stopped"]
    assert [t["batch"] for t in res["trials"]] == [8, 16, 32, 64, 48, 40, 36, 38, 37]
    assert res["best"] == {"peak_mem_gb": 37}


def test_search_stops_at_the_cap_the_deadline_or_the_first_miss_without_bisection():
    assert measure.largest_batch(lambda b: {}, 8, 20, math.inf)["batch"] == 20  # 8, 16, 20
    cut = measure.largest_batch(lambda b: {}, 8, 128, 0.0)
    assert cut["batch"] == 8 and cut["stopped"].startswith("time budget")
    assert measure.largest_batch(lambda b: None, 4, 128, math.inf)["batch"] == 0  # nothing fits
    assert (
        measure.largest_batch(lambda b: {} if b <= 37 else None, 8, 256, math.inf, bisect=False)["batch"]
        == 32
    )


def test_out_of_memory_is_caught_and_the_gradients_freed():
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.ones(3)
    bench = types.SimpleNamespace(opt=torch.optim.SGD([p], lr=0.1), device=torch.device("cpu"))

    def oom():
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    assert measure.Bench.attempt(bench, oom) is None and p.grad is None
    assert measure.Bench.attempt(bench, lambda: {"ok": 1}) == {"ok": 1}
    with pytest.raises(ValueError):  # any other error is not swallowed
        measure.Bench.attempt(bench, lambda: int("x"))


@pytest.mark.parametrize(
    ("name", "peak"),
    [
        ("NVIDIA H100 80GB HBM3", 989.0),
        ("NVIDIA H100 PCIe", 756.0),
        ("NVIDIA H200", 989.0),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("NVIDIA L40S", 362.0),
        ("NVIDIA L4", 121.0),
        ("NVIDIA A10G", 125.0),
        ("Tesla T4", None),
    ],
)
def test_chip_peaks_by_device_name(name, peak):
    got, source = measure.chip_peak(name)
    assert got == peak
    assert ("unknown" in source) == (peak is None)


def test_mfu_counts_4n_per_token_for_the_frozen_llm():
    """Vicuna-7B (6.61e9 parameters with FLOPs: all but the input embedding) on 300 cached-feature
    tokens: ~4N per token, plus the attention products and the Q-Formers (under 5 %)."""
    cfg = models.preset("stage1")
    model = measure.FlopModel(cfg, lora_params=0)
    per_token = model.step([300], live=False) / 300
    assert 4 * 6.61e9 < per_token < 1.05 * 4 * 6.61e9
    two = model.step([300, 100], live=False)
    assert two == pytest.approx(
        2 * (flops.causal_llm(model.llm, 300) + flops.causal_llm(model.llm, 100)) + 2 * model.qformers
    )
    live = model.step([300], live=True) - model.step([300], live=False)
    assert live == pytest.approx(
        flops.tower_flops(cfg, 300)["forward"]["video"] + flops.tower_flops(cfg, 300)["forward"]["audio"]
    )
    assert (
        measure.FlopModel(cfg, lora_params=1000).step([300], live=False) - model.step([300], live=False)
        == 6 * 1000 * 300
    )


def test_real_size_layouts_are_config_only_folders(tmp_path):
    """Every layout writes its towers' configs (no weights), cut to --layers when asked."""
    for layout in models.LAYOUTS:
        cfg = models.model_config(layout, tmp_path, real=True, layers=1)
        llm = flops.model_config(cfg.llm_model)
        assert cfg.gradient_checkpointing and (llm.num_hidden_layers, llm.hidden_size) in (
            (1, 4096),
            (1, 3584),
        )
        assert sorted(p.name for p in Path(cfg.llm_model).iterdir()) == ["config.json"]
        assert (cfg.fusion, cfg.lora) == (layout.preset().fusion, layout.preset().lora)
    assert flops.model_config(cfg.vision_model).image_size == 224


@pytest.mark.gpu
def test_real_size_path_on_cuda_cut_to_two_layers(tmp_path):
    """On a CUDA machine: the real-size path (two layers per tower) measures memory, MFU and generation."""
    res = _run_blocked(
        "benchmarks/gpu_train.py",
        *("--real", "--layers", "2", "--root", str(tmp_path), "--start-batch", "2", "--batch-cap", "8"),
        *("--gen-batch-cap", "8", "--gen-tokens", "8", "--steps", "1", "--search-s", "60"),
    )
    assert res.returncode == 0, res.stderr[-3000:]
    printed = json.loads(res.stdout)
    assert printed["device"]["type"] == "cuda" and "CHECK" in printed["label"]
    for lay in printed["layouts"].values():
        assert lay["max_batch"]["batch"] >= 2 and lay["train"]["peak_mem_gb"] > 0
        mfu = lay["train"]["mfu"]
        assert (mfu is None) == (printed["device"]["bf16_peak_tflops"] is None)
        assert mfu is None or 0 < mfu < 1
        assert lay["generate"]["tokens_per_s"] > 0 and lay["generate"]["peak_mem_gb"] > 0
