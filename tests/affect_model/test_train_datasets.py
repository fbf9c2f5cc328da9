"""``train.materialize``: stage 1's rows read once with Arrow and handed to Ray Data in memory give the
same rows in the same order as the streaming ``read_parquet`` path; a feature cache's failed rows stay
out on both paths."""

from __future__ import annotations

import pyarrow as pa
import pytest

from affect_model.train.config import TrainConfig
from affect_model.train.datasets import train_dataset
from core import storage


@pytest.fixture
def ordered(ray_local):
    """Ray Data in order, as training reads its split (loop._trainer: preserve_order); a Dataset takes
    the context current when it is made."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    before, ctx.execution_options.preserve_order = ctx.execution_options.preserve_order, True
    yield
    ctx.execution_options.preserve_order = before


def _names(ds) -> list[str]:
    return [r["name"] for r in ds.select_columns(["name"]).take_all()]


def _write_parts(folder, parts: list[list[str]], error: dict[str, str] | None = None) -> str:
    for i, names in enumerate(parts):
        cols = {"name": names, "description_en": [f"text of {n}" for n in names]}
        if error is not None:
            cols["error"] = [error.get(n, "") for n in names]
        storage.write_table(pa.table(cols), str(folder / f"part-{i:02d}.parquet"))
    return str(folder)


def test_materialized_rows_are_the_streamed_rows_in_the_same_order(ordered, tmp_path):
    uri = _write_parts(tmp_path / "coarse", [["c", "a", "b"], ["z", "y"], ["m"]])
    streamed, n_streamed = train_dataset(TrainConfig(coarse_uri=uri))
    kept, n_kept = train_dataset(TrainConfig(coarse_uri=uri, materialize=True))
    assert n_streamed == n_kept == 6
    assert _names(kept) == _names(streamed) == ["c", "a", "b", "z", "y", "m"]


def test_a_feature_caches_failed_rows_stay_out_materialized_or_not(ordered, tmp_path):
    uri = _write_parts(tmp_path / "features", [["a", "b", "c"]], error={"b": "decode: broken file"})
    for materialize in (False, True):
        cfg = TrainConfig(features_uri=uri, use_cached_features=True, materialize=materialize)
        ds, rows = train_dataset(cfg)
        assert rows == 2 and _names(ds) == ["a", "c"]
