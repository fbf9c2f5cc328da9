"""Shared fixtures for the AffectGPT tests: tiny checkpoints (built once a session) and sample rows."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ANSWERS = [
    "The person frowns and speaks loudly, so they may feel angry.",
    "Her voice trembles and she looks down; she seems sad and worried.",
    "He smiles slightly and his tone is calm, so he feels relieved.",
    "She raises her eyebrows and speaks fast: she is surprised and excited.",
]


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models on a shared 2-core box: one intra-op thread avoids thread contention that made a
    6-token generate take seconds instead of tens of milliseconds. Restored after each test."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    """Folder with the tiny CLIP vision tower, Whisper encoder and Qwen2 LLM + tokenizer."""
    from affect_model.model.tiny import build_tiny_models

    root = tmp_path_factory.mktemp("affect_tiny")
    build_tiny_models(root)
    return root


@pytest.fixture(scope="session")
def tiny_cfg(tiny_root):
    from affect_model.model.config import debug_config

    return debug_config(tiny_root)


def jpeg(seed: int, size: tuple[int, int] = (40, 48)) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def build_rows(n: int, seed: int = 0) -> list[dict]:
    """n EMER-Coarse-style rows with random frames / audio of different lengths."""
    rows = []
    for i in range(n):
        rng = np.random.default_rng(seed + i)
        rows.append(
            {
                "name": f"sample_{seed + i:05d}",
                "subtitle_en": f"This is subtitle number {i}.",
                "subtitle_zh": f"这是第{i}条字幕。",
                "description_en": ANSWERS[i % len(ANSWERS)],
                "frames": [jpeg(seed * 100 + i * 10 + k) for k in range(3 + i % 4)],
                "audio": (rng.normal(size=16000 * (1 + i % 5)) * 0.1).astype(np.float32),
                "ov_labels": ["happy", "calm"][: 1 + i % 2],
            }
        )
    return rows


@pytest.fixture
def make_rows():
    """``make_rows(n, seed=0)``: n EMER-Coarse-style rows (a factory, so tests need no conftest import)."""
    return build_rows


@pytest.fixture
def rows():
    return build_rows(4)
