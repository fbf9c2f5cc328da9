"""Training-step throughput and peak memory of AffectGPT per configuration, side by side in one run.

Configurations: live encoders vs cached features x plain DDP vs DeepSpeed ZeRO-2 x activation
checkpointing off / on. Each runs in its own subprocess (so peak memory is its own), through the same
engine the Ray Train loop uses (``affect_model.train.engine``), with data prepared the way a worker
gets it (Ray Data column batches -> ``AffectGPTTask.collate``): a live step decodes the JPEG frames and
audio and runs the frozen encoders, a cached step reads their stored outputs. Prints one JSON object.

    .venv/bin/python benchmarks/train_step.py                      # CPU, tiny config (the default)
    .venv/bin/python benchmarks/train_step.py --real --max-batch   # GPU: real-size random-weight model
    .venv/bin/python benchmarks/train_step.py --batching           # naive vs length-grouped batches

``--batching`` compares naive with length-grouped batching of the same samples instead (EMER-like answer
lengths, tiny model, CPU; ``benchmarks/length_batching.py``): samples/s both ways, their ratio (target
1.3x), the padding fractions and the check that every sample's loss is the same under both.

``--real`` builds the real-size architecture with random weights (Vicuna/LLaMA-7B-class LLM in bf16,
CLIP ViT-L/14 vision tower, HuBERT-large audio encoder, the paper's Q-Formers: 8 frames, 32 video and 8
audio queries); ``--max-batch`` searches the largest batch per GPU that trains (doubling, then bisection
on out-of-memory) and compares it with the paper's 3 on one 80 GB A100 (target: 8x). ``--layers N``
shrinks every tower's depth to N (a cheap check of the real-size path on a small machine).
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PAPER_BATCH = 3  # AffectGPT paper: batch 3 on one 80 GB A100


# ---------------------------------------------------------------- models


def tiny_model_cfg(root: Path):
    from affect_model.model.config import debug_config

    return debug_config(root / "tiny")


def real_model_cfg(root: Path, layers: int = 0, dtype: str = "bfloat16"):
    """Config folders of the real-size towers (weights are random: see ``random_weights``)."""
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        HubertConfig,
        LlamaConfig,
        Wav2Vec2FeatureExtractor,
    )

    from affect_model.model.config import ModelConfig
    from core.llm.tiny import build_tiny_tokenizer

    vision, audio, llm = root / "vit-l-14", root / "hubert-large", root / "llama-7b"
    CLIPVisionConfig(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=layers or 24,
        num_attention_heads=16,
        image_size=224,
        patch_size=14,
    ).save_pretrained(vision)
    CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}).save_pretrained(
        vision
    )
    HubertConfig(
        hidden_size=1024,
        num_hidden_layers=layers or 24,
        num_attention_heads=16,
        intermediate_size=4096,
        do_stable_layer_norm=True,
        feat_extract_norm="layer",
        conv_bias=True,
    ).save_pretrained(audio)
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, do_normalize=True, return_attention_mask=True
    ).save_pretrained(audio)
    LlamaConfig(vocab_size=32000, num_hidden_layers=layers or 32).save_pretrained(llm)  # LLaMA/Vicuna-7B
    tok = build_tiny_tokenizer(root / "tokenizer")
    return ModelConfig(
        vision_model=str(vision),
        audio_model=str(audio),
        llm_model=str(llm),
        tokenizer=tok,
        chat_format="plain",
        encoder_dtype=dtype,
        llm_dtype=dtype,
        frames=8,
        audio_clips=8,
        clip_seconds=2.0,
        max_subtitle_tokens=64,
        max_answer_tokens=256,
    )


def random_weights() -> None:
    """Make every ``from_pretrained`` in this process build the architecture from its config with random
    weights (real-size checkpoints of tens of GB are neither needed nor downloadable here)."""
    import torch
    import transformers
    from transformers.models.auto.auto_factory import _BaseAutoModelClass

    # The weights of a tower depend on its path only, not on what was built before it, and the global
    # RNG is left as it was: live and cached configurations then train the same model (equal losses).
    def seeded(build, path):
        with torch.random.fork_rng():
            torch.manual_seed(zlib.crc32(str(path).encode()))
            return build(transformers.AutoConfig.from_pretrained(path))

    def model_from_config(cls, path, *args, dtype=None, **kwargs):
        return seeded(lambda c: cls._from_config(c, dtype=dtype), path)

    def auto_from_config(cls, path, *args, dtype=None, **kwargs):
        return seeded(lambda c: cls.from_config(c, dtype=dtype), path)

    transformers.PreTrainedModel.from_pretrained = classmethod(model_from_config)
    _BaseAutoModelClass.from_pretrained = classmethod(auto_from_config)


# ---------------------------------------------------------------- data


def raw_batch(n: int, seed: int, frames: int, size: int, seconds: float, answer_words: int) -> dict:
    """A Ray-Data-style column batch of EMER-Coarse rows (JPEG frames, 16 kHz audio, texts)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)

    def jpeg() -> bytes:
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, format="JPEG")
        return buf.getvalue()

    words = "the person frowns and speaks softly so she may feel sad worried and tired".split()
    cols = {
        "name": [f"b{seed}_{i}" for i in range(n)],
        "subtitle_en": ["I did not expect that at all."] * n,
        "description_en": [" ".join(rng.choice(words, answer_words)) for _ in range(n)],
    }
    frame_col = np.empty(n, dtype=object)
    audio_col = np.empty(n, dtype=object)
    for i in range(n):
        frame_col[i] = [jpeg() for _ in range(frames)]
        audio_col[i] = (rng.normal(size=int(16000 * seconds)) * 0.1).astype(np.float32)
    out = {k: np.array(v, dtype=object) for k, v in cols.items()}
    out.update(frames=frame_col, audio=audio_col)
    return out


