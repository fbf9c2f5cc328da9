"""One place to read and write local paths and ``s3://bucket/prefix`` URIs.

Everything in emer that touches files goes through here: pyarrow filesystems for bytes, text and
tables (Parquet/CSV), boto3 for the S3 client. The S3 endpoint comes from ``StorageConfig``
(``configure``) or ``AWS_ENDPOINT_URL`` (MinIO, moto, any S3-compatible store); credentials only
ever come from the standard ``AWS_*`` environment / credential chain, never from config files.

A local write goes through a temp file ``<name>.tmp-<8 hex>`` beside its target (``is_temp``). Only
listings of emer's own output folders leave such names out (``list_files(..., skip_temp=True)``);
an input file that merely contains ``.tmp-`` is listed like any other. ``remove_stale_temp_files``
deletes the temp files a crashed writer left behind.

``copy_to`` streams a file or object into an open file in chunks (``COPY_CHUNK_BYTES``), never the
whole of it in memory, and stops with ``SizeLimitExceeded`` once more than ``max_bytes`` came (the
size an object reports is not trusted); ``file_size`` is the size from a stat / S3 HEAD.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import io
import logging
import os
import posixpath
import re
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from core import metrics
from core.config import Config, dump_yaml
from core.secrets import redact_url

log = logging.getLogger(__name__)

_TEMP = re.compile(r".+\.tmp-[0-9a-f]{8}")  # the names write_bytes gives its temp files
COPY_CHUNK_BYTES = 8 * 2**20  # copy_to reads this much per request (one ranged GET on S3)


class SizeLimitExceeded(ValueError):
    """``copy_to`` read more than its ``max_bytes`` from ``uri`` (``seen``: bytes read when it stopped)."""

    def __init__(self, uri: str, limit: int, seen: int) -> None:
        super().__init__(f"{uri}: more than {limit} bytes (stopped after {seen} bytes)")
        self.uri, self.limit, self.seen = uri, limit, seen

    def __reduce__(self):
        return type(self), (self.uri, self.limit, self.seen)


@dataclasses.dataclass(frozen=True)
class StorageConfig(Config):
    """Where S3 lives. Empty fields fall back to the ``AWS_*`` environment variables."""

    endpoint_url: str = ""
    region: str = ""
    retries: int = 5

    def problems(self) -> list[str]:
        out = []
        if self.endpoint_url and not self.endpoint_url.startswith(("http://", "https://")):
            out.append(
                f"storage.endpoint_url = {redact_url(self.endpoint_url)!r}: must start with http:// or https://"
            )
        if self.retries < 0:
            out.append(f"storage.retries = {self.retries}: must be >= 0")
        return out


_active = StorageConfig()


def configure(cfg: StorageConfig) -> None:
    """Make ``cfg`` the default for this process and export it for Ray workers started later."""
    global _active
    _active = cfg
    if cfg.endpoint_url:
        os.environ["AWS_ENDPOINT_URL"] = cfg.endpoint_url
    if cfg.region:
        os.environ.setdefault("AWS_DEFAULT_REGION", cfg.region)


def endpoint_url() -> str:
    return _active.endpoint_url or os.environ.get("AWS_ENDPOINT_URL", "")


def region() -> str:
    return (
        _active.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    )


def is_s3(uri: str) -> bool:
    return str(uri).startswith("s3://")


def join(base: str, *parts: str) -> str:
    if is_s3(base):
        return "s3://" + posixpath.join(base[5:].rstrip("/"), *parts)
    return str(Path(base, *parts))


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem for ``uri`` and the path to hand it (no scheme for S3)."""
    if is_s3(uri):
        return _s3fs(), uri[5:].rstrip("/")
    return pafs.LocalFileSystem(), str(Path(uri).expanduser().absolute())


def _s3fs() -> pafs.S3FileSystem:
    kwargs: dict = {
        "region": region(),
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=max(1, _active.retries)),
    }
    endpoint = endpoint_url()
    if endpoint:
        parsed = urlparse(endpoint)
        kwargs["endpoint_override"] = parsed.netloc or parsed.path
        kwargs["scheme"] = parsed.scheme or "https"
    return pafs.S3FileSystem(**kwargs)


def boto3_client(service: str = "s3"):
    """A boto3 client on the configured endpoint (credentials from the environment chain)."""
    import boto3
    from botocore.config import Config as BotoConfig

    retries = {"max_attempts": max(1, _active.retries), "mode": "adaptive"}
    kwargs: dict = {"region_name": region(), "config": BotoConfig(retries=retries)}
    if endpoint_url():
        kwargs["endpoint_url"] = endpoint_url()
    client = boto3.client(service, **kwargs)
    client.meta.events.register(f"needs-retry.{service}", _count_retry)
    return client


def _count_retry(attempts: int | None = None, response=None, **_) -> None:
    """botocore's needs-retry hook: count retried requests (pyarrow's retries have no hook)."""
    error = (response or (None, {}))[1].get("Error", {}) if isinstance(response, tuple) else {}
    if attempts and error.get("Code") in ("SlowDown", "Throttling", "RequestLimitExceeded", "503"):
        metrics.counter("emer_s3_retries").inc(1, {"op": "boto3"})


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def is_dir(uri: str) -> bool:
    fs, path = filesystem(uri)
    return fs.get_file_info(path).type == pafs.FileType.Directory


def makedirs(uri: str) -> None:
    if not is_s3(uri):
        Path(uri).mkdir(parents=True, exist_ok=True)


def read_bytes(uri: str) -> bytes:
    fs, path = filesystem(uri)
    try:
        with fs.open_input_stream(path) as f:
            return f.read()
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{uri}: no such file") from err


