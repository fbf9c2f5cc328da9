"""Naive vs length-grouped batching of the SAME samples: training samples/s, padding, per-sample loss.

``benchmarks/train_step.py --batching`` runs this: tiny AffectGPT on cached features (the LLM part is
what padding costs), answers whose token lengths follow a log-normal like the EMER descriptions
(30-400 tokens). Both batchings train one epoch over the same rows, step by step in turn, through the
engine the Ray Train loop uses (plain DDP, fp32 on CPU); CPU time per epoch gives samples/s (a busy,
shared machine disturbs process time less than wall time). Before training, the per-sample answer
losses under both batchings (eval mode, no dropout) must agree: padding behind a correct attention
mask changes no sample's loss. Prints one JSON object.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

WORDS = "the person frowns and speaks softly so she may feel sad worried tired calm angry happy".split()


def answer_lengths(n: int, seed: int, lo: int = 30, hi: int = 400) -> np.ndarray:
    """Token counts like the EMER descriptions: log-normal around 90 tokens, clipped to [lo, hi]."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(np.log(90), 0.6, n), lo, hi).astype(int)


def columns(model_cfg, n: int, seed: int) -> dict:
    """A Ray-Data-style column batch of ``n`` cached-feature rows whose answers have skewed lengths."""
    from train_step import raw_batch

    from affect_model.jobs.features import FeatureEncoder

    raw = raw_batch(4, seed, model_cfg.frames, 64, model_cfg.audio_clips * 2.0, 4)
    feats = FeatureEncoder(model_cfg, dtype="float32")(raw)
    rng = np.random.default_rng(seed + 1)
    out = {
        "name": np.array([f"s{i:04d}" for i in range(n)], dtype=object),
        "subtitle_en": np.array(["I did not expect that at all."] * n, dtype=object),
        # one word of WORDS is one token of the tiny tokenizer, after a space (checked by the lengths)
        "description_en": np.array(
            [" ".join(rng.choice(WORDS, int(k))) for k in answer_lengths(n, seed)], dtype=object
        ),
    }
    for key in ("video_embeds", "frame_mask", "audio_embeds", "clip_mask"):
        out[key] = np.stack([feats[key][i % 4] for i in range(n)])
    return out


def per_sample_losses(task, module, cols: dict, batches: list[list[int]]) -> dict[str, float]:
    import torch

    from affect_model.train.batching import per_sample_loss, take_rows

    out: dict[str, float] = {}
    module.eval()
    for index in batches:
        batch = task.collate(module, take_rows(cols, index))
        names, labels = batch.pop("names"), batch.pop("labels")
        with torch.no_grad():
            out.update(zip(names, per_sample_loss(module(**batch).logits, labels).double().tolist()))
    module.train()
    return out


class Trainer:
    """One batching's model + engine, taking its epoch's batches one at a time (timed)."""

    def __init__(self, task, model_cfg, cols: dict, batches: list[list[int]], batch_size: int) -> None:
        import torch

        from affect_model.train.config import TrainConfig
        from affect_model.train.engine import make_engine

        torch.manual_seed(0)
        self.task, self.cols, self.batches = task, cols, batches
        self.module = task.build()
        cfg = TrainConfig(strategy="ddp", precision="fp32", batch_size=batch_size, torch_adam=True)
        self.engine = make_engine(
            self.module, cfg, total_steps=1000, world_size=1, rank=0, device=torch.device("cpu")
        )
        self.module.train()
        self.seconds, self.pads, self.tokens = 0.0, [], 0

    def step(self, i: int) -> None:
        from affect_model.train.batching import padding_stats, take_rows

        t0 = time.process_time()
        batch = self.task.collate(self.module, take_rows(self.cols, self.batches[i]))
        batch.pop("names")
        self.engine.micro_step(self.task.loss, batch)
        self.engine.step()
        self.seconds += time.process_time() - t0
        self.pads.append(padding_stats(batch)["pad_frac"])
        self.tokens += int(batch["attention_mask"].numel())


def run(root: Path, n: int = 96, batch_size: int = 8, bucket: int = 50, seed: int = 0) -> dict:
    from train_step import _init_dist, tiny_model_cfg

    from affect_model.train.batching import length_grouped_batches, naive_batches
    from affect_model.train.task import AffectGPTTask

    model_cfg = tiny_model_cfg(root).replace(max_answer_tokens=512)
    _init_dist("cpu")
    task = AffectGPTTask(model_cfg, cached=True)
    cols = columns(model_cfg, n, seed)
    probe = task.build()
    lengths = task.lengths(probe, cols)
    plans = {
        "naive": naive_batches(n, batch_size, drop_last=True),
        "grouped": length_grouped_batches(lengths, batch_size, bucket, (seed, 0), drop_last=True),
    }
    losses = {k: per_sample_losses(task, probe, cols, b) for k, b in plans.items()}
    trainers = {k: Trainer(task, model_cfg, cols, b, batch_size) for k, b in plans.items()}
    for i in range(len(plans["naive"])):
        for trainer in trainers.values():  # in turn: both see the same background load
            trainer.step(i)
    return summary(trainers, losses, lengths, n, batch_size, bucket)


def summary(trainers: dict, losses: dict, lengths: list[int], n: int, batch_size: int, bucket: int) -> dict:
    out: dict = {
        "model": "tiny, cached features",
        "device": "cpu",
        "clock": "process CPU time, batchings interleaved step by step",
        "samples": n,
        "batch_size": batch_size,
        "length_bucket_size": bucket,
        "text_tokens": {
            "min": int(min(lengths)),
            "median": int(np.median(lengths)),
            "max": int(max(lengths)),
        },
    }
    for name, t in trainers.items():
        out[name] = {
            "samples_per_s": round(len(t.batches) * batch_size / t.seconds, 2),
            "epoch_cpu_s": round(t.seconds, 2),
            "pad_frac": round(float(np.mean(t.pads)), 4),
            "padded_tokens": t.tokens,
        }
    out["samples_per_s_ratio"] = round(out["grouped"]["samples_per_s"] / out["naive"]["samples_per_s"], 3)
    a, b = losses["naive"], losses["grouped"]
    diff = abs(sum(a.values()) - sum(b.values()))
    out["loss_check"] = {
        "samples": len(a),
        "same_samples": sorted(a) == sorted(b),
        "sum_naive": round(sum(a.values()), 6),
        "sum_grouped": round(sum(b.values()), 6),
        "abs_diff": diff,
        "max_per_sample_diff": max(abs(a[k] - b[k]) for k in a),
        "ok": sorted(a) == sorted(b) and diff < 1e-5,
    }
    out["targets"] = {"samples_per_s_ratio": 1.3, "loss_sum_abs_diff": 1e-5}
    return out


if __name__ == "__main__":
    import json
    import sys
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    print(json.dumps(run(Path(tempfile.mkdtemp(prefix="emer-batching-"))), indent=1))