# ---------------------------------------------------------------- one configuration (subprocess)


def _init_dist(device_type: str) -> None:
    import socket

    import torch.distributed as dist

    if dist.is_initialized():
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK="0",
        WORLD_SIZE="1",
        LOCAL_RANK="0",
        LOCAL_WORLD_SIZE="1",
    )
    dist.init_process_group("nccl" if device_type == "cuda" else "gloo", rank=0, world_size=1)


def _step_time(engine, task, module, batch, device, sync, clock) -> tuple[float, float, float]:
    """(data seconds, compute seconds, loss) of one step: collate (decode / features), then fwd+bwd+step."""
    from affect_model.train.task import to_device

    t0 = clock()
    mb = to_device(task.collate(module, batch), device)
    mb.pop("names", None)
    sync()
    t1 = clock()
    loss = engine.micro_step(task.loss, mb)
    engine.step()
    sync()
    return t1 - t0, clock() - t1, loss


class Bench:
    """One configuration, built and ready to take timed training steps."""

    def __init__(self, spec: dict) -> None:
        import torch

        from affect_model.jobs.features import FeatureEncoder
        from affect_model.train.config import TrainConfig
        from affect_model.train.engine import make_engine
        from affect_model.train.task import AffectGPTTask

        self.spec = spec
        self.device = device = torch.device("cuda" if spec["gpu"] else "cpu")
        if spec["real"]:
            random_weights()
        root = Path(spec["root"])
        dtype = "bfloat16" if spec["gpu"] else "float32"  # CPUs without bf16 units crawl in bf16
        model_cfg = real_model_cfg(root, spec["layers"], dtype) if spec["real"] else tiny_model_cfg(root)
        _init_dist(device.type)
        self.sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        batch = raw_batch(
            spec["batch"],
            0,
            model_cfg.frames,
            spec["image"],
            model_cfg.audio_clips * 2.0,
            spec["answer_words"],
        )
        if spec["cached"]:  # the feature job's output for the same rows, made before timing
            batch = FeatureEncoder(model_cfg, dtype="float32")(batch)
        self.batch = batch
        torch.manual_seed(0)
        self.task = AffectGPTTask(model_cfg, cached=spec["cached"])
        with torch.device(device):
            self.module = self.task.build(spec["checkpointing"])
        precision = "bf16" if spec["gpu"] else "fp32"
        cfg = TrainConfig(
            strategy=spec["strategy"],
            zero_stage=2,
            precision=precision,
            batch_size=spec["batch"],
            torch_adam=not spec["gpu"],
            lr=1e-4,
            warmup_steps=2,
        )
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        self.engine = make_engine(self.module, cfg, total_steps=100, world_size=1, rank=0, device=device)
        self.module.train()
        # GPU: wall time. CPU: this process's CPU time (all its threads), which a shared, busy machine
        # disturbs less than wall time; samples/s is then per CPU-second.
        self.clock = time.perf_counter if device.type == "cuda" else time.process_time
        self.data: list[float] = []
        self.compute: list[float] = []
        self.loss = float("nan")

    def step(self, record: bool = True) -> None:
        d, c, self.loss = _step_time(
            self.engine, self.task, self.module, self.batch, self.device, self.sync, self.clock
        )
        if record:
            self.data.append(d)
            self.compute.append(c)

    def result(self) -> dict:
        import torch

        peak = (
            torch.cuda.max_memory_allocated()
            if self.device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        )
        # the fastest step is the least disturbed by other work on a shared machine (timeit's rule)
        totals = [d + c for d, c in zip(self.data, self.compute)]
        best = min(range(len(totals)), key=totals.__getitem__)
        n = self.spec["batch"]
        return {
            "samples_per_s": n / totals[best],
            "step_s": totals[best],
            "data_s": self.data[best],
            "compute_s": self.compute[best],
            "median_samples_per_s": n / statistics.median(totals),
            "peak_mem_gb": round(peak / 2**30, 3),
            "loss": self.loss,
        }


