"""The measures of ``benchmarks/gpu_train.py`` on one built ``AffectGPT``: the largest micro-batch
(bounded search, out-of-memory caught and freed), timed plain-AMP training steps with MFU, live
encoders vs cached features, and generation tokens/s; plus the chips' bf16 peaks and DeepSpeed's
status. CUDA paths synchronise around every timing and reset the peak-memory counter per measure.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable

import gpu_models as models
import torch

from affect_model.model import flops

# Dense bf16 tensor-core TFLOPS (no sparsity) from NVIDIA's datasheets; the first key found in
# torch.cuda.get_device_name(), lower-cased, wins (so "h100 pcie" before "h100", "l40s" before "l4").
PEAKS = (
    ("h100 pcie", 756.0),
    ("h100 nvl", 835.0),
    ("gh200", 989.0),
    ("h200", 989.0),
    ("h100", 989.0),
    ("b200", 2250.0),
    ("a100", 312.0),
    ("l40s", 362.0),
    ("l4", 121.0),
    ("a10g", 125.0),
)
PAPER_BATCH = 3  # AffectGPT paper: batch 3 on one 80 GB A100
DEEPSPEED_CARRY = (
    "to run ZeRO-2/3 here, carry deepspeed as a pure-Python wheel (pip wheel deepspeed --no-deps with "
    "DS_BUILD_OPS=0) plus hjson, py-cpuinfo, msgpack, ninja, nvidia-ml-py, einops (a few MB, under the "
    "64 MiB limit) and use torch's AdamW (no nvcc for fused ops); benchmarks/train_step.py runs ZeRO-2 "
    "through affect_model.train.engine where Ray and DeepSpeed are installed"
)


def chip_peak(name: str) -> tuple[float | None, str]:
    """(dense bf16 peak TFLOPS, where it came from) for a CUDA device name; None when unknown."""
    low = name.lower()
    for key, tflops in PEAKS:
        if key in low:
            return tflops, f"NVIDIA datasheet, dense bf16 (matched {key!r})"
    return None, f"unknown chip {name!r} (not in gpu_measure.PEAKS): MFU not computed"


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def deepspeed_status(device: torch.device) -> dict:
    """Whether the ZeRO comparison ran (it runs only where ``import deepspeed`` works, on CUDA)."""
    if device.type != "cuda":
        return {"ran": False, "reason": "no CUDA device (dry run); " + DEEPSPEED_CARRY}
    try:
        import deepspeed
    except Exception as err:  # noqa: BLE001 - ImportError, or a broken install's own error
        return {"ran": False, "reason": f"import deepspeed: {type(err).__name__}: {err}; {DEEPSPEED_CARRY}"}
    return {
        "ran": False,
        "reason": f"deepspeed {deepspeed.__version__} imports, but this script keeps to plain AMP; "
        + DEEPSPEED_CARRY,
    }


def largest_batch(
    fits: Callable[[int], dict | None], start: int, cap: int, deadline: float, bisect: bool = True
) -> dict:
    """Largest batch ``b <= cap`` with ``fits(b)`` not None (None: out of memory): double from
    ``start``, then bisect between the last fit and the first miss; stops early at ``deadline``."""
    trials: list[dict] = []

    def trial(b: int) -> dict | None:
        t0 = time.monotonic()
        res = fits(b)
        row = {"batch": b, "fits": res is not None, "s": round(time.monotonic() - t0, 2)}
        trials.append({**row, "peak_mem_gb": (res or {}).get("peak_mem_gb")})
        return res

    good, bad, best, stopped = 0, None, None, "cap reached (--batch-cap)"
    b = max(1, min(start, cap))
    while True:
        res = trial(b)
        if res is None:
            bad, stopped = b, "first out-of-memory found" + ("; bisected" if bisect else "")
            break
        good, best = b, res
        if b >= cap or time.monotonic() >= deadline:
            stopped = stopped if b >= cap else "time budget (--search-s)"
            break
        b = min(2 * b, cap)
    while bisect and bad is not None and bad - good > 1:
        if time.monotonic() >= deadline:
            stopped = "time budget (--search-s) during bisection"
            break
        mid = (good + bad) // 2
        res = trial(mid)
        if res is None:
            bad = mid
        else:
            good, best = mid, res
    return {"batch": good, "first_oom": bad, "stopped": stopped, "trials": trials, "best": best}


class FlopModel:
    """Model FLOPs of one training step (see ``gpu_train.MFU_CONVENTION``)."""

    def __init__(self, cfg, lora_params: int) -> None:
        train = flops.tower_flops(cfg, 1)["train"]
        self.encoders = train["video"] + train["audio"]
        self.qformers = train["qformers"]
        self.llm = flops.model_config(cfg.llm_model)
        self.lora = lora_params

    def step(self, rows: list[int], live: bool) -> float:
        """``rows``: each row's non-padding LLM positions."""
        per_row = self.qformers + (self.encoders if live else 0)
        llm = sum(2 * flops.causal_llm(self.llm, n) + 6 * self.lora * n for n in rows)
        return float(llm + per_row * len(rows))


