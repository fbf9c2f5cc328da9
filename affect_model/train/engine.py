"""One training-engine interface over DeepSpeed (ZeRO 0-3) and plain torch DDP, for the Ray Train workers.

``make_engine(model, cfg, total_steps)`` returns an ``Engine`` whose ``micro_step(loss_fn, batch)`` does
forward + backward of one micro-batch (with gradient accumulation) and ``step()`` updates at an
accumulation boundary (AdamW, warm-up + cosine lr, gradient clipping). ``save``/``load`` write and read
this rank's share of the training state in a local folder (DeepSpeed: every rank its own ZeRO shard,
frozen parameters left out); ``trainable_state()`` gathers the full fp32 trainable weights on every rank.
Only this file imports DeepSpeed.

``save`` seals the folder last (``integrity.seal``: the sha256 of every file in it, so write any other
files there first, with an HMAC made with the run's checkpoint key) and ``load`` checks the HMAC and
those digests before it reads anything (``integrity.verify``). DeepSpeed's own files are pickles, so
its engine needs the key (``integrity.checkpoint_key``: kept outside checkpoint storage; missing is
an error when the engine is made): a manifest rewritten without it is refused before DeepSpeed
unpickles anything. The DDP state holds no pickled objects: the trainable weights are safetensors and
the optimizer / scheduler / step state a torch file of tensors and plain containers
(``plain_state``), read with ``weights_only=True``; it uses the key when one is set.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from affect_model.train.config import TrainConfig
from affect_model.train.ds_config import deepspeed_config
from affect_model.train.integrity import checkpoint_key, seal, verify
from affect_model.train.plain_state import load_plain, require_plain
from affect_model.train.schedule import make_scheduler, param_groups

log = logging.getLogger(__name__)
TAG = "state"  # DeepSpeed checkpoint tag inside a checkpoint folder
STATE_KEY = "emer_loop"  # the worker's step state in DeepSpeed's client_state (a saved name: kept)
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
DDP_WEIGHTS = "ddp_weights.safetensors"  # the DDP engine's trainable weights
DDP_STATE = "ddp_state.pt"  # its optimizer, scheduler and loop state: tensors and plain containers only


def _loss_of(output: Any) -> torch.Tensor:
    loss = output if torch.is_tensor(output) else getattr(output, "loss", None)
    if loss is None and isinstance(output, dict):
        loss = output.get("loss")
    if loss is None:
        raise TypeError(f"the model returned {type(output).__name__} without a loss")
    return loss


class Engine:
    """Common surface of the DeepSpeed and DDP engines a worker trains with (``train.worker``)."""

    module: torch.nn.Module  # the unwrapped model
    model: Callable  # what to call for a forward pass (the wrapper)
    micro: int = 0  # micro-steps done since the last optimizer step

    def __init__(self, cfg: TrainConfig, world_size: int, rank: int) -> None:
        self.cfg, self.world_size, self.rank = cfg, world_size, rank

    def is_boundary(self) -> bool:
        return (self.micro + 1) % self.cfg.grad_accum == 0

    def cast(self, batch: dict) -> dict:
        return batch

    def grad_norm(self) -> float:
        """The gradient norm (before clipping) of the last optimizer step; NaN when unknown."""
        return float("nan")

    # subclasses: micro_step, step, lr, save, load, trainable_state


class DeepSpeedEngine(Engine):
    def __init__(
        self,
        model: torch.nn.Module,
        cfg: TrainConfig,
        total_steps: int,
        world_size: int,
        rank: int,
        use_gpu: bool,
    ) -> None:
        import deepspeed

        super().__init__(cfg, world_size, rank)
        self.key = checkpoint_key(cfg, required=True)  # before any work: DeepSpeed's files are pickles
        config = deepspeed_config(cfg, world_size, use_gpu)

        def scheduler(opt):
            return make_scheduler(
                opt, cfg.warmup_steps, total_steps, cfg.cosine, cfg.min_lr_ratio, cfg.warmup_start_ratio
            )

        self.model, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model,
            model_parameters=param_groups(model, cfg.weight_decay),
            config=config,
            lr_scheduler=scheduler,
            dist_init_required=False,
        )
        self.module = self.model.module
        _drop_frozen_aliases(self.model)
        self.dtype = DTYPES[cfg.precision]

    def cast(self, batch: dict) -> dict:
        if self.dtype == torch.float32:
            return batch
        return {
            k: v.to(self.dtype) if torch.is_tensor(v) and v.is_floating_point() else v
            for k, v in batch.items()
        }

    def micro_step(self, loss_fn: Callable, batch: dict) -> float:
        loss = _loss_of(loss_fn(self.model, self.cast(batch)))
        self.model.backward(loss)
        return float(loss.detach().float())

    def step(self) -> bool:
        boundary = self.model.is_gradient_accumulation_boundary()
        self.model.step()
        self.micro = 0 if boundary else self.micro + 1
        return boundary

    def lr(self) -> float:
        return float(self.model.get_lr()[0])

    def grad_norm(self) -> float:
        norm = self.model.get_global_grad_norm()
        return float("nan") if norm is None else float(norm)

    def save(self, local_dir: str, client_state: dict) -> None:
        self.model.save_checkpoint(
            local_dir,
            tag=TAG,
            client_state={STATE_KEY: client_state},
            save_latest=True,
            exclude_frozen_parameters=True,
        )
        seal(local_dir, self.rank, self.key)

    def load(self, local_dir: str) -> dict:
        verify(local_dir, self.key)  # DeepSpeed unpickles its files: only those this run sealed, unchanged
        path, client_state = self.model.load_checkpoint(local_dir, tag=TAG, load_module_strict=False)
        if path is None:
            raise FileNotFoundError(f"{local_dir}: no DeepSpeed checkpoint '{TAG}' in it")
        return dict((client_state or {}).get(STATE_KEY, {}))

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Full fp32 trainable weights (collective under ZeRO: call on every rank)."""
        from deepspeed.utils import safe_get_full_fp32_param

        out = {}
        for name, param in self.module.named_parameters():
            if not param.requires_grad:
                continue
            full = safe_get_full_fp32_param(param)
            out[name] = (full if full is not None else param.detach()).float().cpu().clone()
        return out