def run_config(spec: dict) -> dict:
    bench = Bench(spec)
    for i in range(spec["warmup"] + spec["steps"]):
        bench.step(record=i >= spec["warmup"])
    return bench.result()


def run_interleaved(specs: list[dict]) -> list[dict]:
    """All configurations in one process, one step each in turn: on a shared CPU every configuration
    sees the same background load (peak memory comes from the per-configuration runs instead)."""
    benches = [Bench(s) for s in specs]
    for i in range(specs[0]["warmup"] + specs[0]["steps"]):
        for bench in benches:
            bench.step(record=i >= specs[0]["warmup"])
    return [b.result() for b in benches]


def max_batch(spec: dict, start: int = 4, limit: int = 1024) -> dict:
    """Largest batch that trains a few steps: double until out-of-memory, then bisect."""
    import gc

    import torch

    def fits(b: int) -> dict | None:
        try:
            return run_config({**spec, "batch": b, "warmup": 1, "steps": 1})
        except torch.cuda.OutOfMemoryError:
            return None
        finally:
            gc.collect()
            torch.cuda.empty_cache()

    good, bad, best = 0, None, None
    b = start
    while b <= limit:
        res = fits(b)
        if res is None:
            bad = b
            break
        good, best, b = b, res, b * 2
    while bad is not None and bad - good > 1:
        mid = (good + bad) // 2
        res = fits(mid)
        good, best, bad = (mid, res, bad) if res is not None else (good, best, mid)
    return {"max_batch": good, "vs_paper": good / PAPER_BATCH, **(best or {})}


# ---------------------------------------------------------------- driver


