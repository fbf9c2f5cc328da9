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
