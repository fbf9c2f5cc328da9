"""Data and configs for the training / feature-cache / inference tests (tiny AffectGPT, CPU).

Rows are EMER-Coarse-style (random JPEG frames, random 16 kHz audio, a subtitle, a description);
``fine_csv`` makes an EMER-Fine description table over the same names. ``RunsCode`` is a pickle
payload with a visible side effect, for the checkpoint-tampering tests.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

DESCRIPTIONS = [
    "He frowns and raises his voice, so he seems angry.",
    "Her voice trembles and she looks down; she feels sad.",
    "He smiles and speaks calmly; he is relieved.",
    "She opens her eyes wide and talks fast: she is surprised.",
]


def _jpeg(rng: np.random.Generator) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (36, 44, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def rows(n: int, seed: int = 0) -> list[dict]:
    out = []
    for i in range(n):
        rng = np.random.default_rng(seed * 1000 + i)
        out.append(
            {
                "name": f"clip_{i:04d}",
                "subtitle_en": f"Line number {i}.",
                "subtitle_zh": f"第{i}行。",
                "description_en": DESCRIPTIONS[i % len(DESCRIPTIONS)],
                "frames": [_jpeg(rng) for _ in range(2 + i % 3)],
                "audio": (rng.normal(size=16000 * (1 + i % 3)) * 0.1).astype(np.float32),
                "ov_labels": [["angry"], ["sad", "worried"], ["relieved"], ["surprised"]][i % 4],
            }
        )
    return out


def write_coarse(folder: Path, n: int) -> str:
    from affect_model.train.data import write_coarse as write

    uri = str(folder / "coarse.parquet")
    write(rows(n), uri)
    return uri


def write_fine_csv(folder: Path, n: int) -> str:
    import pyarrow as pa

    from core import storage

    uri = str(folder / "fine.csv")
    names = [f"clip_{i:04d}" for i in range(n)]
    texts = [f"Fine description {i}: " + DESCRIPTIONS[(i + 1) % len(DESCRIPTIONS)] for i in range(n)]
    storage.write_table(pa.table({"name": names, "english": texts}), uri)
    return uri


def run_config(model_cfg, **train):
    from affect_model.train.config import TrainConfig
    from emer.runconfig import RunConfig

    base = dict(
        batch_size=2,
        epochs=1,
        warmup_steps=2,
        lr=2e-3,
        precision="fp32",
        torch_adam=True,
        checkpoint_every=2,
        shuffle_buffer=0,
        max_failures=0,
        log_every=1,
    )
    base.update(train)
    return RunConfig(model=model_cfg, train=TrainConfig(**base))


def history(run_uri: str) -> dict:
    import json

    from core import storage

    return json.loads(storage.read_text(storage.join(run_uri, "history.json")))


class RunsCode:
    """Unpickling this creates the file ``path``: stands in for the code a crafted checkpoint runs."""

    def __init__(self, path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))