def _subprocess(spec: dict | list, mode: str) -> dict | list:
    cmd = [sys.executable, __file__, "--child", mode, json.dumps(spec)]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith(("{", "[{"))]
    if out.returncode or not lines:
        return {"error": (out.stderr or out.stdout).strip().splitlines()[-1:] or ["failed"]}
    return json.loads(lines[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--real", action="store_true", help="real-size random-weight architecture (needs a GPU)")
    p.add_argument("--layers", type=int, default=0, help="shrink every real-size tower to N layers")
    p.add_argument("--max-batch", action="store_true", help="search the largest batch per GPU per config")
    p.add_argument("--batch", type=int, default=0, help="batch per step (default 4 tiny, 3 real)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batching", action="store_true", help="naive vs length-grouped batching (tiny, CPU)")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.batching:  # benchmarks/length_batching.py: samples/s, padding and per-sample loss, both ways
        from length_batching import run as run_batching

        print(json.dumps(run_batching(Path(tempfile.mkdtemp(prefix="emer-bench-"))), indent=1))
        return
    if args.child:
        mode, spec = args.child
        spec = json.loads(spec)
        run = {"max": max_batch, "one": run_config, "interleaved": run_interleaved}[mode]
        print(json.dumps(run(spec)), flush=True)
        return
    import torch

    gpu = torch.cuda.is_available()
    root = Path(tempfile.mkdtemp(prefix="emer-bench-"))
    base = {
        "gpu": gpu,
        "real": args.real,
        "layers": args.layers,
        "root": str(root),
        "warmup": args.warmup,
        "steps": args.steps,
        "batch": args.batch or (3 if args.real else 4),
        "image": 224,
        "answer_words": 150 if args.real else 16,
    }
    interleave = not gpu and not args.max_batch
    results, specs = [], []
    for cached, strategy, ckpt in itertools.product((False, True), ("ddp", "deepspeed"), (False, True)):
        spec = {**base, "cached": cached, "strategy": strategy, "checkpointing": ckpt}
        specs.append(spec)
        name = f"{'cached' if cached else 'live'}/{'zero2' if strategy == 'deepspeed' else 'ddp'}" + (
            "/ckpt" if ckpt else ""
        )
        # its own process: its own peak memory (and, on a GPU, its own timing)
        res = _subprocess(
            {**spec, "warmup": 1, "steps": 2} if interleave else spec, "max" if args.max_batch else "one"
        )
        results.append(
            {
                "config": name,
                "cached": cached,
                "strategy": strategy,
                "activation_checkpointing": ckpt,
                "batch": spec["batch"],
                **res,
            }
        )
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    if interleave:  # timings side by side under the same background load
        timed = _subprocess(specs, "interleaved")
        for res, t in zip(results, timed if isinstance(timed, list) else []):
            # timings from the interleaved run; memory and loss from the configuration's own run (there
            # the dropout RNG is its own, so equal losses show the configurations compute the same)
            res.update({k: v for k, v in t.items() if k not in ("peak_mem_gb", "loss")})
    print(json.dumps(summarise(results, base, gpu), indent=1))


def summarise(results: list[dict], base: dict, gpu: bool) -> dict:
    by = {r["config"]: r for r in results}

    def ratio(a: str, b: str, key: str) -> float | None:
        x, y = by.get(a, {}).get(key), by.get(b, {}).get(key)
        return round(x / y, 3) if x and y else None

    model = "real-size random weights" if base["real"] else "tiny"
    out = {
        "device": "cuda" if gpu else "cpu",
        "model": model,
        "precision": "bf16" if gpu else "fp32",
        "workers": 1,
        "clock": "wall" if gpu else "process CPU time, configurations interleaved step by step",
        "configs": results,
        "ratios": {
            "cached_vs_live_samples_per_s_zero2": ratio("cached/zero2", "live/zero2", "samples_per_s"),
            "cached_vs_live_samples_per_s_ddp": ratio("cached/ddp", "live/ddp", "samples_per_s"),
            "zero2_vs_ddp_samples_per_s_live": ratio("live/zero2", "live/ddp", "samples_per_s"),
            "ckpt_vs_none_peak_mem_cached_zero2": ratio("cached/zero2/ckpt", "cached/zero2", "peak_mem_gb"),
            "ckpt_vs_none_samples_per_s_cached_zero2": ratio(
                "cached/zero2/ckpt", "cached/zero2", "samples_per_s"
            ),
        },
        "targets": {"cached_epoch_speedup": 5.0, "batch_vs_paper": 8.0, "paper_batch": PAPER_BATCH},
    }
    if any("max_batch" in r for r in results):
        best = max(results, key=lambda r: r.get("max_batch", 0))
        out["best_max_batch"] = {
            "config": best["config"],
            "max_batch": best.get("max_batch"),
            "vs_paper": best.get("vs_paper"),
        }
    return out


if __name__ == "__main__":
    main()
