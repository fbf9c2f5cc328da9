"""Per-sample training FLOPs per tower (audio, video, Q-Formers, LLM) for every preset in configs/.

Counts FLOPs analytically from each tower's transformers config (layers, widths, sequence lengths:
``affect_model.model.flops``, whose formulas the unit tests check against ``FlopCounterMode`` on tiny
instances); real checkpoints' configs come from a built-in table, so nothing is downloaded. Frozen
encoders run forward only, the frozen LLM forward + backward to its inputs (2x forward), the trained
Q-Formers (or the official layout's attention heads) forward + backward (3x forward). A preset in the
official layout (``model.layout affectgpt``) is also reported beside the Q-Former layout on the same
towers (tokens into the LLM and training TFLOPs per sample). For the audio tower it also prints the
alternatives (Whisper-large-v3 padded to 30 s per clip, as before #15; Whisper on the real clip length;
HuBERT-large) and checks per preset that no encoder costs more than the LLM's training step.

    .venv/bin/python benchmarks/train_flops.py [--answer-words 150] [--subtitle-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ALTERNATIVES = {
    "whisper-large-v3 padded to 30 s per clip (before)": ("openai/whisper-large-v3", "padded"),
    "whisper-large-v3 on the real clip length": ("openai/whisper-large-v3", "clip"),
    "hubert-large on the 2-s clips": ("facebook/hubert-large-ll60k", "clip"),
}


def presets() -> dict[str, object]:
    """``ModelConfig`` of every preset in configs/ with a ``model`` section (defaults filled in)."""
    from affect_model.model.config import ModelConfig
    from core.config import read_yaml

    out = {}
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        section = read_yaml(path).get("model")
        if section:
            out[path.stem] = ModelConfig.from_dict(section, source=str(path))
    return out


def tflop(values: dict) -> dict:
    return {k: round(v / 1e12, 4) for k, v in values.items()}


def preset_report(cfg, answer_words: int, subtitle_tokens: int) -> dict:
    from affect_model.model import flops

    cost = flops.sample_flops(cfg, answer_words, subtitle_tokens)
    train = cost["train"]
    audio = {
        name: round(flops.audio_tower(cfg, model, window)["flops"] / 1e12, 4)
        for name, (model, window) in ALTERNATIVES.items()
    }
    worst = max(("audio", "video"), key=lambda k: train[k])
    return {
        "models": {"video": cfg.vision_model, "audio": cfg.audio_model, "llm": cfg.llm_model},
        "audio_window": cfg.audio_window,
        "llm_tokens": cost["llm_tokens"],
        "forward_tflop": tflop(cost["forward"]),
        "train_tflop": tflop(train),
        "audio_tflop_alternatives": audio,
        "max_encoder_over_llm_train": round(train[worst] / train["llm"], 4),
        "no_encoder_costs_more_than_llm": train[worst] <= train["llm"],
    }


def layout_comparison(cfg, answer_words: int, subtitle_tokens: int) -> dict:
    """The official layout beside the Q-Former layout on the same towers (v1's Q-Former sizes: 32 video
    / 8 audio queries, 2 layers, 16 fusion queries) and our chat prompt: tokens and training TFLOPs."""
    from affect_model.model import flops

    qformer = cfg.replace(layout="qformer", chat_format="auto", target="description", fusion="qformer")
    out = {}
    for name, c in (("affectgpt", cfg), ("qformer", qformer)):
        cost = flops.sample_flops(c, answer_words, subtitle_tokens)
        out[name] = {
            "llm_tokens": cost["llm_tokens"],
            "slot_tokens": sum(c.slot_lengths().values()),
            "glue_train_tflop": round(cost["train"]["qformers"] / 1e12, 6),
            "train_tflop_total": round(sum(cost["train"].values()) / 1e12, 4),
        }
    return out


def report(answer_words: int, subtitle_tokens: int) -> dict:
    out, skipped = {}, {}
    for name, cfg in presets().items():
        try:
            out[name] = preset_report(cfg, answer_words, subtitle_tokens)
            if cfg.layout == "affectgpt":
                out[name]["layouts"] = layout_comparison(cfg, answer_words, subtitle_tokens)
        except (OSError, ValueError) as err:  # a preset on local folders that are not there
            skipped[name] = f"{type(err).__name__}: {str(err)[:160]}"
    title = "AffectGPT per-sample FLOPs per tower (analytic)"
    return {"benchmark": title, "presets": out, "skipped": skipped}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--answer-words", type=int, default=150, help="words per EMER description (answer)")
    ap.add_argument("--subtitle-tokens", type=int, default=64, help="subtitle tokens per prompt")
    args = ap.parse_args()
    result = report(args.answer_words, args.subtitle_tokens)
    print(json.dumps(result, indent=1))
    failed = [n for n, r in result["presets"].items() if not r["no_encoder_costs_more_than_llm"]]
    print(f"ratio check (no encoder costs more than the LLM): {'FAIL ' + str(failed) if failed else 'ok'}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
