"""A local path for a clip, local or ``s3://``, refused unread when it is over ``max_clip_bytes``.

The size comes from a stat (local) or the object's HEAD (S3) before anything is read. An S3 clip is
streamed in chunks into a temporary file (``storage.copy_to``), never held whole in memory, and the
copy stops once it passes the cap even when the reported size said less. Every refusal is a
``MediaError`` whose message names the clip, its size, the cap and the key that raises it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator

from core import storage
from pipelines.media import MediaError

log = logging.getLogger(__name__)


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def too_big_reason(
    uri: str, size: int, cap: int, streamed: bool = False, key: str = "annotate.max_clip_bytes"
) -> str:
    what = f"passed the cap after {size} bytes while streaming" if streamed else f"is {size} bytes"
    return (
        f"clip {uri} {what} ({_mib(size)}), over {key} = {cap} ({_mib(cap)}): "
        f"raise {key} to decode it, or cut the clip"
    )


def clip_size(uri: str) -> int:
    """The clip's size in bytes, read from its metadata; ``MediaError`` when it has gone."""
    try:
        return storage.file_size(uri)
    except FileNotFoundError as err:
        raise MediaError(f"clip {uri} does not exist (moved or deleted since the listing)") from err


@contextlib.contextmanager
def local_clip(uri: str, max_bytes: int, key: str = "annotate.max_clip_bytes") -> Iterator[str]:
    """A local path for ``uri`` for the block: itself, or an S3 object streamed to a temporary file
    (``key``: the config key of the cap, named in the refusal)."""
    size = clip_size(uri)
    if size > max_bytes:
        raise MediaError(too_big_reason(uri, size, max_bytes, key=key))
    if not storage.is_s3(uri):
        yield uri
        return
    suffix = os.path.splitext(uri)[1]
    with tempfile.NamedTemporaryFile(suffix=suffix, prefix="emer-clip-") as tmp:
        try:
            storage.copy_to(uri, tmp, max_bytes)
        except storage.SizeLimitExceeded as err:
            raise MediaError(too_big_reason(uri, err.seen, max_bytes, True, key)) from err
        except FileNotFoundError as err:
            raise MediaError(f"clip {uri} does not exist (moved or deleted since the listing)") from err
        tmp.flush()
        log.debug("copied %s (%d bytes) to %s", uri, size, tmp.name)
        yield tmp.name