def _drop_frozen_aliases(engine) -> None:
    """DeepSpeed's ``exclude_frozen_parameters`` drops frozen weights found by ``named_parameters()``,
    which names a tied weight once: a frozen LLM's tied ``lm_head`` (its whole vocabulary matrix, 113 MB
    of SmolLM2's) stayed in every checkpoint. Every frozen name is dropped, tied aliases included."""
    named = engine.module.named_parameters(remove_duplicate=False)
    frozen = {name for name, param in named if not param.requires_grad}
    base = engine.module_state_dict

    def module_state_dict(*args, exclude_frozen_parameters: bool = False, **kwargs):
        sd = base(*args, exclude_frozen_parameters=exclude_frozen_parameters, **kwargs)
        if exclude_frozen_parameters:
            for name in frozen & set(sd):
                del sd[name]
        return sd

    engine.module_state_dict = module_state_dict


class DDPEngine(Engine):
    def __init__(
        self,
        model: torch.nn.Module,
        cfg: TrainConfig,
        total_steps: int,
        world_size: int,
        rank: int,
        device: torch.device,
    ) -> None:
        super().__init__(cfg, world_size, rank)
        self.key = checkpoint_key(cfg, required=False)  # pickle-free files: the key is optional
        self.module = model.to(device)
        ids = [device.index] if device.type == "cuda" and device.index is not None else None
        self.model = (
            torch.nn.parallel.DistributedDataParallel(self.module, device_ids=ids)
            if world_size > 1
            else self.module
        )
        self.trainable = [p for p in self.module.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            param_groups(self.module, cfg.weight_decay), lr=cfg.lr, betas=tuple(cfg.betas), eps=1e-8
        )
        self.scheduler = make_scheduler(
            self.optimizer,
            cfg.warmup_steps,
            total_steps,
            cfg.cosine,
            cfg.min_lr_ratio,
            cfg.warmup_start_ratio,
        )
        self.device = device

    def _autocast(self):
        if self.cfg.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def micro_step(self, loss_fn: Callable, batch: dict) -> float:
        sync = self.is_boundary() or self.world_size == 1
        ctx = contextlib.nullcontext() if sync else self.model.no_sync()
        with ctx:
            with self._autocast():
                loss = _loss_of(loss_fn(self.model, batch))
            (loss / self.cfg.grad_accum).backward()
        return float(loss.detach().float())

    def step(self) -> bool:
        if not self.is_boundary():
            self.micro += 1
            return False
        clip = self.cfg.grad_clip if self.cfg.grad_clip > 0 else float("inf")  # inf: measure, no clipping
        self._grad_norm = float(torch.nn.utils.clip_grad_norm_(self.trainable, clip))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.micro = 0
        return True

    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    def grad_norm(self) -> float:
        return getattr(self, "_grad_norm", float("nan"))

    def save(self, local_dir: str, client_state: dict) -> None:
        if self.rank != 0:
            return
        os.makedirs(local_dir, exist_ok=True)
        names = self._trainable_names()
        own = self.module.state_dict()
        weights = {k: v.detach().cpu().contiguous() for k, v in own.items() if k in names}
        save_file(weights, os.path.join(local_dir, DDP_WEIGHTS))
        state = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "client_state": dict(client_state),
        }
        require_plain(state, DDP_STATE)
        torch.save(state, os.path.join(local_dir, DDP_STATE))
        seal(local_dir, self.rank, self.key)

    def load(self, local_dir: str) -> dict:
        verify(local_dir, self.key)
        weights = load_file(os.path.join(local_dir, DDP_WEIGHTS))
        missing = self._trainable_names() - set(weights)
        if missing:
            raise ValueError(f"{local_dir}: checkpoint lacks trainable weights {sorted(missing)[:5]}")
        state = load_plain(os.path.join(local_dir, DDP_STATE))
        self.module.load_state_dict(weights, strict=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        return dict(state["client_state"])

    def _trainable_names(self) -> set[str]:
        return {n for n, p in self.module.named_parameters() if p.requires_grad}

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {
            n: p.detach().float().cpu().clone() for n, p in self.module.named_parameters() if p.requires_grad
        }


def make_engine(
    model: torch.nn.Module,
    cfg: TrainConfig,
    total_steps: int,
    world_size: int,
    rank: int,
    device: torch.device,
) -> Engine:
    if cfg.strategy == "deepspeed":
        if cfg.zero_stage == 3 and cfg.activation_checkpointing:
            log.warning(
                "ZeRO-3 with activation checkpointing and frozen parameters has crashed in DeepSpeed "
                "(PR #8130); use train.zero_stage=2 if it does"
            )
        return DeepSpeedEngine(model.to(device), cfg, total_steps, world_size, rank, device.type == "cuda")
    return DDPEngine(model, cfg, total_steps, world_size, rank, device)
