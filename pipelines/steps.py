"""The one table of annotation steps: every model step of ``emer annotate``, in pipeline order.

A ``Step`` names the step (its config sections ``annotate.<name>`` and ``annotate.stages.<name>``),
the Stage class that runs it (which declares the step's input kind, its registry prompt and the
columns it reads and writes), when a run calls it, whether consecutive steps may share one actor
pool (and one loaded model), and its pool's default batch size. Everything else reads this table:
``pipelines.config`` (the per-step config sections, the text steps' inheritance from ``text``,
``roles()``, the operational keys of a resume), ``pools`` (the grouping), ``provenance`` (what made
each output) and ``annotate`` (the stage chain).

A new text step is one entry plus its prompt in ``core.llm.prompts``: ``text_step(name, prompt,
inputs, output)`` makes the Stage class (``TextStepStage``: the prompt's data fields filled from
``inputs`` columns, the answer written to ``output``), and ``register`` adds it at run time (a step
registered after import has no config section of its own: it runs with ``annotate.text`` and
``annotate.stages.text``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from pipelines.stages import (
    AudioClueStage,
    DisambiguateStage,
    LLMStage,
    OmniClueStage,
    OVLabelStage,
    TextStepStage,
    TranslateStage,
    VideoClueStage,
)

INHERIT_FROM = "text"  # the text steps' shared base section (in ``annotate`` and ``annotate.stages``)


def always(cfg: Any) -> bool:
    return True


def separate_clues(cfg: Any) -> bool:
    return cfg.clues != "omni"


def omni_clues(cfg: Any) -> bool:
    return cfg.clues == "omni"


def translating(direction: str) -> Callable[[Any], bool]:
    def runs(cfg: Any) -> bool:
        return cfg.translate == direction

    runs.__name__ = f"translate_{direction}"
    return runs


@dataclasses.dataclass(frozen=True)
class Step:
    """One model step: ``name`` (its config keys), ``stage`` (the class that runs it), ``when`` (does
    a run with this config call it), ``share_pool`` (consecutive steps that may share it share one
    actor pool and one loaded model when their model and resources are equal), ``batch_size`` (the
    default of ``annotate.stages.<name>.batch_size``; a text step inherits ``stages.text``'s)."""

    name: str
    stage: type[LLMStage]
    when: Callable[[Any], bool] = always
    share_pool: bool = False
    batch_size: int = 16

    @property
    def kind(self) -> str:
        """The input kind its model is asked with (``core.llm.INPUT_KINDS``)."""
        return self.stage.kind

    @property
    def inherits(self) -> bool:
        """A text step: its config sections default to ``annotate.text`` / ``annotate.stages.text``."""
        return self.kind == "text"

    def prompt(self, cfg: Any) -> str:
        """The registry prompt the step asks under ``cfg``."""
        return self.stage.prompt_for(cfg)

    @property
    def inputs(self) -> tuple[str, ...]:
        return tuple(self.stage.needs)

    @property
    def outputs(self) -> tuple[str, ...]:
        return tuple(self.stage.produces)


def text_step(name: str, prompt: str, inputs: dict[str, str], output: str, **options: Any) -> Step:
    """A text step that asks registry prompt ``prompt`` with its data fields filled from the
    ``inputs`` columns (data field -> column) and writes the answer to column ``output``."""
    body = {"name": name, "role": name, "prompt": prompt, "fields": dict(inputs), "output": output}
    body |= {"needs": tuple(inputs.values()), "produces": (output,), "__module__": __name__}
    stage = type(f"{name.title().replace('_', '')}Stage", (TextStepStage,), body)
    return Step(name, stage, share_pool=True, **options)


# The steps in pipeline order; a new text step: ``text_step(name, prompt, {field: column}, output)``
STEPS: dict[str, Step] = {
    s.name: s
    for s in (
        Step("audio", AudioClueStage, separate_clues, batch_size=8),
        Step("video", VideoClueStage, separate_clues, batch_size=8),
        Step("omni", OmniClueStage, omni_clues, batch_size=4),
        Step("disambiguate", DisambiguateStage, share_pool=True),
        Step("translate_en_zh", TranslateStage, translating("en_zh"), share_pool=True),
        Step("translate_zh_en", TranslateStage, translating("zh_en"), share_pool=True),
        Step("ov", OVLabelStage, share_pool=True),
    )
}
BUILT_IN = tuple(STEPS)  # the steps with config sections of their own (fields of the config classes)


def register(step: Step, after: str | None = None) -> None:
    """Add ``step`` to the table, after step ``after`` (default: last)."""
    if step.name in STEPS or step.name == INHERIT_FROM:
        raise ValueError(f"annotation step {step.name!r} exists already")
    items = list(STEPS.items())
    at = len(items) if after is None else [n for n, _ in items].index(after) + 1
    items.insert(at, (step.name, step))
    STEPS.clear()
    STEPS.update(items)


def unregister(name: str) -> None:
    """Remove a step added by ``register`` (a built-in step stays)."""
    if name in BUILT_IN:
        raise ValueError(f"annotation step {name!r} is built in")
    STEPS.pop(name, None)


def names() -> tuple[str, ...]:
    """Every step's name (every model role), in pipeline order."""
    return tuple(STEPS)


def text_steps() -> tuple[str, ...]:
    """The steps that inherit ``annotate.text`` (and ``annotate.stages.text``)."""
    return tuple(n for n, s in STEPS.items() if s.inherits)


def kind_of(name: str) -> str:
    return STEPS[name].kind


def run_steps(cfg: Any) -> list[Step]:
    """The steps a run with ``cfg`` calls, in order (none when it stops after the check)."""
    if not cfg.llm_stages:
        return []
    return [s for s in STEPS.values() if s.when(cfg)]
