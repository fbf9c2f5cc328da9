"""RunConfig: every component's config nested in one object, from YAML presets plus dotted overrides.

The one route to a config: dataclass defaults -> YAML files (``--config`` given once or more; later
files override earlier ones key by key; ``${EMER_MODELS}`` and other ``${VAR}`` in them expanded from
the environment, ``EMER_MODELS`` defaulting to the models cache; ``--config a,b`` is ``--config a
--config b``) -> dotted flags (``--annotate.frames=8``; a command's named flags become dotted
overrides too, ``emer.commands.flags``). ``load_run_config`` returns the validated config;
``load_run_config_with_sources`` also says, per key, the file or flag its value came from
(``emer config`` prints that). Sections: ``storage`` and ``ray`` (core), ``clips``,
``annotate``, ``filter`` and ``noise`` (pipelines), ``model`` and ``train`` (affect_model),
``evaluate`` (evaluation), ``demo`` (what only ``emer demo`` reads).
``require_models`` checks, before any worker starts, that every model a command loads is here.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

from affect_model.model.config import ModelConfig
from affect_model.train.config import TrainConfig
from core import storage
from core.config import Config, ConfigError, Sources, check_range, load_with_sources
from core.hub import missing_models
from core.runtime import RayConfig
from core.storage import StorageConfig, save_resolved
from emer.models import ENV as MODELS_ENV
from emer.models import models_dir
from evaluation.config import EvaluateConfig
from pipelines.clips.config import ClipsConfig
from pipelines.clips.noise import NoiseConfig
from pipelines.config import AnnotateConfig
from pipelines.fine.config import FilterConfig

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"


@dataclasses.dataclass(frozen=True)
class DemoConfig(Config):
    """What only ``emer demo`` reads (its other settings are the components' own sections)."""

    # stage 2's optimizer steps in the demo's stage 1 -> stage 2 chain (affect_model/jobs/demo.py);
    # 0 = train.max_steps, as stage 1. `emer train --stage 2` takes --train.max_steps instead.
    stage2_max_steps: int = 0

    def problems(self) -> list[str]:
        out: list[str] = []
        check_range(out, "demo.stage2_max_steps", self.stage2_max_steps, 0, None)
        return out


@dataclasses.dataclass(frozen=True)
class RunConfig(Config):
    """The whole run: name, output_dir and one section per component."""

    name: str = "emer"
    output_dir: str = "runs"
    storage: StorageConfig = dataclasses.field(default_factory=StorageConfig)
    ray: RayConfig = dataclasses.field(default_factory=RayConfig)
    clips: ClipsConfig = dataclasses.field(default_factory=ClipsConfig)
    annotate: AnnotateConfig = dataclasses.field(default_factory=AnnotateConfig)
    filter: FilterConfig = dataclasses.field(default_factory=FilterConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = dataclasses.field(default_factory=EvaluateConfig)
    noise: NoiseConfig = dataclasses.field(default_factory=NoiseConfig)
    demo: DemoConfig = dataclasses.field(default_factory=DemoConfig)

    def problems(self) -> list[str]:
        if not self.name or any(c in self.name for c in "/\\ ") or self.name.startswith("."):
            return [f"name = {self.name!r}: must be a plain run name (no slashes or spaces)"]
        return []


def preset_path(name: str) -> str:
    """A YAML file path, or the preset ``name`` from configs/ (``demo`` -> configs/demo.yaml)."""
    if Path(name).is_file() or not (CONFIG_DIR / f"{name}.yaml").is_file():
        return name
    return str(CONFIG_DIR / f"{name}.yaml")


def split_configs(config: str | Sequence[str] | None) -> list[str]:
    """The presets / files named, in order: ``["stage1,affectgpt-v1", "cluster"]`` is the same as
    ``["stage1", "affectgpt-v1", "cluster"]`` (an existing file whose name holds a comma stays whole)."""
    names = [config] if isinstance(config, str) else list(config or [])
    return [p for c in names for p in ([c] if Path(c).is_file() else c.split(",")) if p.strip()]


def _paths(config: str | Sequence[str] | None) -> list[str]:
    return [preset_path(c.strip()) for c in split_configs(config)]


def load_run_config_with_sources(
    config: str | Sequence[str] | None = None, overrides: Sequence[str] = ()
) -> tuple[RunConfig, Sources]:
    """The run config from presets/files (in order) and overrides, with each key's origin."""
    variables = {**os.environ, MODELS_ENV: str(models_dir())}
    cfg, sources = load_with_sources(RunConfig, _paths(config), overrides, variables)
    storage.configure(cfg.storage)
    return cfg, sources


def model_keys(run: RunConfig, sections: Sequence[str]) -> list[tuple[str, str]]:
    """(config key, model) for every model that ``sections`` of ``run`` load in-process (a ``signal``
    role loads the components its wheels ship, pipelines.signals)."""
    items: list[tuple[str, str]] = []
    if "annotate" in sections and run.annotate.llm_stages:  # stop_after=decode/check loads no model
        seen = set()
        for role in run.annotate.roles():
            key = role if getattr(run.annotate, role) is not None else "text"  # a step using ``text``
            llm = run.annotate.llm(role)
            if llm.backend not in ("openai", "signal") and key not in seen:  # signal: no model file
                seen.add(key)
                items.append((f"annotate.{key}.model", llm.model))
    if "clips" in sections and run.clips.transcribe and run.clips.asr.backend != "openai":
        items.append(("clips.asr.model", run.clips.asr.model))
    if "model" in sections:
        m = run.model
        items += [("model.vision_model", m.vision_model), ("model.audio_model", m.audio_model)]
        items += [("model.llm_model", m.llm_model), ("model.tokenizer", m.tokenizer)]
    if "evaluate" in sections and run.evaluate.llm.backend != "openai":
        items.append(("evaluate.llm.model", run.evaluate.llm.model))
    return items


def require_models(run: RunConfig, *sections: str) -> None:
    """Raise one ConfigError naming every model of ``sections`` that cannot be loaded on this machine."""
    problems = missing_models(model_keys(run, sections))
    if problems:
        raise ConfigError(problems)


def load_run_config(config: str | Sequence[str] | None = None, overrides: Sequence[str] = ()) -> RunConfig:
    """The run config from presets/files (in order) and dotted overrides; one error for all problems."""
    return load_run_config_with_sources(config, overrides)[0]


__all__ = [
    "CONFIG_DIR",
    "ConfigError",
    "RunConfig",
    "load_run_config",
    "load_run_config_with_sources",
    "preset_path",
    "require_models",
    "split_configs",
    "save_resolved",
]
