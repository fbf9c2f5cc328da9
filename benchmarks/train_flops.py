"""How much of a real-size AffectGPT training step the feature cache can remove: a FLOP count.

Builds the real-size architecture of ``train_step.py --real`` (CLIP ViT-L/14, HuBERT-large, a
LLaMA-7B-class LLM, the paper's Q-Formers) on the ``meta`` device through the same model code (no
weights, no memory, a few seconds on a CPU), counts each part's parameters and prints one JSON object
with the training FLOPs per sample by part and the bound they put on a cached-feature step:

- frozen encoders: forward only, 2 * params * tokens (the part the cache removes);
- frozen LLM: forward + backward to its inputs (the Q-Formers' gradient flows through it; no weight
  gradients), 4 * params * tokens;
- Q-Formers + projections (trained): 6 * params * (queries + encoder tokens), an upper bound.

Attention's quadratic terms and HuBERT's convolutional front end are left out (both small at these
lengths); decoding the stored frames and audio, also removed by the cache, is CPU work not counted
here (``train_step.py`` measures it). So ``cached_vs_live_compute_bound`` is the most the cache can speed
up the GPU compute of a step.

    .venv/bin/python benchmarks/train_flops.py [--answer-words 150] [--subtitle-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
TEMPLATE_TOKENS = 40  # system prompt + instruction around the slots (LLaMA tokenizer, about)
TOKENS_PER_WORD = 1.3


def part_params(root: Path) -> tuple[dict[str, int], object]:
    """Parameters of each top-level part of the real-size model, built on the meta device."""
    import torch
    import train_step

    from affect_model.train.task import AffectGPTTask

    train_step.random_weights()
    cfg = train_step.real_model_cfg(root)
    with torch.device("meta"):
        model = AffectGPTTask(cfg, cached=False).build(False)
    return {name: sum(p.numel() for p in mod.parameters()) for name, mod in model.named_children()}, cfg


def estimate(answer_words: int, subtitle_tokens: int) -> dict:
    from transformers import AutoConfig

    with tempfile.TemporaryDirectory() as tmp:
        params, cfg = part_params(Path(tmp))
        vision = AutoConfig.from_pretrained(cfg.vision_model)
    vision_tokens = cfg.frames * ((vision.image_size // vision.patch_size) ** 2 + 1)
    audio_tokens = int(cfg.audio_clips * cfg.clip_seconds * 50)  # HuBERT: one frame per 20 ms
    queries = cfg.video_queries + cfg.audio_queries
    llm_tokens = queries + TEMPLATE_TOKENS + subtitle_tokens + round(answer_words * TOKENS_PER_WORD)
    trained = sum(v for k, v in params.items() if k not in ("vision", "audio", "llm"))
    tflop = {
        "vision_forward": 2 * params["vision"] * vision_tokens / 1e12,
        "audio_forward": 2 * params["audio"] * audio_tokens / 1e12,
        "llm_forward_backward": 4 * params["llm"] * llm_tokens / 1e12,
        "qformers_forward_backward": 6 * trained * (queries + vision_tokens + audio_tokens) / 1e12,
    }
    live = sum(tflop.values())
    cached = live - tflop["vision_forward"] - tflop["audio_forward"]
    return {
        "benchmark": "real-size AffectGPT training FLOPs per sample (estimate, meta device)",
        "params": params,
        "tokens_per_sample": {"vision": vision_tokens, "audio": audio_tokens, "llm": llm_tokens},
        "tflop_per_sample": {k: round(v, 3) for k, v in tflop.items()},
        "live_tflop_per_sample": round(live, 3),
        "cached_tflop_per_sample": round(cached, 3),
        "encoder_share_of_live": round(1 - cached / live, 3),
        "cached_vs_live_compute_bound": round(live / cached, 3),
        "target_cached_epoch_speedup": 5.0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--answer-words", type=int, default=150, help="words per EMER description (answer)")
    ap.add_argument("--subtitle-tokens", type=int, default=64, help="subtitle tokens per prompt")
    args = ap.parse_args()
    print(json.dumps(estimate(args.answer_words, args.subtitle_tokens), indent=1))


if __name__ == "__main__":
    main()
