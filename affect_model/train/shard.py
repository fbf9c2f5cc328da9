"""One worker's micro-batches of an epoch, read from its Ray Train shard of the ``train`` dataset.

``micro_batches`` yields ``(index, batch)``: one pass over the shard, or with ``train.iters_per_epoch``
passes until the epoch's micro-batches are there. Batches are collated by the task (with the count of
truncated answers), shuffled in a seeded window per epoch and pass, and with ``train.group_by_length``
grouped by token length (``affect_model.train.batching``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch

from affect_model.train.batching import grouped_batches
from affect_model.train.job import WorkerContext
from affect_model.train.task import to_device

CYCLE_SEED = 1_000_003  # seed offset between passes over the shard within one epoch


def micro_batches(
    ctx: WorkerContext, epoch: int, limit: int, finished: Callable[[], bool]
) -> Iterator[tuple[int, dict]]:
    """(index, batch) of this epoch: one pass over the shard, or with ``train.iters_per_epoch``
    passes until ``limit`` micro-batches (every pass read to its end, as all workers must). Once
    the run's last step is done (``finished()``) no new pass starts: every rank is at the same step,
    so all of them stop after the same pass (before, ``train.max_steps`` below ``iters_per_epoch``
    cycled the data up to the epoch's full length just to drain it)."""
    i, passes = 0, 0
    while True:
        start = i
        for batch in _batches(ctx, epoch, passes):
            yield i, batch
            i += 1
        passes += 1
        if not ctx.cfg.iters_per_epoch or i >= limit or finished():
            return
        if i == start:
            raise RuntimeError(f"rank {ctx.rank}: a pass over the training shard gave no batch")


def _batches(ctx: WorkerContext, epoch: int, cycle: int = 0) -> Iterable[dict]:
    import ray.train

    shard = ray.train.get_dataset_shard("train")
    cfg, task, module = ctx.cfg, ctx.task, ctx.module

    def collate(batch: dict[str, Any]) -> dict:
        out = task.collate(module, batch, count_truncated=True)
        out.pop("names", None)
        out["truncated"] = torch.tensor(out["truncated"])
        return out

    shuffle = cfg.shuffle_buffer or None
    if cfg.group_by_length:
        return _grouped(ctx, shard, collate, epoch + CYCLE_SEED * cycle, shuffle)
    return shard.iter_torch_batches(
        batch_size=cfg.batch_size,
        drop_last=True,
        collate_fn=collate,
        device=ctx.device,
        local_shuffle_buffer_size=shuffle,
        local_shuffle_seed=cfg.seed + epoch + CYCLE_SEED * cycle if shuffle else None,
    )


def _grouped(
    ctx: WorkerContext, shard: Any, collate: Callable[[dict], dict], epoch: int, shuffle: int | None
) -> Iterable[dict]:
    """Length-grouped batches from buffers of ``length_bucket_size x batch_size`` rows of the shard
    (``affect_model.train.batching``); as many full batches as ``iter_torch_batches`` gives."""
    cfg, task, module = ctx.cfg, ctx.task, ctx.module
    chunks = shard.iter_batches(
        batch_size=cfg.batch_size * cfg.length_bucket_size,
        batch_format="numpy",
        local_shuffle_buffer_size=shuffle,
        local_shuffle_seed=cfg.seed + epoch if shuffle else None,
    )
    return grouped_batches(
        chunks,
        lambda chunk: task.lengths(module, chunk),
        lambda rows: to_device(collate(rows), ctx.device),
        cfg.batch_size,
        cfg.length_bucket_size,
        seed=cfg.seed + epoch,
    )
