"""The DDP engine's training state, pickle-free: tensors, numbers, strings and lists / dicts of them.

``require_plain`` refuses, when a checkpoint is saved, anything ``torch.load(weights_only=True)`` could
not read back; ``load_plain`` reads the state file with ``weights_only=True`` and checks its keys, so a
resume never unpickles an object (``affect_model.train.engine.DDPEngine``).
"""

from __future__ import annotations

import pickle
from typing import Any

import torch

_PLAIN = (str, int, float, bool, type(None), torch.Tensor, torch.dtype, torch.device)


def require_plain(value: Any, where: str) -> None:
    """Fail at save time (not at resume) if ``value`` holds what ``weights_only=True`` cannot read."""
    if isinstance(value, dict):
        for key, item in value.items():
            require_plain(key, where)
            require_plain(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            require_plain(item, f"{where}[{i}]")
    elif not isinstance(value, _PLAIN):
        raise TypeError(
            f"{where}: {type(value).__name__} in the training state; only tensors, numbers, strings and "
            "lists / dicts of them are saved (a checkpoint must load with torch.load(weights_only=True))"
        )


def load_plain(path: str) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{path}: refused, it holds not only tensors and plain containers (torch.load with "
            f"weights_only=True failed: {str(err).splitlines()[0]}); emer never writes such a file: "
            "do not resume from it (start a new run with another train.run_name)"
        ) from err
    if not isinstance(state, dict) or not {"optimizer", "scheduler", "client_state"} <= set(state):
        raise ValueError(f"{path}: not an emer DDP training state (optimizer, scheduler, client_state)")
    return state
