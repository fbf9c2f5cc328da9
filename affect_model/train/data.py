"""Training data for AffectGPT: EMER-Coarse Parquet, EMER-Fine CSV + split, samples -> padded batches.

EMER-Coarse rows (``COARSE_COLUMNS``): ``name``, ``subtitle_en``, ``subtitle_zh``, ``description_en``
(the target), ``frames`` (list of JPEG bytes), ``audio`` (FLAC bytes, 16 kHz mono), ``ov_labels``
(list of strings): the columns of ``core.schema``, as ``emer annotate`` writes them. EMER-Fine: a CSV of
``name, english`` descriptions whose media (same
layout as Coarse) come from a Parquet of its clips; ``split_fine`` gives the deterministic 266/66
train/test split of the 332 samples. ``SampleEncoder`` turns one row into tensors (prompt ids, slot
map, labels, encoder inputs or cached ``video_embeds``/``audio_embeds``); ``collate`` pads a list of them.
All file I/O goes through ``core.storage`` (local paths or s3://).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Mapping, Sequence

import pyarrow as pa
import torch

from affect_model.model.config import ModelConfig
from affect_model.model.media import MediaProcessor
from affect_model.model.prompt import IGNORE, SLOT_TEXT, PromptBuilder, ov_answer
from core import storage
from core.schema import (
    AUDIO,
    DESCRIPTION_EN,
    FRAMES,
    NAME,
    OV_LABELS,
    SUBTITLE_EN,
    SUBTITLE_ZH,
    coarse_schema,
    decode_audio,
    encode_audio,
    from_spreadsheet_safe,
)

log = logging.getLogger(__name__)

# What training reads of EMER-Coarse (the columns ``emer annotate`` writes; see core.schema).
COARSE_COLUMNS = (NAME, SUBTITLE_EN, SUBTITLE_ZH, DESCRIPTION_EN, FRAMES, AUDIO, OV_LABELS)
COARSE_SCHEMA = coarse_schema(COARSE_COLUMNS)
FINE_TEST_FRACTION = 66 / 332  # EMER-Fine: 266 train / 66 test of 332
__all__ = [
    "COARSE_COLUMNS",
    "COARSE_SCHEMA",
    "MediaProcessor",
    "SampleEncoder",
    "collate",
    "decode_audio",
    "load_fine",
    "read_coarse",
    "read_fine_csv",
    "split_fine",
    "write_coarse",
]


# ---------------------------------------------------------------- files


def read_coarse(
    uri: str,
    columns: Sequence[str] | None = None,
    required: Sequence[str] = ("name", DESCRIPTION_EN, "frames", "audio"),
) -> list[dict]:
    """Rows of an EMER-Coarse Parquet file or folder (local or s3://) as dicts; ``columns`` selects
    (and requires) columns, else all are read and ``required`` must be present."""
    table = storage.read_table(uri)
    want = list(columns) if columns is not None else list(required)
    missing = [c for c in want if c not in table.column_names]
    if missing:
        raise ValueError(
            f"{uri}: missing column(s) {', '.join(missing)} (has {', '.join(table.column_names)}); "
            "EMER-Coarse tables are written by the annotation pipeline (emer annotate)"
        )
    if columns is not None:
        table = table.select(list(columns))
    return table.to_pylist()


def write_coarse(rows: Iterable[Mapping], uri: str) -> int:
    """Write rows in the EMER-Coarse layout (missing optional columns become empty); returns the count."""
    data: dict[str, list] = {c: [] for c in COARSE_COLUMNS}
    for row in rows:
        for c in COARSE_COLUMNS:
            value = row.get(c)
            if c == AUDIO:
                value = encode_audio(decode_audio(value)) if value is not None else None
            elif c in (FRAMES, OV_LABELS):
                value = list(value or [])
            elif c != "name":
                value = value or ""
            data[c].append(value)
    table = pa.table(data, schema=COARSE_SCHEMA)
    storage.write_table(table, uri)
    return table.num_rows


def read_fine_csv(uri: str) -> dict[str, str]:
    """EMER-Fine descriptions: ``{name: english}`` from a CSV with columns ``name, english`` (a cell
    ``emer export fine`` escaped for spreadsheets comes back as written: ``from_spreadsheet_safe``)."""
    table = storage.read_table(uri)
    missing = [c for c in ("name", "english") if c not in table.column_names]
    if missing:
        raise ValueError(
            f"{uri}: missing column(s) {', '.join(missing)}; EMER-Fine CSVs have `name, english`"
        )
    names = [from_spreadsheet_safe(str(n)) for n in table.column("name").to_pylist()]
    texts = [from_spreadsheet_safe(str(t or "")) for t in table.column("english").to_pylist()]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{uri}: duplicate names {dupes[:5]}; each sample must appear once")
    return dict(zip(names, texts))


def split_fine(
    names: Iterable[str], seed: int = 0, test_count: int | None = None
) -> tuple[list[str], list[str]]:
    """Deterministic train/test split: sort the names, shuffle with ``seed``, the first ``test_count``
    (default: 66 of 332, proportionally for other sizes) are the test set. Both lists come back sorted;
    the result does not depend on the input order."""
    ordered = sorted(set(names))
    if test_count is None:
        test_count = int(round(len(ordered) * FINE_TEST_FRACTION))
    if not 0 <= test_count <= len(ordered):
        raise ValueError(f"test_count = {test_count}: must be between 0 and the {len(ordered)} samples")
    shuffled = list(ordered)
    random.Random(seed).shuffle(shuffled)
    test = set(shuffled[:test_count])
    return [n for n in ordered if n not in test], [n for n in ordered if n in test]


def load_fine(csv_uri: str, media_uri: str, split: str = "train", seed: int = 0) -> list[dict]:
    """EMER-Fine samples of ``split`` (train, test or all): media rows from ``media_uri`` (EMER-Coarse
    layout, one row per clip) with ``description_en`` set to the CSV's ``english`` description."""
    if split not in ("train", "test", "all"):
        raise ValueError(f"split = {split!r}: must be train, test or all")
    descriptions = read_fine_csv(csv_uri)
    train, test = split_fine(descriptions, seed=seed)
    keep = {"train": train, "test": test, "all": sorted(descriptions)}[split]
    media = {r["name"]: r for r in read_coarse(media_uri, required=("name",))}
    lost = [n for n in keep if n not in media]
    if lost:
        raise ValueError(
            f"{media_uri}: no media for {len(lost)} EMER-Fine sample(s), e.g. {lost[:5]}; "
            "decode the EMER-Fine clips into this table first"
        )
    return [{**media[n], DESCRIPTION_EN: descriptions[n]} for n in keep]


# ---------------------------------------------------------------- samples -> tensors


class SampleEncoder:
    """One row (dict) -> tensors for ``AffectGPT``. Rows holding cached ``video_embeds`` [T, N, D] /
    ``audio_embeds`` [C, M, D] (with ``frame_mask`` / ``clip_mask``) skip media preprocessing.

    ``model.target`` picks what a training row asks for: its description, its OV labels (the official
    answer ``The character's emotional state is a, b.``) or, ``hybrid``, either one per encoding
    (drawn from ``seed``, the row's name and how often this encoder has encoded it, so an epoch's draw
    differs from the last and a rerun repeats it; a row without OV labels asks for its description).
    Prompt-only rows (``with_answer=False``) ask ``question`` (default: description)."""

    def __init__(
        self,
        cfg: ModelConfig,
        tokenizer,
        media: MediaProcessor | None = None,
        target_column: str = DESCRIPTION_EN,
        seed: int = 0,
        question: str = "description",
    ) -> None:
        self.cfg = cfg
        self.prompt = PromptBuilder(cfg, tokenizer)
        self.media = media
        self.target_column = target_column
        self.seed = seed
        self.question = question
        self._draws: dict[str, int] = {}

    def _kind(self, row: Mapping, peek: bool = False) -> str:
        """``description`` or ``ovlabel``: what this encoding of ``row`` asks for."""
        if self.cfg.target != "hybrid":
            return self.cfg.target
        if not list(row.get(OV_LABELS) or []):
            return "description"
        name = str(row.get("name", "?"))
        n = self._draws.get(name, 0)
        if not peek:
            self._draws[name] = n + 1
        return random.Random(f"{self.seed}:{name}:{n}").choice(("description", "ovlabel"))

    def _texts(self, row: Mapping, with_answer: bool, peek: bool = False) -> tuple[str, str | None, str]:
        answer, kind = None, self.question
        name = str(row.get("name", "?"))
        if with_answer:
            kind = self._kind(row, peek)
            if kind == "ovlabel":
                labels = [str(x) for x in list(row.get(OV_LABELS) or []) if str(x).strip()]
                if not labels:
                    raise ValueError(f"sample {name}: no {OV_LABELS!r} for model.target = 'ovlabel'")
                answer = ov_answer(labels)
            else:
                answer = row.get(self.target_column)
                if not answer or not str(answer).strip():
                    raise ValueError(
                        f"sample {name}: empty target {self.target_column!r}; drop it or fill it in"
                    )
        subtitle = (row.get(f"subtitle_{self.cfg.subtitle_language}") or "") if self.cfg.use_subtitle else ""
        return subtitle, None if answer is None else str(answer), kind

    def text_length(self, row: Mapping, with_answer: bool = True) -> int:
        """Tokens of the row's ``input_ids`` (prompt, slots, answer), without touching its media; an
        unusable target counts 0 (the encoder reports it when the row is encoded)."""
        try:
            return len(self.prompt.encode(*self._texts(row, with_answer, peek=True))["input_ids"])
        except ValueError:
            return 0

    def __call__(self, row: Mapping, with_answer: bool = True) -> dict:
        name = str(row.get("name", "?"))
        subtitle, answer, kind = self._texts(row, with_answer)
        encoded = self.prompt.encode(subtitle, answer, kind)
        item: dict = {"name": name, **{k: torch.tensor(v) for k, v in encoded.items()}}
        if self.cfg.use_video:
            item.update(self._media(row, "video_embeds", "frame_mask", "frames", name))
        if self.cfg.use_audio:
            item.update(self._media(row, "audio_embeds", "clip_mask", "audio", name))
        return item

    def _media(self, row: Mapping, cached: str, mask_key: str, raw: str, name: str) -> dict:
        if row.get(cached) is not None:
            feats = torch.as_tensor(row[cached]).float()
            mask = row.get(mask_key)
            mask = (
                torch.ones(feats.shape[0], dtype=torch.bool) if mask is None else torch.as_tensor(mask).bool()
            )
            return {cached: feats, mask_key: mask}
        if self.media is None:
            raise ValueError(f"sample {name}: no cached {cached} and no MediaProcessor to decode {raw!r}")
        if raw == "frames":
            pixels, mask = self.media.video(list(row.get("frames") or []))
            return {"pixel_values": pixels, "frame_mask": mask}
        feats, mask = self.media.audio(row.get("audio"))
        return {"audio_features": feats, "clip_mask": mask}


def collate(items: Sequence[dict], pad_id: int, padding_side: str = "right") -> dict:
    """Pad ``input_ids`` / ``slot_ids`` / ``labels`` (-100 on padding), build ``attention_mask``,
    stack the media tensors; ``names`` stays a list (items' ``truncated`` flags are left out)."""
    if not items:
        raise ValueError("collate: empty batch")
    longest = max(len(it["input_ids"]) for it in items)
    fill = {"input_ids": pad_id, "slot_ids": SLOT_TEXT, "labels": IGNORE}
    batch: dict = {k: torch.full((len(items), longest), v, dtype=torch.long) for k, v in fill.items()}
    batch["attention_mask"] = torch.zeros(len(items), longest, dtype=torch.long)
    for i, it in enumerate(items):
        n = len(it["input_ids"])
        sl = slice(longest - n, longest) if padding_side == "left" else slice(0, n)
        for k in fill:
            batch[k][i, sl] = it[k]
        batch["attention_mask"][i, sl] = 1
    for key in items[0]:
        if key not in fill and key not in ("name", "truncated"):
            batch[key] = torch.stack([it[key] for it in items])
    batch["names"] = [it["name"] for it in items]
    return batch
