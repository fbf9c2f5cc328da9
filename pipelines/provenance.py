"""Provenance of an EMER-Coarse output: what made each step's answers, and a guard against mixing.

``steps(cfg)`` gives, per model step of the run (audio_clue, video_clue or av_clue, disambiguate,
translate, ov_labels): the role, backend, model id and revision, the prompt's name and hash, the
sampling settings and the emer version. The manifest stores it (``provenance``), the dataset card
lists it, and every sample and failure row carries ``config_fingerprint``: the digest of the
output-affecting config plus these steps, so rows made under two settings can always be told apart.

``changes(saved, current)`` lists what differs between a saved provenance and the current one, for
the resume check: a changed default prompt (new emer code), model revision or sampling setting
alters outputs as much as a config key does.
"""

from __future__ import annotations

import hashlib
import json
import logging
from importlib import metadata
from pathlib import Path
from typing import Any

from core.config import to_plain
from core.fingerprint import fingerprint
from core.llm.prompts import PROMPTS, system_for
from core.secrets import redact_url
from pipelines.signals import backend as signals
from pipelines.steps import run_steps

log = logging.getLogger(__name__)

STEP_KEYS = ("role", "backend", "model", "revision", "prompt", "prompt_hash", "sampling")
RESUME_KEYS = ("prompt", "prompt_hash", "revision")  # the rest are config keys, checked as such
SIGNAL_REFERENCE = {"audio": "none: norms.json", "video": "none: emotion_model.hdf5"}


def emer_version() -> str:
    try:
        return metadata.version("emer")
    except metadata.PackageNotFoundError:
        return "unknown"


def prompt_hash(llm: Any, name: str) -> str:
    """sha256 (16 hex) of everything the model reads besides the data: the instruction (configured
    or default), its data fields and answer cue, the system message and the few-shot turns."""
    tpl = PROMPTS[name]
    body = {
        "instruction": llm.prompts.get(name, tpl.instruction),
        "data": list(tpl.data),
        "params": list(tpl.params),
        "cue": tpl.cue,
        "system": system_for(name),
        "examples": [list(t) for t in llm.turns(name)],
    }
    text = json.dumps(body, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def model_revision(llm: Any, kind: str = "") -> str:
    """The configured revision; for a local folder a digest of its file names, sizes and config
    (a hub snapshot folder: its commit); an endpoint model is named by the server only."""
    if llm.revision:
        return llm.revision
    if llm.backend == "signal":
        return signals.versions(kind)
    if llm.backend == "openai":
        return f"endpoint {redact_url(llm.base_url) or 'api.openai.com'}"
    path = Path(llm.model).expanduser()
    if not path.is_dir():
        return "default branch (unpinned)"
    if path.parent.name == "snapshots":
        return path.name
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path)}:{f.stat().st_size}\n".encode())
        if f.suffix == ".json" and f.stat().st_size < 2**20:
            h.update(f.read_bytes())
    return "local:" + h.hexdigest()[:12]


def steps(cfg: Any) -> dict[str, dict[str, Any]]:
    """Step name -> what produced it (``STEP_KEYS`` plus ``emer``), in pipeline order."""
    out: dict[str, dict[str, Any]] = {}
    for step in run_steps(cfg):
        role, kind = step.name, step.kind
        llm, prompt = cfg.llm(role), step.prompt(cfg)
        if llm.backend == "signal":
            prompt, digest = SIGNAL_REFERENCE[kind], signals.reference_hash(kind)
        else:
            digest = prompt_hash(llm, prompt)
        out[step.stage.name] = {
            "role": role,
            "backend": llm.backend,
            "model": llm.model,
            "revision": model_revision(llm, kind),
            "prompt": prompt,
            "prompt_hash": digest,
            "sampling": {
                "temperature": llm.temperature,
                "max_new_tokens": llm.max_new_tokens,
                "min_new_tokens": llm.min_new_tokens,
            },
            "emer": emer_version(),
        }
    return out


def run_fingerprint(cfg: Any, ignore: frozenset[str]) -> str:
    """The digest every row of this run carries: output-affecting config plus step provenance."""
    made_by = {k: {key: v[key] for key in STEP_KEYS} for k, v in steps(cfg).items()}
    return fingerprint({"config": to_plain(cfg), "steps": made_by}, {f"config.{k}" for k in ignore})


def changes(saved: dict[str, Any] | None, current: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(``provenance.<step>.<key>``, old, new) for every step key that differs; nothing saved: []."""
    if not saved:
        return []
    out = []
    for step in sorted(set(saved) | set(current)):
        old, new = saved.get(step) or {}, current.get(step) or {}
        for key in RESUME_KEYS:
            if old.get(key) != new.get(key):
                out.append((f"provenance.{step}.{key}", old.get(key), new.get(key)))
    return out
