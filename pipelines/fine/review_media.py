"""Serve a clip through ``core.storage`` (a local file or an ``s3://`` object) with HTTP Range
support, so the HTML5 player can seek without downloading the whole file first.

One ``bytes=start-end`` (or ``bytes=-suffix``) range is answered with 206 and ``Content-Range``; a
range past the end with 416; no range (or several, which players never send) with the whole file.
A clip that no longer exists is a 404 naming its URI.
"""

from __future__ import annotations

import logging
import mimetypes
import re
from collections.abc import Iterator

import pyarrow.fs as pafs
from fastapi.responses import PlainTextResponse, Response, StreamingResponse

from core import storage

log = logging.getLogger(__name__)

CHUNK = 256 * 1024
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def clip_size(uri: str) -> int | None:
    """The clip's size in bytes, or None when it is gone (or is not a file)."""
    if not uri:
        return None
    fs, path = storage.filesystem(uri)
    info = fs.get_file_info(path)
    return info.size if info.type == pafs.FileType.File else None


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """``(start, end)`` (inclusive) of a single-range ``Range`` header; None to send the whole file;
    ``ValueError`` when the range lies outside the file."""
    m = _RANGE.fullmatch((header or "").strip())
    if not m or not any(m.groups()):
        return None
    first, last = m.groups()
    if not first:
        start, end = max(0, size - int(last)), size - 1
    else:
        start, end = int(first), min(int(last) if last else size - 1, size - 1)
    if start >= size or start > end:
        raise ValueError(f"range {header!r} outside a {size}-byte file")
    return start, end


def _chunks(uri: str, start: int, length: int) -> Iterator[bytes]:
    fs, path = storage.filesystem(uri)
    with fs.open_input_file(path) as f:
        f.seek(start)
        while length > 0:
            data = f.read(min(CHUNK, length))
            if not data:
                return
            length -= len(data)
            yield data


def clip_response(uri: str, range_header: str | None) -> Response:
    """The clip at ``uri`` (whole or one range) as a streamed response."""
    size = clip_size(uri)
    if size is None:
        return PlainTextResponse(f"clip no longer exists: {uri}", status_code=404)
    headers = {"Accept-Ranges": "bytes"}
    try:
        rng = parse_range(range_header or "", size)
    except ValueError:
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    start, end = rng or (0, size - 1)
    headers["Content-Length"] = str(end - start + 1)
    if rng:
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    media_type = mimetypes.guess_type(uri)[0] or "application/octet-stream"
    body = _chunks(uri, start, end - start + 1)
    return StreamingResponse(body, status_code=206 if rng else 200, media_type=media_type, headers=headers)
