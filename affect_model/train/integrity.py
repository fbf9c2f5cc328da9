"""Checkpoint digests: a checkpoint folder loads only if every file is the one the run wrote.

DeepSpeed reads its own checkpoint files with ``torch.load(weights_only=False)`` (pickle), so whoever
can change a file in the folder could run code on resume. Every rank therefore ``seal``s the folder
it saved, last: ``checkpoint_digest.rank<N>.json`` holds the sha256 of each file in it. Ray Train
merges the ranks' folders into one checkpoint; ``verify`` recomputes the digests of the merged folder
and refuses (``CheckpointTampered``) when a manifest is missing, a listed file changed or is missing,
or a file is listed by no manifest. It runs before anything in the folder is deserialised.

The manifest sits inside the folder it protects: it catches swapped, edited, added or truncated
files, not an attacker who also rewrites the manifest. Our own state is therefore loaded without
pickle as well (safetensors, ``torch.load(weights_only=True)``); DeepSpeed's files are the one place
where the digest is the only guard.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os

log = logging.getLogger(__name__)
MANIFEST_PREFIX = "checkpoint_digest"
FORMAT = "emer-checkpoint-digest/1"
_CHUNK = 1 << 20


class CheckpointTampered(ValueError):
    """A checkpoint folder whose files do not match the digests recorded when it was saved."""


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


def seal(folder: str, rank: int) -> str:
    """Write ``rank``'s manifest over every file now in ``folder`` (call it after the last write)."""
    files = {rel: _sha256(os.path.join(folder, rel)) for rel in _files(folder) if not _is_manifest(rel)}
    path = os.path.join(folder, manifest_name(rank))
    tmp = path + ".partial"
    with open(tmp, "w") as f:
        json.dump({"format": FORMAT, "rank": rank, "sha256": files}, f, indent=1, sort_keys=True)
    os.replace(tmp, path)
    return path


def _recorded(folder: str, manifests: list[str]) -> dict[str, str]:
    recorded: dict[str, str] = {}
    for rel in manifests:
        with open(os.path.join(folder, rel)) as f:
            meta = json.load(f)
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise CheckpointTampered(f"{folder}/{rel}: not an emer checkpoint manifest ({FORMAT})")
        for name, digest in dict(meta.get("sha256", {})).items():
            if recorded.setdefault(name, digest) != digest:
                raise CheckpointTampered(f"{folder}: two manifests disagree about {name}")
    return recorded


def verify(folder: str) -> None:
    """Raise ``CheckpointTampered`` unless ``folder``'s files are exactly those its manifests list."""
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
    recorded = _recorded(folder, manifests)
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
    log.info("checkpoint %s: %d files match their digests", folder, len(recorded))
