"""Helpers of the EMER-Fine tests: a small EMER-Coarse written the way `emer annotate` writes it
(``pipelines.sink.write_shard``: shards + markers), a tiny emotion wheel and crafted rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from core.schema import BASE_COLUMNS, LLM_COLUMNS, MEDIA_COLUMNS, encode_audio
from pipelines import sink

COLUMNS = BASE_COLUMNS + MEDIA_COLUMNS + LLM_COLUMNS
CLEAN_EN = "The person feels happy, because she smiles and her voice sounds bright today."
CLEAN_ZH = "这个人很开心，因为她在微笑，声音听起来很明亮。"


def clean_row(name: str = "s_clean", **extra) -> dict:
    """A row no rule flags (with the tiny wheel and a matching reference)."""
    row = {
        "name": name,
        "clip": f"/clips/{name}.mp4",
        "subtitle_en": "I passed the exam!",
        "subtitle_zh": "我通过考试了！",
        "subtitle_missing": False,
        "duration_s": 3.0,
        "fps": 10.0,
        "width": 8,
        "height": 8,
        "num_video_frames": 30,
        "audio_s": 3.0,
        "audio_clue": "The voice is loud and bright.",
        "video_clue": "She smiles widely.",
        "description_en": CLEAN_EN,
        "description_zh": CLEAN_ZH,
        "ov_labels": ["happy", "joyful"],
        "ov_raw": "['happy', 'joyful']",
    }
    return {**row, **extra}


def with_media(row: dict) -> dict:
    """``row`` with one tiny JPEG frame and 0.5 s of FLAC audio (what training reads)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 120, 40)).save(buf, format="JPEG")
    audio = encode_audio(np.zeros(8000, dtype=np.float32))
    return {**row, "frames": [buf.getvalue()], "audio": audio}


def write_coarse(data: Path, shards: list[list[dict]]) -> Path:
    """EMER-Coarse under ``data`` (samples/ shards with their markers), one shard per list."""
    for rows in shards:
        sink.write_shard(str(data), [{**r, "outcome": "ok"} for r in rows], COLUMNS)
    return data


def write_wheel(folder: Path) -> Path:
    """A one-wheel emotion wheel: happy/joyful/excited in 'joy' (level 1), sad, angry apart;
    'meh' is a known form that reaches no wheel word."""
    words = ["happy", "joyful", "excited", "sad", "angry"]
    level1 = {"happy": "joy", "joyful": "joy", "excited": "joy", "sad": "sadness", "angry": "anger"}
    mapping = {
        "format_mapping": {**{w: [w] for w in words}, "happier": ["happy"], "meh": ["meh"]},
        "raw_mapping": {w: [w] for w in words},
        "wheel_map_whole": {"wheel1": {"level1": level1, "level2": {w: w for w in words}}},
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "wheel_mapping.json").write_text(json.dumps(mapping))
    return folder


def write_reference(path: Path, labels: dict[str, list[str]]) -> Path:
    """A name,openset CSV like `emer samples`' reference-openset.csv."""
    lines = ["name,openset"] + [f'{n},"{labels[n]!r}"' for n in labels]
    path.write_text("\n".join(lines) + "\n")
    return path
