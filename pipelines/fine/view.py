"""Reading an EMER-Coarse dataset for EMER-Fine: the samples, the quality columns, the filtered view.

``DATA/samples/part-*.parquet`` is EMER-Coarse (``emer annotate``); ``DATA/quality/`` holds what
``emer filter`` recorded (``part-*.parquet`` with ``name, quality_pass, quality_flags,
quality_reasons, quality_*`` and ``summary.json`` naming the shards of the last run, written after
them). ``read_filtered`` is the view the exports and the review page read: the rows that pass,
joined with their quality columns. Nothing here writes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core import storage
from core.schema import (
    AUDIO_CLUE,
    DESCRIPTION_EN,
    DESCRIPTION_ZH,
    MEDIA_COLUMNS,
    NAME,
    OV_LABELS,
    QUALITY_PASS,
    VIDEO_CLUE,
)
from pipelines.sink import SAMPLES

QUALITY = "quality"
SUMMARY = "summary.json"
LLM_NEEDED = (DESCRIPTION_EN, DESCRIPTION_ZH, OV_LABELS, AUDIO_CLUE, VIDEO_CLUE)


def sample_files(data: str) -> list[str]:
    """The EMER-Coarse shards of ``data``; a clear error where there are none."""
    files = storage.list_files(storage.join(data, SAMPLES), suffixes=[".parquet"], skip_temp=True)
    if not files:
        raise FileNotFoundError(
            f"{data}: no EMER-Coarse there (no {SAMPLES}/part-*.parquet); run `emer annotate --input "
            f"CLIPS --subtitles CSV --output {data}` first, or point --data at an annotation output"
        )
    return files


def sample_columns(data: str) -> list[str]:
    """The columns of ``data``'s EMER-Coarse shards (from the first shard's schema)."""
    fs, path = storage.filesystem(sample_files(data)[0])
    return list(pq.read_schema(path, filesystem=fs).names)


def check_described(data: str) -> list[str]:
    """The sample columns, after checking the annotation made descriptions (not ``stop_after=check``)."""
    columns = sample_columns(data)
    missing = [c for c in LLM_NEEDED if c not in columns]
    if missing:
        raise ValueError(
            f"{data}: EMER-Coarse without {', '.join(missing)} (annotated with annotate.stop_after="
            "check?); annotate with the LLM stages into this folder first"
        )
    return columns


def read_samples(
    data: str, columns: Sequence[str] | None = None, names: Sequence[str] | None = None
) -> pa.Table:
    """EMER-Coarse rows of ``data`` (``columns``: a subset; ``names``: only those samples)."""
    fs, path = storage.filesystem(storage.join(data, SAMPLES))
    files = [storage.filesystem(f)[1] for f in sample_files(data)]
    filters = pc.field(NAME).isin(pa.array(sorted(names), pa.string())) if names is not None else None
    return pq.ParquetDataset(files, filesystem=fs, filters=filters).read(
        columns=list(columns) if columns else None
    )


def text_columns(data: str) -> list[str]:
    """Every sample column but the media (frames, audio): what a listing needs."""
    return [c for c in sample_columns(data) if c not in MEDIA_COLUMNS]


def quality_summary(data: str) -> dict[str, Any] | None:
    """``DATA/quality/summary.json`` of the last ``emer filter`` run, or None when it never ran."""
    uri = storage.join(data, QUALITY, SUMMARY)
    return json.loads(storage.read_text(uri)) if storage.exists(uri) else None


def read_quality(data: str) -> pa.Table:
    """The quality columns of every filtered row (the shards the last run's summary names)."""
    summary = quality_summary(data)
    if summary is None:
        raise FileNotFoundError(
            f"{storage.join(data, QUALITY)}: no quality columns yet; run `emer filter --data {data}` first"
        )
    uris = [storage.join(data, QUALITY, s) for s in summary["shards"]]
    if not uris:
        return pa.table({NAME: pa.array([], pa.string()), QUALITY_PASS: pa.array([], pa.bool_())})
    fs, _ = storage.filesystem(uris[0])
    return pq.ParquetDataset([storage.filesystem(u)[1] for u in uris], filesystem=fs).read()


def join_quality(samples: pa.Table, quality: pa.Table) -> pa.Table:
    """``samples`` with the quality columns of the same names appended (null where a name was not
    filtered, e.g. annotated after the last ``emer filter``)."""
    index = pc.index_in(samples[NAME], value_set=quality[NAME])
    out = samples
    for column in quality.column_names:
        if column != NAME and column not in samples.column_names:
            out = out.append_column(column, quality[column].take(index))
    return out


def read_filtered(data: str, columns: Sequence[str] | None = None, passing_only: bool = True) -> pa.Table:
    """The filtered view: EMER-Coarse rows joined with their quality columns, only those that pass
    (``passing_only=False``: every filtered row). ``columns``: sample columns to read (default all)."""
    quality = read_quality(data)
    if passing_only:
        quality = quality.filter(pc.fill_null(quality[QUALITY_PASS], False))
    wanted = list(dict.fromkeys([NAME, *columns])) if columns else None
    samples = read_samples(data, wanted, names=quality[NAME].to_pylist())
    samples = samples.take(pc.sort_indices(samples, [(NAME, "ascending")]))
    return join_quality(samples, quality)
