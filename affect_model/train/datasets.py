"""Ray Data inputs of training, evaluation and inference: EMER-Coarse, EMER-Fine train/test, cached features.

Stage 1 streams the EMER-Coarse Parquet (``train.coarse_uri``) with ``ray.data.read_parquet``, or with
``train.materialize`` (small sets) reads it once with Arrow and hands it to Ray Data in memory (no read
tasks: on 2 cores Ray Data's read of the demo's 14 rows took 11 s before training began). EMER-Fine
is small (332 clips): its rows are selected by name from the media table (``train.fine_media_uri``,
EMER-Coarse layout; default: the Coarse table) with Arrow on the driver, given ``description_en`` from
the EMER-Fine CSV (``train.fine_uri``) and handed to Ray Data in memory. With
``train.use_cached_features`` the rows come from ``train.features_uri`` (written by ``emer features``),
whose encoder outputs replace the raw frames and audio; rows whose media failed there are left out.
"""

from __future__ import annotations

import logging

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from affect_model.train.config import TrainConfig
from core import storage
from core.schema import DESCRIPTION_EN

log = logging.getLogger(__name__)


def _check_exists(uri: str, key: str) -> None:
    if not uri:
        raise ValueError(f"{key} = '': must name a Parquet file or folder")
    if not storage.exists(uri):
        raise FileNotFoundError(
            f"{key} = {uri!r}: no such file or folder (write it with `emer annotate` "
            "or `emer features` first, or fix the path)"
        )


def read_parquet(uri: str, key: str):
    """A lazy, streaming Ray Dataset over a Parquet file or folder (local or s3://)."""
    import ray

    _check_exists(uri, key)
    fs, path = storage.filesystem(uri)
    return ray.data.read_parquet(path, filesystem=fs)


def _ok_mask(table: pa.Table) -> pa.Array | None:
    if "error" not in table.column_names:
        return None
    return pc.equal(pc.fill_null(table.column("error"), ""), "")


def count_rows(uri: str, key: str) -> int:
    """Rows of a Parquet file / folder, without the failed ones of a feature cache (Arrow, no Ray)."""
    _check_exists(uri, key)
    fs, path = storage.filesystem(uri)
    dataset = pq.ParquetDataset(path, filesystem=fs)
    if "error" in dataset.schema.names:
        return int(pc.sum(_ok_mask(dataset.read(columns=["error"]))).as_py() or 0)
    return sum(f.count_rows() for f in dataset.fragments)


def fine_split(cfg: TrainConfig, split: str) -> dict[str, str]:
    """``{name: description}`` of the EMER-Fine ``split`` (train / test / all)."""
    from affect_model.train.data import read_fine_csv, split_fine  # heavy: torch, imported on use

    if not cfg.fine_uri:
        raise ValueError(
            "train.fine_uri = '': must name the EMER-Fine CSV (name, english) for stage 2 and for evaluation"
        )
    descriptions = read_fine_csv(cfg.fine_uri)
    train, test = split_fine(descriptions, seed=cfg.fine_split_seed)
    keep = {"train": train, "test": test, "all": sorted(descriptions)}[split]
    return {n: descriptions[n] for n in keep}


def media_source(cfg: TrainConfig, fine: bool) -> tuple[str, str]:
    """(URI, config key) of the table training reads: cached features, EMER-Fine media or EMER-Coarse."""
    if cfg.use_cached_features:
        return cfg.features_uri, "train.features_uri"
    if fine and cfg.fine_media_uri:
        return cfg.fine_media_uri, "train.fine_media_uri"
    return cfg.coarse_uri, "train.coarse_uri"


def select_rows(uri: str, key: str, names: dict[str, str] | list[str]) -> pa.Table:
    """The rows of ``names`` (sorted by name) from a media / feature table; with a ``{name: text}`` dict
    their ``description_en`` is replaced by the text. Missing names are an error naming them."""
    _check_exists(uri, key)
    fs, path = storage.filesystem(uri)
    wanted = sorted(names)
    table = pq.read_table(path, filesystem=fs, filters=pc.field("name").isin(wanted))
    ok = _ok_mask(table)
    if ok is not None:
        table = table.filter(ok)
    lost = sorted(set(wanted) - set(table.column("name").to_pylist()))
    if lost:
        raise ValueError(
            f"{key} = {uri!r}: no usable media for {len(lost)} of {len(wanted)} requested "
            f"sample(s), e.g. {lost[:5]}; decode those clips into this table (or run "
            "`emer features` on it)"
        )
    table = table.take(pc.sort_indices(table, [("name", "ascending")]))
    if isinstance(names, dict):
        texts = pa.array([names[n] for n in table.column("name").to_pylist()], pa.string())
        if DESCRIPTION_EN in table.column_names:
            table = table.drop_columns([DESCRIPTION_EN])
        table = table.append_column(DESCRIPTION_EN, texts)
    return table


def fine_dataset(cfg: TrainConfig, split: str):
    """(Ray Dataset, rows) of the EMER-Fine ``split`` with media (or features) and reference texts."""
    import ray

    uri, key = media_source(cfg, fine=True)
    table = select_rows(uri, key, fine_split(cfg, split))
    return ray.data.from_arrow(table), table.num_rows


def read_all(uri: str, key: str) -> pa.Table:
    """A whole Parquet file / folder as one Arrow table (files in path order, as ``read_parquet``),
    without the failed rows of a feature cache."""
    _check_exists(uri, key)
    fs, path = storage.filesystem(uri)
    table = pq.ParquetDataset(path, filesystem=fs).read()
    ok = _ok_mask(table)
    return table if ok is None else table.filter(ok)


def train_dataset(cfg: TrainConfig):
    """(Ray Dataset, rows) of the stage's training data."""
    import ray

    if cfg.stage == 2:
        return fine_dataset(cfg, "train")
    uri, key = media_source(cfg, fine=False)
    if cfg.materialize:  # a small set: one Arrow read here, in Ray's object store from then on
        table = read_all(uri, key)
        return ray.data.from_arrow(table), table.num_rows
    ds = read_parquet(uri, key)
    if cfg.use_cached_features:

        def keep(table: pa.Table) -> pa.Table:
            ok = _ok_mask(table)
            return table if ok is None else table.filter(ok)

        ds = ds.map_batches(keep, batch_format="pyarrow", batch_size=None)
    return ds, count_rows(uri, key)


def eval_dataset(cfg: TrainConfig):
    """The EMER-Fine test rows for per-epoch evaluation (at most ``train.eval_limit``)."""
    ds, rows = fine_dataset(cfg, "test")
    if cfg.eval_limit and rows > cfg.eval_limit:
        ds, rows = ds.limit(cfg.eval_limit), cfg.eval_limit
    return ds, rows
