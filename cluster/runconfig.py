"""RunConfig: every component's config nested in one object, loaded from YAML + dotted overrides.

Sections: ``storage`` (cluster.storage), ``ray`` (cluster.runtime), ``annotate`` (pipelines),
``model`` and ``train`` (affect_model), ``evaluate`` (evaluation). The resolved config is saved
beside each output with ``save_resolved``.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any

from cluster import storage
from cluster.config import Config, ConfigError, dump_yaml, load
from cluster.runtime import RayConfig
from cluster.storage import StorageConfig

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"

# section name -> (module, class); a section whose module is not installed is left out.
SECTIONS = {
    "annotate": ("pipelines.config", "AnnotateConfig"),
    "model": ("affect_model.config", "ModelConfig"),
    "train": ("affect_model.train_config", "TrainConfig"),
    "evaluate": ("evaluation.config", "EvaluateConfig"),
}


def _section_class(module: str, name: str) -> type | None:
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as err:
        if err.name and module.startswith(err.name):
            return None
        raise
    except AttributeError:
        return None


def _run_problems(self: Any) -> list[str]:
    out = []
    if not self.name or any(c in self.name for c in "/\\ ") or self.name.startswith("."):
        out.append(f"name = {self.name!r}: must be a plain run name (no slashes or spaces)")
    return out


def _make_run_config() -> type:
    fields: list[tuple] = [
        ("name", str, dataclasses.field(default="emer")),
        ("output_dir", str, dataclasses.field(default="runs")),
        ("storage", StorageConfig, dataclasses.field(default_factory=StorageConfig)),
        ("ray", RayConfig, dataclasses.field(default_factory=RayConfig)),
    ]
    for section, (module, name) in SECTIONS.items():
        cls = _section_class(module, name)
        if cls is not None:
            fields.append((section, cls, dataclasses.field(default_factory=cls)))
    return dataclasses.make_dataclass(
        "RunConfig", fields, bases=(Config,), frozen=True, namespace={
            "problems": _run_problems,
            "run_dir": lambda self: storage.join(self.output_dir, self.name),
            "__doc__": "The whole run: name, output_dir and one section per component.",
        })


RunConfig = _make_run_config()


def load_run_config(path: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Any:
    """Load a RunConfig from a YAML preset (path, or a name from configs/) plus dotted overrides."""
    if path and not Path(path).is_file() and (CONFIG_DIR / f"{path}.yaml").is_file():
        path = str(CONFIG_DIR / f"{path}.yaml")
    cfg = load(RunConfig, path, overrides)
    storage.configure(cfg.storage)
    return cfg


def save_resolved(cfg: Config, directory: str, filename: str = "config.yaml") -> str:
    """Write the resolved config as YAML beside an output; returns its URI."""
    uri = storage.join(directory, filename)
    storage.write_text(uri, dump_yaml(cfg))
    return uri


__all__ = ["RunConfig", "load_run_config", "save_resolved", "ConfigError", "CONFIG_DIR"]
