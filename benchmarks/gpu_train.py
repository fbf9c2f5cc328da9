"""AffectGPT training and generation on one device, measured by one prepared script for a bare CUDA box.

On a bare CUDA machine (torch, transformers, peft, accelerate, safetensors, numpy, pyarrow, pyyaml; no
Ray, DeepSpeed, vLLM, decord, network), from the repository root:

    PYTHONPATH=. python3 benchmarks/gpu_train.py --out $OUT/gpu_train.json

Per layout in ``gpu_models.LAYOUTS`` (the Q-Former layout with the Vicuna-7B stage-1 preset and with the
Qwen2.5-7B towers and pre-fusion, and the official AffectGPT layout of ``affectgpt-qwen25``): real-size
towers with random weights (frozen LLM and encoders in bf16, built directly on the GPU), activation
checkpointing in the frozen LLM, EMER-like answer lengths (``gpu_models.ANSWER_LENGTHS``); it measures the
largest micro-batch that trains (doubling, then bisection, catching out-of-memory and freeing it; every
row at the longest answer), step time, samples/s, peak memory and MFU at that batch on cached features,
the same with live encoders (their ratio), generation tokens/s (``AffectGPT.generate``, as ``emer infer``)
at the largest batch, and whether DeepSpeed could run. Flags bound every search and phase; the defaults
are sized to finish within 8 minutes on one H100 (not yet checked on one). Progress goes to stderr, the
JSON to stdout and ``--out``.

Without CUDA (or with ``--dry-run``) the same code paths run on the tiny debug config in under 2
minutes (``make bench-gpu``): plumbing only, labelled as a dry run, never a GPU figure.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_measure as measure  # noqa: E402
import gpu_models as models  # noqa: E402

TARGETS = {"batch_per_80gb_gpu": 32, "mfu": 0.35, "paper_batch_per_a100": 3}
MFU_CONVENTION = (
    "model FLOPs per step / step time / the chip's dense bf16 peak; model FLOPs = per row, over its "
    "non-padding LLM positions: frozen LLM 4N per token (forward + backward to its inputs, attention "
    "included: 2x affect_model.model.flops.causal_llm), LoRA 6N per token, Q-Formers 3x forward, plus "
    "the frozen encoders' forward (live only), all from affect_model.model.flops; activation "
    "checkpointing's recomputation and padding are not counted"
)
DEFAULTS = {  # real (CUDA) / dry run (tiny, CPU)
    "start_batch": (8, 1),
    "batch_cap": (128, 4),
    "steps": (3, 2),
    "warmup": (1, 1),
    "gen_tokens": (128, 8),
    "gen_batch_cap": (256, 4),
}


def log(msg: str) -> None:
    print(f"[gpu_train +{time.monotonic() - START:6.1f}s] {msg}", file=sys.stderr, flush=True)


START = time.monotonic()


def device_info(device: torch.device) -> dict:
    import peft
    import transformers

    info = {
        "type": device.type,
        "name": platform.processor() or platform.machine(),
        "memory_gb": None,
        "bf16_peak_tflops": None,
        "peak_source": "no CUDA device: CPU dry run",
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["name"] = torch.cuda.get_device_name(device)
        info["memory_gb"] = round(props.total_memory / 2**30, 1)
        info["bf16_peak_tflops"], info["peak_source"] = measure.chip_peak(info["name"])
    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
    }
    return {"device": info, "versions": versions}


def label(args, device: torch.device) -> str:
    where = "CUDA" if device.type == "cuda" else "CPU"
    if args.dry_run:
        return f"{where} DRY RUN on the tiny debug config: plumbing only, not a GPU figure"
    cut = f", every tower cut to {args.layers} layers" if args.layers else ""
    if device.type == "cpu" or args.layers:
        return f"{where} CHECK of the real-size path{cut}: random weights, not a GPU figure"
    return "real-size architectures with random weights on a GPU"


def settings(args, device: torch.device) -> dict:
    real, cuda = not args.dry_run, device.type == "cuda"
    return {
        "model": "real-size architectures, random weights" if real else "tiny debug config (dry run)",
        "layouts": args.layouts,
        "precision": "frozen towers bf16, trained parts fp32 under bf16 autocast (plain AMP)"
        if cuda
        else "fp32, no autocast (CPU)",
        "activation_checkpointing": "frozen LLM (non-reentrant)",
        "optimizer": "torch AdamW lr 1e-4, grad clip 1.0",
        "answer_lengths": models.length_summary(),
        "search": "largest micro-batch: double from start_batch up to batch_cap, then bisect; every row "
        "at the longest answer; out-of-memory caught and freed",
        "timed_batches": "answer lengths drawn per step (same seeds for cached and live), right-padded "
        "to the step's longest row (no length grouping)",
        "prompt": "the preset's prompt and a fixed subtitle through PromptBuilder, tokenized by the tiny "
        "byte-level BPE of core.llm.tiny (1,200 ids; no download): longer than a real tokenizer's, so "
        "prompt_tokens errs high; answer ids are random",
        "live_inputs": "random pixel values and 16 kHz clips made on the device (no decoding)",
        "generation": "AffectGPT.generate on cached features, greedy; min_new_tokens = max_new_tokens, "
        "so every row makes exactly gen_tokens tokens",
        "mfu_convention": MFU_CONVENTION,
        "clock": "wall, torch.cuda.synchronize around every step" if cuda else "wall (CPU)",
        "peak_memory": "torch.cuda.max_memory_allocated, reset per measure"
        if cuda
        else "none per measure on a CPU (process_max_rss_gb: the whole run)",
        **{k: getattr(args, k) for k in ("start_batch", "batch_cap", "steps", "warmup", "gen_tokens")},
        **{k: getattr(args, k) for k in ("gen_batch_cap", "search_s", "budget_s", "layers")},
        "cpu_threads": None if cuda else args.cpu_threads,
    }


def run_layout(layout: models.Layout, args, root: Path, device: torch.device, peak, budget) -> dict:
    """Every measure of one layout; a phase that fails or has no time left is recorded, not raised."""
    t0 = time.monotonic()
    cfg = models.model_config(layout, root, real=not args.dry_run, layers=args.layers)
    if device.type == "cpu":  # CPUs without bf16 units crawl in bf16
        cfg = cfg.replace(encoder_dtype="float32", llm_dtype="float32")
    model = models.build(cfg, device)
    counts = models.parameter_counts(model)
    bench = measure.Bench(model, device, counts, peak)
    out = {
        "model": {
            "llm": layout.preset().llm_model,
            "vision": layout.preset().vision_model,
            "audio": layout.preset().audio_model,
            "fusion": cfg.fusion,
            "lora": cfg.lora,
            "parameters": counts,
            "prompt_tokens": bench.batches.prompt_tokens,
            "answer_budget_tokens": bench.batches.budget + 1,
        },
        "build_s": round(time.monotonic() - t0, 2),
    }
    log(f"{layout.name}: built in {out['build_s']} s, {counts}")
    steps, warmup = args.steps, args.warmup
    phases = (
        (
            "max_batch",
            lambda: bench.search(args.start_batch, args.batch_cap, budget.phase(args.search_s), log),
        ),
        ("train", lambda: bench.train(out["max_batch"].get("batch", 0), steps, warmup, cached=True)),
        ("live", lambda: bench.live(out["max_batch"].get("batch", 0), steps, warmup, out["train"], log)),
        (
            "generate",
            lambda: bench.generate(
                out["max_batch"].get("batch", 0),
                args.gen_tokens,
                args.gen_batch_cap,
                budget.phase(args.search_s),
                log,
            ),
        ),
    )
    for name, run in phases:
        out[name] = budget.run(name, run, log)
        log(f"{layout.name}: {name} {json.dumps(out[name])[:300]}")
    out["cached_vs_live_samples_per_s"] = out["live"].get("cached_vs_live_samples_per_s")
    out["deepspeed"] = measure.deepspeed_status(device)
    return out


class Budget:
    """The run's time budget: phases get at most their own limit and what is left of the whole."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def phase(self, seconds: float) -> float:
        """Monotonic deadline of a phase that may take ``seconds``."""
        return min(self.end, time.monotonic() + seconds)

    def run(self, name: str, fn, say) -> dict:
        if time.monotonic() >= self.end:
            return {"skipped": "time budget (--budget-s) spent"}
        try:
            return fn()
        except Exception as err:  # noqa: BLE001 - a failed phase is a figure of the run, not its end
            say(f"{name} failed: {type(err).__name__}: {err}")
            return {"error": f"{type(err).__name__}: {str(err)[:300]}"}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, help="write the JSON here too (it is always printed)")
    p.add_argument(
        "--layouts", nargs="+", choices=models.layout_names(), help="layouts to measure (default all)"
    )
    p.add_argument("--dry-run", action="store_true", help="tiny debug config even on CUDA (default on a CPU)")
    p.add_argument("--real", action="store_true", help="real-size towers even on a CPU (with --layers)")
    p.add_argument(
        "--layers", type=int, default=0, help="cut every real-size tower to N layers (a cheap check)"
    )
    p.add_argument(
        "--cpu-threads", type=int, default=1, help="torch threads on a CPU (default 1: shared boxes)"
    )
    p.add_argument("--start-batch", type=int, help="first batch of the search (default 8; dry run 1)")
    p.add_argument("--batch-cap", type=int, help="largest batch the search tries (default 128; dry run 4)")
    p.add_argument("--steps", type=int, help="timed steps per measure (default 3; dry run 2)")
    p.add_argument("--warmup", type=int, help="untimed steps before them (default 1)")
    p.add_argument("--gen-tokens", type=int, help="new tokens per generated row (default 128; dry run 8)")
    p.add_argument(
        "--gen-batch-cap", type=int, help="largest generation batch tried (default 256; dry run 4)"
    )
    p.add_argument(
        "--search-s", type=float, default=90.0, help="seconds one batch search may take (default 90)"
    )
    p.add_argument("--budget-s", type=float, default=390.0, help="seconds for all layouts (default 390)")
    p.add_argument("--root", type=Path, help="folder for config-only towers (default: a new temp folder)")
    args = p.parse_args(argv)
    args.dry_run = args.dry_run or not (args.real or torch.cuda.is_available())
    args.layouts = args.layouts or models.layout_names()
    for key, (real, dry) in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, dry if args.dry_run else real)
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(args.cpu_threads)  # tiny models on a loaded box: threads only contend
    root = args.root or Path(tempfile.mkdtemp(prefix="emer-gpu-train-"))
    result = {
        "benchmark": "AffectGPT training and generation on one device (benchmarks/gpu_train.py)",
        "dry_run": args.dry_run,
        "label": label(args, device),
        **device_info(device),
        "settings": settings(args, device),
        "targets": TARGETS,
        "layouts": {},
    }
    log(f"{result['device']['name']} ({device.type}), {result['label']}")
    budget = Budget(args.budget_s)
    peak = result["device"]["bf16_peak_tflops"]
    for layout in models.LAYOUTS:
        if layout.name in args.layouts:
            try:
                result["layouts"][layout.name] = run_layout(layout, args, root, device, peak, budget)
            except Exception as err:  # noqa: BLE001 - e.g. the model does not fit: the other layouts still run
                log(f"{layout.name} failed: {type(err).__name__}: {err}")
                result["layouts"][layout.name] = {"error": f"{type(err).__name__}: {str(err)[:300]}"}
            measure.free(device)  # the layout's model and optimizer went with run_layout's frame
    result["wall_s"] = round(time.monotonic() - START, 1)
    if device.type == "cpu":
        result["process_max_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)
    text = json.dumps(result, indent=1)
    print(text, flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    gc.collect()
    return result


if __name__ == "__main__":
    main()