class Bench:
    """Plain-AMP training (AdamW, grad clip) and generation of one model on one device."""

    def __init__(self, model, device: torch.device, counts: dict, peak_tflops: float | None) -> None:
        self.model, self.device, self.peak = model, device, peak_tflops
        self.cuda = device.type == "cuda"
        self.batches = models.Batches(model, device)
        self.params = model.trainable_parameters()
        self.opt = torch.optim.AdamW(self.params, lr=1e-4)
        self.flops = FlopModel(model.config, counts["lora"])

    # ------------------------------------------------------------ device helpers

    def now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def reset_peak(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_gb(self) -> float | None:
        return round(torch.cuda.max_memory_allocated(self.device) / 2**30, 2) if self.cuda else None

    def encoders_on(self, on: bool) -> None:
        """Frozen encoders on the device for live measures, parked on the CPU for cached ones (so
        that a cached measure's memory is the cached-training model's)."""
        for enc in (self.model.vision, self.model.audio):
            if enc is not None:
                enc.to(self.device if on else torch.device("cpu"))

    def attempt(self, fn: Callable[[], dict]) -> dict | None:
        """``fn()``, or None when it ran out of device memory; everything it held is freed first."""
        try:
            return fn()
        except torch.cuda.OutOfMemoryError:
            pass  # leave the except block first: its traceback holds the failed step's tensors
        self.opt.zero_grad(set_to_none=True)
        free(self.device)
        return None

    def autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.cuda else contextlib.nullcontext()

    # ------------------------------------------------------------ training

    def step(self, batch: dict) -> torch.Tensor:
        self.model.train()
        with self.autocast():
            loss = self.model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return loss.detach()

    def search(self, start: int, cap: int, deadline: float, say) -> dict:
        """Largest micro-batch that trains one step on cached features, every row at the longest answer."""
        self.encoders_on(False)

        def fits(b: int) -> dict | None:
            def one() -> dict:
                batch = self.batches.make(b, cached=True, seed=b, worst=True)
                self.reset_peak()
                self.step(batch)
                self.now()
                return {"peak_mem_gb": self.peak_gb()}

            res = self.attempt(one)
            say(f"search: batch {b} {'trains' if res else 'is out of memory'} {res or ''}")
            return res

        out = largest_batch(fits, start, cap, deadline)
        out.pop("best")
        out["rows_at_llm_tokens"] = self.batches.prompt_tokens + self.batches.budget + 1
        out["vs_paper_batch"] = round(out["batch"] / PAPER_BATCH, 2)
        return out

    def train(self, b: int, steps: int, warmup: int, cached: bool = True) -> dict:
        """Timed steps at batch ``b`` with answer lengths drawn per step."""
        if b < 1:
            return {"skipped": "no batch fits"}
        self.encoders_on(not cached)
        times, rows, padded, loss = [], [], 0, None
        self.reset_peak()
        for i in range(warmup + steps):
            batch = self.batches.make(b, cached, seed=1000 + i)
            t0 = self.now()
            loss = self.step(batch)
            dt = self.now() - t0
            if i >= warmup:
                times.append(dt)
                rows.append(batch["attention_mask"].sum(1).tolist())
                padded += batch["attention_mask"].numel()
            del batch
        return self.summary(b, times, rows, padded, live=not cached, loss=float(loss))

    def summary(
        self, b: int, times: list[float], rows: list[list[int]], padded: int, live: bool, loss
    ) -> dict:
        step_s = sum(times) / len(times)
        model_flops = sum(self.flops.step(r, live) for r in rows) / len(rows)
        real = sum(sum(r) for r in rows)
        achieved = model_flops / step_s / 1e12
        return {
            "batch": b,
            "timed_steps": len(times),
            "step_s": round(step_s, 4),
            "step_s_min": round(min(times), 4),
            "samples_per_s": round(b / step_s, 3),
            "llm_tokens_per_s": round(real / len(rows) / step_s, 1),
            "padding_fraction": round(1 - real / padded, 4),
            "peak_mem_gb": self.peak_gb(),
            "model_tflop_per_step": float(f"{model_flops / 1e12:.4g}"),
            "achieved_tflops": float(f"{achieved:.4g}"),
            "mfu": round(achieved / self.peak, 4) if self.peak else None,
            "mfu_note": "of the chip's dense bf16 peak" if self.peak else "no bf16 peak for this device",
            "loss": round(loss, 4),
        }

    def live(self, b: int, steps: int, warmup: int, cached: dict, say) -> dict:
        """Timed steps with live encoders at the largest batch that fits them (halving from ``b``);
        the ratio is against cached features at that same batch."""
        while b >= 1:
            res = self.attempt(lambda b=b: self.train(b, steps, warmup, cached=False))
            if res is not None:
                break
            say(f"live: batch {b} is out of memory, halving")
            b //= 2
        if b < 1:
            return {"skipped": "no batch fits with live encoders"}
        if cached.get("batch") != b:
            cached = self.train(b, steps, warmup, cached=True)
        res["cached_samples_per_s_same_batch"] = cached.get("samples_per_s")
        res["cached_vs_live_samples_per_s"] = round(cached["samples_per_s"] / res["samples_per_s"], 3)
        return res

    # ------------------------------------------------------------ generation

    def generate(self, start: int, tokens: int, cap: int, deadline: float, say) -> dict:
        """Tokens/s of ``AffectGPT.generate`` on cached features, doubling the batch up to ``cap``."""
        self.encoders_on(False)
        self.model.eval()

        def fits(b: int) -> dict | None:
            def one() -> dict:
                batch = self.batches.make(b, cached=True, seed=b, answers=False)
                self.reset_peak()
                t0 = self.now()
                texts = self.model.generate(
                    **batch, max_new_tokens=tokens, generation_kwargs={"min_new_tokens": tokens}
                )
                dt = self.now() - t0
                assert len(texts) == b
                return {
                    "s": round(dt, 3),
                    "tokens_per_s": round(b * tokens / dt, 1),
                    "peak_mem_gb": self.peak_gb(),
                }

            res = self.attempt(one)
            say(f"generate: batch {b} {res or 'is out of memory'}")
            return res

        out = largest_batch(fits, max(1, start), cap, deadline, bisect=False)
        best = out.pop("best") or {}
        return {
            "batch": out["batch"],
            "new_tokens_per_row": tokens,
            "prompt_tokens": self.batches.prompt_tokens,
            "tokens_per_s": best.get("tokens_per_s"),
            "s": best.get("s"),
            "peak_mem_gb": best.get("peak_mem_gb"),
            "stopped": out["stopped"],
            "trials": out["trials"],
        }
