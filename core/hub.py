"""Where a configured model comes from: a local folder, the Hugging Face cache, or (only when allowed)
a download. ``missing_model(key, model)`` says, before any worker starts, why a model cannot be had.

A model value is a local folder (``./x``, ``/x``, ``~/x`` or any existing folder), an ``s3://`` prefix
(synced by the loader) or a hub id (``org/name``). A hub id must already be in the Hugging Face cache
unless downloads are allowed (``EMER_ALLOW_DOWNLOADS=1`` and ``HF_HUB_OFFLINE`` unset): a machine with
no internet otherwise fails deep inside a worker with "Check your internet connection". The error
names the config key, the id and the two ways to get it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

ALLOW_ENV = "EMER_ALLOW_DOWNLOADS"
_TRUE = ("1", "true", "yes", "on")


def downloads_allowed() -> bool:
    """``EMER_ALLOW_DOWNLOADS`` is on and ``HF_HUB_OFFLINE`` is off."""
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in _TRUE
    return not offline and os.environ.get(ALLOW_ENV, "").lower() in _TRUE


def in_hf_cache(repo_id: str) -> bool:
    """A config.json (or tokenizer config) of ``repo_id`` is in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache  # light, but only needed here

    for filename in ("config.json", "tokenizer_config.json"):
        try:
            if isinstance(try_to_load_from_cache(repo_id, filename), str):
                return True
        except ValueError:  # not a valid repo id
            return False
    return False


def missing_model(key: str, model: str) -> str | None:
    """Why ``model`` (the value of config ``key``) cannot be loaded here, or None when it can."""
    if not model or model.startswith("s3://"):
        return None
    path = Path(model).expanduser()
    if path.is_dir():
        return None
    if model.startswith(("/", ".", "~")) or model.count("/") > 1:  # a path, not an org/name id
        return (
            f"{key} = {model!r}: no such folder; run `emer models prepare` for the demo's models, "
            "or point the key at a model folder"
        )
    if in_hf_cache(model) or downloads_allowed():
        return None
    return (
        f"{key} = {model!r}: not a local folder and not in the Hugging Face cache, and this machine may "
        f"not download it; download it on a connected machine (`hf download {model} --local-dir DIR`) "
        f"and point {key} at DIR, or set {ALLOW_ENV}=1 to let the hub download it here"
    )


def missing_models(items: Iterable[tuple[str, str]]) -> list[str]:
    """The problems of every ``(key, model)`` pair (see ``missing_model``)."""
    return [p for key, model in items if (p := missing_model(key, model))]
