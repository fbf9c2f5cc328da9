"""Run-config fingerprints: refuse to resume a run whose output-affecting settings changed.

A resumable job (training from a checkpoint, an annotation run continuing its output folder) stores
the part of its resolved config that shapes its outputs when it starts, and compares it with the
current config before it resumes. Three functions and one error make the whole API:

- ``fingerprint(config, ignore)``: a stable sha256 of ``config`` (a nested dict of plain values, e.g.
  ``Config.to_dict()``) without the ``ignore`` keys; the order of dict keys does not matter.
- ``diff_keys(old, new, ignore)``: the dotted keys (``train.lr``, ``model.lora_r``) whose values
  differ, sorted; a key present on one side only counts as changed.
- ``check_resume(saved, current, ignore, what)``: raises ``ResumeMismatch`` listing every changed key
  with its old and new value, and how to go on; ``saved=None`` (nothing recorded yet) passes.

``output_affecting(config, ignore)`` gives the nested dict to store beside the fingerprint (so that a
later mismatch can name the keys). ``ignore`` holds dotted keys of settings that do not change the
outputs (logging, resources, where the output goes); a key ignores everything below it, so
``train.features`` ignores ``train.features.batch_size``. Each caller keeps its own, documented list.
Values are compared after a JSON round trip: tuples equal lists, and only JSON types are accepted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

FORMAT = "emer-fingerprint/1"  # mixed into every digest; bump it if the canonical form changes
DEFAULT_FIX = (
    "restore the old value(s) (the saved config holds them) to resume, or write to a new output "
    "folder to start afresh"
)
_UNSET = object()


class ResumeMismatch(ValueError):
    """A resume refused because output-affecting settings changed; ``changes``: (key, old, new)."""

    def __init__(self, what: str, changes: list[tuple[str, Any, Any]], fix: str) -> None:
        self.what, self.changes = what, changes
        lines = [f"  - {key}: {_show(old)} -> {_show(new)}" for key, old, new in changes]
        super().__init__(
            f"cannot resume {what}: {len(changes)} output-affecting setting(s) changed since it was "
            "started (resuming would mix old and new settings):\n" + "\n".join(lines) + f"\nFix: {fix}"
        )


def _show(value: Any) -> str:
    return "(unset)" if value is _UNSET else json.dumps(value, ensure_ascii=False)


def _ignored(key: str, ignore: frozenset[str]) -> bool:
    parts = key.split(".")
    return any(".".join(parts[: i + 1]) in ignore for i in range(len(parts)))


def _plain(value: Any, key: str) -> Any:
    """``value`` as JSON types (tuples -> lists); a TypeError names the key of anything else."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{key}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(
        f"config key {key!r}: {type(value).__name__} is not a plain value; pass the config as "
        "plain data (e.g. Config.to_dict() of str / number / bool / list / dict values)"
    )


def _leaves(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_leaves(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def output_affecting(config: Mapping[str, Any], ignore: Iterable[str] = ()) -> dict[str, Any]:
    """``config`` as plain nested data without the ``ignore`` keys (what to store for a resume)."""
    skip = frozenset(ignore)

    def keep(node: dict[str, Any], prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in node.items():
            dotted = f"{prefix}{key}"
            if _ignored(dotted, skip):
                continue
            out[key] = keep(value, dotted + ".") if isinstance(value, dict) else value
        return out

    return keep(_plain(config, ""), "")


def fingerprint(config: Mapping[str, Any], ignore: Iterable[str] = ()) -> str:
    """Hex sha256 of the output-affecting part of ``config``; independent of dict key order."""
    canonical = json.dumps(
        output_affecting(config, ignore), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(f"{FORMAT}\n{canonical}".encode()).hexdigest()


def _changes(old: Mapping[str, Any], new: Mapping[str, Any], ignore: Iterable[str]) -> list[tuple]:
    a, b = _leaves(output_affecting(old, ignore)), _leaves(output_affecting(new, ignore))
    keys = sorted(set(a) | set(b))
    return [(k, a.get(k, _UNSET), b.get(k, _UNSET)) for k in keys if a.get(k, _UNSET) != b.get(k, _UNSET)]


def changes(
    old: Mapping[str, Any] | None, new: Mapping[str, Any], ignore: Iterable[str] = ()
) -> list[tuple[str, Any, Any]]:
    """(dotted key, old, new) for every key not in ``ignore`` that differs; ``old=None``: none."""
    return [] if old is None else _changes(old, new, ignore)


def diff_keys(old: Mapping[str, Any], new: Mapping[str, Any], ignore: Iterable[str] = ()) -> list[str]:
    """The dotted keys (not in ``ignore``) whose values differ between ``old`` and ``new``, sorted."""
    return [key for key, _, _ in _changes(old, new, ignore)]


def check_resume(
    saved: Mapping[str, Any] | None,
    current: Mapping[str, Any],
    ignore: Iterable[str] = (),
    what: str = "the run",
    fix: str = DEFAULT_FIX,
) -> None:
    """Raise ``ResumeMismatch`` when ``current`` differs from the ``saved`` config in a key that is not
    ignored; ``saved=None`` (no config recorded) passes. ``what`` names the run in the message and
    ``fix`` says how to go on (name the caller's own output-folder setting there)."""
    if saved is None:
        return
    changes = _changes(saved, current, ignore)
    if changes:
        raise ResumeMismatch(what, changes, fix)