def file_size(uri: str) -> int:
    """Size in bytes of a local file or S3 object (a stat / HEAD; nothing is read)."""
    fs, path = filesystem(uri)
    info = fs.get_file_info(path)
    if info.type != pafs.FileType.File:
        raise FileNotFoundError(f"{uri}: no such file")
    return int(info.size)


def copy_to(uri: str, out: BinaryIO, max_bytes: int | None = None) -> int:
    """Stream ``uri`` into the open file ``out`` chunk by chunk; returns the bytes copied.

    Raises ``SizeLimitExceeded`` as soon as more than ``max_bytes`` arrived (whatever size the
    object claims), ``FileNotFoundError`` when it does not exist.
    """
    fs, path = filesystem(uri)
    seen = 0
    try:
        with fs.open_input_stream(path, compression=None) as f:
            while chunk := f.read(COPY_CHUNK_BYTES):
                seen += len(chunk)
                if max_bytes is not None and seen > max_bytes:
                    raise SizeLimitExceeded(uri, max_bytes, seen)
                out.write(chunk)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{uri}: no such file") from err
    return seen


def write_bytes(uri: str, data: bytes) -> None:
    """Write atomically: a local file appears complete or not at all (S3 PUTs already are)."""
    fs, path = filesystem(uri)
    if is_s3(uri):
        with fs.open_output_stream(path) as f:
            f.write(data)
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"  # is_temp() knows this name
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def link_or_copy(src: str, dst: str) -> None:
    """``dst`` gets ``src``'s content, atomically: a hard link where both are local on one file system
    (no bytes copied), else a copy (local, or through S3)."""
    if is_s3(src) or is_s3(dst):
        write_bytes(dst, read_bytes(src))
        return
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    tmp = f"{dst}.tmp-{uuid.uuid4().hex[:8]}"  # is_temp() knows this name
    try:
        os.link(src, tmp)
    except OSError:  # another file system, or links not allowed: copy
        with open(src, "rb") as f:
            data = f.read()
        with open(tmp, "wb") as f:
            f.write(data)
    os.replace(tmp, dst)


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def delete(uri: str) -> None:
    fs, path = filesystem(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.Directory:
        fs.delete_dir(path)
    elif info.type == pafs.FileType.File:
        fs.delete_file(path)


def is_temp(base_name: str) -> bool:
    """Whether ``base_name`` is one of ``write_bytes``'s temp files (``<name>.tmp-<8 hex>``)."""
    return bool(_TEMP.fullmatch(base_name))


def list_files(
    uri: str, suffixes: Iterable[str] | None = None, recursive: bool = True, skip_temp: bool = False
) -> list[str]:
    """Full URIs of the files under ``uri``, sorted; skips S3 "directory" markers.

    ``skip_temp`` also leaves out ``write_bytes``'s temp files: for folders emer writes itself (an
    input folder is listed whole, so a clip named ``x.tmp-1.mp4`` is not lost).
    """
    wanted = tuple(s.lower() for s in suffixes) if suffixes else None
    out = []
    for info in _file_infos(uri, recursive):
        if skip_temp and is_temp(info.base_name):
            continue
        if wanted and not info.base_name.lower().endswith(wanted):
            continue
        out.append("s3://" + info.path if is_s3(uri) else info.path)
    return sorted(out)


def _file_infos(uri: str, recursive: bool = True) -> list[pafs.FileInfo]:
    fs, path = filesystem(uri)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return []
    sel = pafs.FileSelector(path, recursive=recursive, allow_not_found=True)
    return [i for i in fs.get_file_info(sel) if i.type == pafs.FileType.File and not i.path.endswith("/")]


def remove_stale_temp_files(uri: str, older_than_s: float = 0.0) -> int:
    """Delete the temp files under ``uri`` last modified over ``older_than_s`` ago; returns how many.

    Call it only where no writer can be running (``older_than_s=0``) or with an age no live write
    reaches: a crashed writer's temp file is never renamed, and a folder read whole would read it.
    """
    cutoff = time.time() - older_than_s
    removed = 0
    for info in _file_infos(uri):
        if is_temp(info.base_name) and (info.mtime is None or info.mtime.timestamp() <= cutoff):
            log.info("removing %s: a temp file left by an interrupted write", info.path)
            delete("s3://" + info.path if is_s3(uri) else info.path)
            removed += 1
    return removed


def read_table(uri: str, columns: list[str] | None = None) -> pa.Table:
    """A Parquet file or folder, or a CSV file, as an Arrow table."""
    fs, path = filesystem(uri)
    lower = uri.lower()
    if lower.endswith(".csv"):
        data = read_bytes(uri)
        opts = pacsv.ConvertOptions(include_columns=columns, strings_can_be_null=False)
        return pacsv.read_csv(io.BytesIO(data), convert_options=opts)
    if lower.endswith(".parquet") or is_dir(uri):
        return pq.read_table(path, filesystem=fs, columns=columns)
    raise ValueError(f"{uri}: unknown table type; use a .csv or .parquet file (or a folder of .parquet)")


def write_table(table: pa.Table, uri: str) -> None:
    """Write a Parquet (or, by suffix, CSV) file atomically."""
    buf = io.BytesIO()
    if uri.lower().endswith(".csv"):
        pacsv.write_csv(table, buf)
    else:
        pq.write_table(table, buf)
    write_bytes(uri, buf.getvalue())


def save_resolved(cfg: Config, directory: str, filename: str = "config.yaml") -> str:
    """Write the resolved config as YAML beside an output (local or s3://); returns its URI."""
    uri = join(directory, filename)
    write_text(uri, dump_yaml(cfg))
    return uri


@contextlib.contextmanager
def file_lock(path: str):
    """An exclusive lock (``flock``) on the local file ``path`` for the block, across processes."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
