"""Serve a clip through ``core.storage`` (a local file or an ``s3://`` object) with HTTP Range
support, so the HTML5 player can seek without downloading the whole file first.

One ``bytes=start-end`` (or ``bytes=-suffix``) range is answered with 206 and ``Content-Range``; a
range past the end with 416; no range (or several, which players never send) with the whole file.
A clip that no longer exists is a 404 naming its URI.

Only the dataset's clip folder is served (``clip_refusal``): the ``input`` that ``emer annotate``
recorded in ``DATA/manifest.json`` (or ``emer review --clips``), and only files with a video or
audio suffix (``MEDIA_SUFFIXES``). A local clip is resolved first (``..`` and symlinks followed), so
a row naming ``/etc/passwd``, ``CLIPS/../x.mp4`` or a symlink out of the folder is a 403.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import os
import re
from collections.abc import Iterator

import pyarrow.fs as pafs
from fastapi.responses import PlainTextResponse, Response, StreamingResponse

from core import storage

log = logging.getLogger(__name__)

CHUNK = 256 * 1024
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
MEDIA_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".flv")
MEDIA_SUFFIXES += (".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".opus")


def clip_folder(data: str) -> str | None:
    """The clip folder ``emer annotate`` read (``input`` in ``DATA/manifest.json``, absolute); None
    when the dataset has no readable manifest naming it (or a relative one not found from here)."""
    uri = storage.join(data, "manifest.json")
    try:
        folder = json.loads(storage.read_text(uri)).get("input") if storage.exists(uri) else None
    except (ValueError, AttributeError, OSError) as err:
        log.warning("review: %s: cannot read its input folder (%s); no clips are served", uri, err)
        return None
    if not isinstance(folder, str) or not folder:
        return None
    if not storage.is_s3(folder) and not os.path.isabs(folder) and not os.path.isdir(folder):
        log.warning("review: %s: input %r is relative and not found from here; no clips served", uri, folder)
        return None  # written by an older emer from another folder: --clips names it
    return folder


def clip_refusal(uri: str, folder: str | None) -> str | None:
    """Why the clip at ``uri`` may not be served (None: it may): it must lie inside ``folder`` (after
    resolving ``..`` and symlinks for a local path) and have a video or audio suffix."""
    if folder is None:
        return (
            "no clip folder known: the dataset's manifest.json names no input folder; "
            "give emer review --clips DIR (the folder emer annotate read)"
        )
    if not uri.lower().endswith(MEDIA_SUFFIXES):
        return f"{uri}: not a video or audio file ({', '.join(MEDIA_SUFFIXES)}); not served"
    outside = f"{uri}: outside the dataset's clip folder {folder}; not served"
    if storage.is_s3(uri) or storage.is_s3(folder):
        parts = uri.split("/")
        inside = storage.is_s3(uri) and uri.startswith(folder.rstrip("/") + "/")
        return None if inside and ".." not in parts and "." not in parts else outside
    real, root = os.path.realpath(uri), os.path.realpath(folder)
    if os.path.commonpath([real, root]) != root or not real.lower().endswith(MEDIA_SUFFIXES):
        return outside
    return None


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


def clip_response(uri: str, range_header: str | None, folder: str | None) -> Response:
    """The clip at ``uri`` (whole or one range) as a streamed response; 403 when ``clip_refusal``
    refuses it."""
    if not uri:
        return PlainTextResponse("this row names no clip", status_code=404)
    refused = clip_refusal(uri, folder)
    if refused:
        log.warning("review: clip refused: %s", refused)
        return PlainTextResponse(refused, status_code=403)
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
