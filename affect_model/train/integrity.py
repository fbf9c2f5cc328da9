"""Checkpoint digests: a checkpoint folder loads only if every file is the one the run wrote.

DeepSpeed reads its own checkpoint files with ``torch.load(weights_only=False)`` (pickle), so whoever
can change a file in the folder could run code on resume. Every rank therefore ``seal``s the folder
it saved, last: ``checkpoint_digest.rank<N>.json`` holds the sha256 of each file in it and an
HMAC-SHA256 over that list, made with the run's checkpoint key. Ray Train merges the ranks' folders
into one checkpoint; ``verify`` checks each manifest's HMAC, then recomputes the digests of the merged
folder and refuses (``CheckpointTampered``) when a manifest's HMAC does not match (rewritten without
the key), a manifest is missing, a listed file changed or is missing, or a file is listed by no
manifest. It runs before anything in the folder is deserialised.

The key (``checkpoint_key``) is kept outside checkpoint storage: the variable named by
``train.checkpoint_key_env`` (default ``EMER_CHECKPOINT_KEY``, set on every node like the LLM key) or
the file named by ``train.checkpoint_key_file`` (outside ``train.storage_path``). It is never written
into a checkpoint, a log or config.yaml. DeepSpeed needs it (``required=True``: a missing key is an
error naming both settings and how to make one). The DDP engine's files hold no pickle (safetensors,
``torch.load(weights_only=True)``): it seals with the key when one is set and with plain digests
otherwise, and a folder sealed with a key loads only with that key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
from pathlib import Path
from typing import Any

from affect_model.train.config import TrainConfig

log = logging.getLogger(__name__)
MANIFEST_PREFIX = "checkpoint_digest"
FORMAT = "emer-checkpoint-digest/2"  # /1: the same without the HMAC (read only without a key)
FORMATS = ("emer-checkpoint-digest/1", FORMAT)
MAC_FIELD = "hmac_sha256"
KEY_MIN_CHARS = 32  # e.g. 64 hex characters from `secrets.token_hex(32)`
_CHUNK = 1 << 20
MAKE_KEY = (
    "make one with `python -c 'import secrets; print(secrets.token_hex(32))'` and export it on every "
    "node as EMER_CHECKPOINT_KEY (or the variable train.checkpoint_key_env names; on a cluster deliver "
    "it like the LLM key, docs/cluster.md 'Secrets'), or write it to a file outside train.storage_path "
    "and name that with train.checkpoint_key_file"
)


class CheckpointTampered(ValueError):
    """A checkpoint folder whose files do not match the digests recorded when it was saved."""


class CheckpointKeyMissing(ValueError):
    """No checkpoint key where ``train.checkpoint_key_env`` / ``train.checkpoint_key_file`` point."""


def checkpoint_key(cfg: TrainConfig, required: bool) -> bytes | None:
    """The run's checkpoint key: the file ``cfg.checkpoint_key_file`` names, else the variable
    ``cfg.checkpoint_key_env`` names. Missing: ``CheckpointKeyMissing`` when ``required``, else None.
    The key is never logged or echoed."""
    if cfg.checkpoint_key_file:
        path = Path(cfg.checkpoint_key_file).expanduser()
        if not path.is_file():
            raise CheckpointKeyMissing(
                f"train.checkpoint_key_file = {cfg.checkpoint_key_file!r}: no such file; {MAKE_KEY}"
            )
        key, where = path.read_text().strip(), f"train.checkpoint_key_file = {cfg.checkpoint_key_file!r}"
    else:
        name = cfg.checkpoint_key_env
        key, where = (
            (os.environ.get(name, "").strip() if name else ""),
            f"train.checkpoint_key_env = {name!r}",
        )
        if not key:
            if not required:
                return None
            raise CheckpointKeyMissing(
                f"{where}: {'that variable is not set' if name else 'no variable named'}, and "
                "train.checkpoint_key_file is empty: DeepSpeed checkpoints are sealed with an HMAC key "
                f"kept outside checkpoint storage (its files are pickles); {MAKE_KEY}"
            )
    if len(key) < KEY_MIN_CHARS:
        raise CheckpointKeyMissing(
            f"{where}: the key is {len(key)} characters, under {KEY_MIN_CHARS} (value not shown); {MAKE_KEY}"
        )
    return key.encode()


def ensure_key_file(path: str) -> str:
    """Make a random checkpoint key in ``path`` (mode 0600) unless it exists; returns ``path``.
    For a local run that has no key of its own (``emer demo``); never inside a checkpoint folder."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    log.info("made a checkpoint key in %s (train.checkpoint_key_file)", path)
    return path


