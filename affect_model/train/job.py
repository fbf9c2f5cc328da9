"""The typed seams of a training run: what the driver hands to its workers and what they share.

``TrainJob``: what ``affect_model.train.loop`` (the driver) hands
to every Ray Train worker, instead of a dict of string keys. ``WorkerContext``: one worker's view of
the job (its engine, rank and device), what ``affect_model.train.worker`` and the per-epoch
evaluation (``affect_model.train.evaluate``) share.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from affect_model.train.config import Scorer, TrainConfig
from affect_model.train.engine import Engine
from affect_model.train.task import AffectGPTTask
from core.llm import LLMConfig


@dataclasses.dataclass(frozen=True)
class TrainJob:
    """Everything a Ray Train worker needs, built once by the driver (``loop.run_training``)."""

    train: TrainConfig  # the run's ``train`` section, local paths made absolute
    task: AffectGPTTask  # the model adapter: builds, feeds, saves the model
    record: dict[str, Any]  # the run's output-affecting config (``resume.run_record``)
    env: dict[str, str]  # variables of the trainer and its workers
    init_uri: str = ""  # trainable weights to start from ("" = none)
    scorer: Scorer | None = None  # scores the per-epoch evaluation (None: predictions only)
    eval_llm: LLMConfig | None = None  # ``evaluate.llm``: OV-label extraction for eval_extractor = llm
    rows: int = 0  # training rows, optimizer steps per epoch and in all (filled by the driver's ``_fit``)
    per_epoch: int = 0
    total: int = 0

    def with_steps(self, rows: int, per_epoch: int, total: int) -> TrainJob:
        return dataclasses.replace(self, rows=rows, per_epoch=per_epoch, total=total)


@dataclasses.dataclass(frozen=True)
class WorkerContext:
    """One Ray Train worker's view of the job: its engine (wrapping the model), rank, world and device."""

    job: TrainJob
    engine: Engine
    rank: int
    world: int
    device: torch.device

    @property
    def cfg(self) -> TrainConfig:
        return self.job.train

    @property
    def task(self) -> AffectGPTTask:
        return self.job.task

    @property
    def module(self) -> torch.nn.Module:
        return self.engine.module
