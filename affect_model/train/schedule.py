"""Learning-rate schedule (linear warm-up, then cosine decay) and AdamW parameter groups.

Shared by the DeepSpeed and the plain-DDP paths so both optimise exactly the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


def lr_factor(
    step: int,
    warmup_steps: int,
    total_steps: int,
    cosine: bool = True,
    min_ratio: float = 0.0,
    start_ratio: float = 0.0,
) -> float:
    """Multiplier of the base lr at optimizer step ``step`` (0-based).

    Linear warm-up over ``warmup_steps`` steps: from ``1/(warmup+1)`` to 1, or, with ``start_ratio`` > 0,
    from ``start_ratio`` at step 0 to 1 at step ``warmup_steps`` (the official AffectGPT / LAVIS ramp:
    ``warmup_lr + (lr - warmup_lr) * step / warmup_steps``); then cosine decay to ``min_ratio`` at
    ``total_steps`` (constant 1 after warm-up when ``cosine`` is False).
    """
    if warmup_steps > 0 and step < warmup_steps:
        if start_ratio > 0:
            return start_ratio + (1.0 - start_ratio) * step / warmup_steps
        return (step + 1) / (warmup_steps + 1)
    if not cosine or total_steps <= warmup_steps:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_lr_lambda(
    warmup_steps: int,
    total_steps: int,
    cosine: bool = True,
    min_ratio: float = 0.0,
    start_ratio: float = 0.0,
) -> Callable[[int], float]:
    def fn(step: int) -> float:
        return lr_factor(step, warmup_steps, total_steps, cosine, min_ratio, start_ratio)

    return fn


def make_scheduler(
    optimizer: torch.optim.Optimizer,
    warmup_steps: int,
    total_steps: int,
    cosine: bool = True,
    min_ratio: float = 0.0,
    start_ratio: float = 0.0,
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, make_lr_lambda(warmup_steps, total_steps, cosine, min_ratio, start_ratio)
    )


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters only: matrices decay, biases and norm weights do not."""
    decay, no_decay = [], []
    for _, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (decay if param.ndim >= 2 else no_decay).append(param)
    if not decay and not no_decay:
        raise ValueError("the model has no trainable parameters (requires_grad=False everywhere)")
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def total_optimizer_steps(
    rows: int,
    num_workers: int,
    batch_size: int,
    grad_accum: int,
    epochs: int,
    max_steps: int = 0,
    iters_per_epoch: int = 0,
) -> tuple[int, int]:
    """(steps per epoch, total steps) for ``rows`` training rows split evenly over the workers.

    ``iters_per_epoch`` > 0: an epoch is that many optimizer steps (the data cycles), else a full pass."""
    per_worker = rows // num_workers
    micro = per_worker // batch_size
    per_epoch = micro // grad_accum
    if per_epoch < 1:
        raise ValueError(
            f"{rows} training rows are too few for {num_workers} worker(s) x batch {batch_size} x "
            f"grad_accum {grad_accum}: lower train.batch_size / train.grad_accum / train.workers.actors"
        )
    per_epoch = iters_per_epoch or per_epoch
    total = per_epoch * epochs
    return per_epoch, (min(total, max_steps) if max_steps else total)