def _mac(key: bytes, meta: dict) -> str:
    body = {k: meta[k] for k in ("format", "rank", "sha256")}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def manifest_name(rank: int) -> str:
    return f"{MANIFEST_PREFIX}.rank{rank}.json"


def _is_manifest(rel: str) -> bool:
    return "/" not in rel and rel.startswith(MANIFEST_PREFIX + ".") and rel.endswith(".json")


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _files(folder: str) -> list[str]:
    """Every file under ``folder`` as a '/'-separated relative path, sorted (symlinks count as files)."""
    out = []
    for root, _, names in os.walk(folder):
        for name in names:
            out.append(os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/"))
    return sorted(out)


def seal(folder: str, rank: int, key: bytes | None) -> str:
    """Write ``rank``'s manifest over every file now in ``folder`` (call it after the last write),
    authenticated with ``key`` (HMAC-SHA256) when one is given."""
    files = {rel: _sha256(os.path.join(folder, rel)) for rel in _files(folder) if not _is_manifest(rel)}
    meta: dict[str, Any] = {"format": FORMAT, "rank": rank, "sha256": files}
    if key is not None:
        meta[MAC_FIELD] = _mac(key, meta)
    path = os.path.join(folder, manifest_name(rank))
    tmp = path + ".partial"
    with open(tmp, "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    os.replace(tmp, path)
    return path


def _read_manifest(folder: str, rel: str, key: bytes | None) -> dict[str, str]:
    """The ``{file: sha256}`` of one manifest, after checking its form and (with a key) its HMAC."""
    where = f"{folder}/{rel}"
    try:
        with open(os.path.join(folder, rel)) as f:
            meta = json.load(f)
    except (OSError, ValueError) as err:
        raise CheckpointTampered(f"{where}: unreadable manifest ({err})") from err
    if not isinstance(meta, dict) or meta.get("format") not in FORMATS:
        raise CheckpointTampered(f"{where}: not an emer checkpoint manifest ({FORMAT})")
    files = meta.get("sha256")
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise CheckpointTampered(f"{where}: its sha256 list is not a mapping of file -> digest")
    if key is None and MAC_FIELD in meta:
        raise CheckpointKeyMissing(
            f"{where}: sealed with a checkpoint key, but none is set now (train.checkpoint_key_env / "
            "train.checkpoint_key_file): set the key this run was started with"
        )
    if key is not None:
        mac = meta.get(MAC_FIELD)
        if not isinstance(mac, str) or not hmac.compare_digest(mac, _mac(key, meta)):
            raise CheckpointTampered(
                f"{where}: its HMAC does not match the checkpoint key ("
                + ("none recorded: sealed without a key" if mac is None else "rewritten without the key")
                + ", or sealed with another key than train.checkpoint_key_env / train.checkpoint_key_file "
                "give now)"
            )
    return files


def _recorded(folder: str, manifests: list[str], key: bytes | None) -> dict[str, str]:
    recorded: dict[str, str] = {}
    for rel in manifests:
        for name, digest in _read_manifest(folder, rel, key).items():
            if recorded.setdefault(name, digest) != digest:
                raise CheckpointTampered(f"{folder}: two manifests disagree about {name}")
    return recorded


def verify(folder: str, key: bytes | None) -> None:
    """Raise ``CheckpointTampered`` unless ``folder``'s files are exactly those its manifests list
    and (with ``key``) every manifest carries the HMAC that ``key`` makes."""
    present = _files(folder)
    manifests = [rel for rel in present if _is_manifest(rel)]
    fix = (
        "do not resume from it: delete that checkpoint folder (the run falls back to an older one) or "
        "start a new run (another train.run_name / train.storage_path)"
    )
    if not manifests:
        raise CheckpointTampered(
            f"{folder}: no {MANIFEST_PREFIX}.rank<N>.json in it, so its files cannot be checked "
            f"(an unfinished save, an emer version before checkpoint digests, or a planted folder); {fix}"
        )
    try:
        recorded = _recorded(folder, manifests, key)
    except CheckpointTampered as err:
        raise CheckpointTampered(f"{err}; {fix}") from None
    unlisted = [rel for rel in present if rel not in recorded and not _is_manifest(rel)]
    problems = [f"{rel} is not listed by any manifest" for rel in unlisted]
    for rel, digest in sorted(recorded.items()):
        path = os.path.join(folder, rel)
        if not os.path.isfile(path):
            problems.append(f"{rel} is missing")
        elif _sha256(path) != digest:
            problems.append(f"{rel} changed since it was saved (sha256 differs)")
    if problems:
        raise CheckpointTampered(f"{folder}: checkpoint files do not match their digests: {problems}; {fix}")
    log.info(
        "checkpoint %s: %d files match their digests%s",
        folder,
        len(recorded),
        " (HMAC checked)" if key is not None else "",
    )
