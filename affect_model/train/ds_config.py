"""The DeepSpeed JSON config of a ``train`` section: micro-batch and accumulation, AdamW, ZeRO stage and
offload, gradient clipping, precision. The lr schedule is not in it: ``engine.DeepSpeedEngine`` passes
``schedule.make_scheduler`` to ``deepspeed.initialize``, the same schedule plain DDP steps.
"""

from __future__ import annotations

from typing import Any

from affect_model.train.config import TrainConfig


def deepspeed_config(cfg: TrainConfig, world_size: int, use_gpu: bool) -> dict:
    """The DeepSpeed JSON config for ``cfg`` (the scheduler is passed separately: see ``make_engine``)."""
    zero: dict[str, Any] = {"stage": cfg.zero_stage}
    if cfg.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = False
    if cfg.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": bool(use_gpu)}
    opt_params: dict[str, Any] = {
        "lr": cfg.lr,
        "betas": list(cfg.betas),
        "eps": 1e-8,
        "weight_decay": cfg.weight_decay,
    }
    if cfg.torch_adam:
        opt_params["torch_adam"] = True
    ds: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "train_batch_size": cfg.batch_size * cfg.grad_accum * world_size,
        "optimizer": {"type": "AdamW", "params": opt_params},
        "zero_optimization": zero,
        "gradient_clipping": cfg.grad_clip,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if cfg.offload_optimizer and cfg.torch_adam:
        ds["zero_force_ds_cpu_optimizer"] = False
    if cfg.precision == "bf16":
        ds["bf16"] = {"enabled": True}
    elif cfg.precision == "fp16":
        ds["fp16"] = {"enabled": True, "initial_scale_power": 16, "loss_scale_window": 100}
    return ds
