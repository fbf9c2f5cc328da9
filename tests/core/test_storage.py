"""core.storage round-trips bytes, text and tables through local disk and a real S3 endpoint."""

from __future__ import annotations

import pyarrow as pa
import pytest

from core import storage


def _roundtrip(base: str) -> None:
    blob = bytes(range(256)) * 10
    storage.write_bytes(storage.join(base, "a", "blob.bin"), blob)
    assert storage.read_bytes(storage.join(base, "a", "blob.bin")) == blob
    storage.write_text(storage.join(base, "a", "note.txt"), "héllo 你好")
    assert storage.read_text(storage.join(base, "a", "note.txt")) == "héllo 你好"
    table = pa.table({"name": ["s1", "s2"], "labels": [["happy"], []], "score": [0.5, 1.5]})
    storage.write_table(table, storage.join(base, "t", "part-0.parquet"))
    assert storage.read_table(storage.join(base, "t", "part-0.parquet")).equals(table)
    assert storage.read_table(storage.join(base, "t")).to_pylist() == table.to_pylist()
    storage.write_table(table.select(["name", "score"]), storage.join(base, "t.csv"))
    assert storage.read_table(storage.join(base, "t.csv")).column("name").to_pylist() == ["s1", "s2"]
    files = storage.list_files(base)
    assert sorted(f.rsplit("/", 1)[-1] for f in files) == ["blob.bin", "note.txt", "part-0.parquet", "t.csv"]
    assert storage.list_files(base, suffixes=[".parquet"]) == [storage.join(base, "t", "part-0.parquet")]
    assert storage.exists(storage.join(base, "a", "note.txt"))
    storage.delete(storage.join(base, "a", "note.txt"))
    assert not storage.exists(storage.join(base, "a", "note.txt"))
    with pytest.raises(FileNotFoundError, match="no such file"):
        storage.read_bytes(storage.join(base, "missing.bin"))


def test_local_roundtrip(tmp_path):
    _roundtrip(str(tmp_path / "store"))


def test_s3_roundtrip(s3):
    base = s3.uri("roundtrip")
    _roundtrip(base)
    # the objects really are in the bucket, seen through boto3 too
    keys = [o["Key"] for o in storage.boto3_client().list_objects_v2(Bucket=s3.bucket)["Contents"]]
    assert "roundtrip/t/part-0.parquet" in keys


def test_unknown_table_type(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("{}")
    with pytest.raises(ValueError, match=r"x.json: unknown table type; use a .csv or .parquet"):
        storage.read_table(str(path))


def test_listing_missing_prefix_is_empty(tmp_path):
    assert storage.list_files(str(tmp_path / "nothing")) == []


def test_only_output_listings_skip_temp_files(tmp_path):
    base = tmp_path / "store"
    base.mkdir()
    for name in ("x.tmp-1.mp4", "a.parquet", "a.parquet.tmp-0123abcd"):
        (base / name).write_bytes(b"x")
    names = lambda files: [f.rsplit("/", 1)[-1] for f in files]  # noqa: E731
    assert names(storage.list_files(str(base), suffixes=[".mp4"])) == ["x.tmp-1.mp4"]  # an input clip
    assert names(storage.list_files(str(base))) == ["a.parquet", "a.parquet.tmp-0123abcd", "x.tmp-1.mp4"]
    assert names(storage.list_files(str(base), skip_temp=True)) == ["a.parquet", "x.tmp-1.mp4"]


def test_stale_temp_files_are_removed_by_age(tmp_path):
    import os
    import time

    old, fresh, clip = (
        tmp_path / "p.parquet.tmp-0123abcd",
        tmp_path / "q.json.tmp-89abcdef",
        tmp_path / "x.tmp-1.mp4",
    )
    for path in (old, fresh, clip):
        path.write_bytes(b"x")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert storage.remove_stale_temp_files(str(tmp_path), older_than_s=3600) == 1
    assert not old.exists() and fresh.exists() and clip.exists()
    assert storage.remove_stale_temp_files(str(tmp_path)) == 1  # 0 s: every temp file
    assert not fresh.exists() and clip.exists()
