"""Save and load AffectGPT checkpoints: only the trainable weights plus the config, local or s3://.

A checkpoint folder holds ``affectgpt_config.json`` (the ``ModelConfig``, whose frozen parts are
Hugging Face ids / paths, never copies) and ``trainable.safetensors`` (Q-Formers, fusion,
projections and LoRA adapters). All I/O goes through ``core.storage``; no pickle is involved.
"""

from __future__ import annotations

import json
import logging

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from affect_model.model.affectgpt import AffectGPT
from affect_model.model.config import ModelConfig
from core import storage

log = logging.getLogger(__name__)

CONFIG_FILE = "affectgpt_config.json"
WEIGHTS_FILE = "trainable.safetensors"
FORMAT = "emer-affectgpt/1"


def save_pretrained(model, uri: str) -> None:
    """Write the trainable weights, then the config (written last: a folder with a config is complete)."""
    state = {name: t.detach().to("cpu").contiguous() for name, t in model.trainable_state_dict().items()}
    storage.makedirs(uri)
    storage.write_bytes(storage.join(uri, WEIGHTS_FILE), st_save(state, metadata={"format": FORMAT}))
    meta = {"format": FORMAT, "model": model.config.to_dict(), "trainable": sorted(state)}
    storage.write_text(storage.join(uri, CONFIG_FILE), json.dumps(meta, indent=2, ensure_ascii=False))
    log.info(
        "saved %d trainable tensors (%d parameters) to %s",
        len(state),
        sum(t.numel() for t in state.values()),
        uri,
    )


def read_config(uri: str) -> ModelConfig:
    path = storage.join(uri, CONFIG_FILE)
    if not storage.exists(path):
        raise FileNotFoundError(
            f"{uri}: not an AffectGPT checkpoint (no {CONFIG_FILE}); pass a folder written by save_pretrained"
        )
    meta = json.loads(storage.read_text(path))
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    return ModelConfig.from_dict(meta["model"], source=path)


def read_trainable(uri: str) -> dict[str, torch.Tensor]:
    return st_load(storage.read_bytes(storage.join(uri, WEIGHTS_FILE)))


def load_trainable(model, uri: str, strict: bool = True) -> list[str]:
    """Copy a checkpoint's trainable weights into ``model`` (e.g. stage 2 starting from stage 1).
    ``strict``: the checkpoint must hold exactly the model's trainable tensors. Returns the model's
    trainable names the checkpoint did not hold (only possible with ``strict=False``)."""
    saved = read_trainable(uri)
    own = dict(model.named_trainable_parameters())
    unknown = sorted(set(saved) - set(own))
    missing = sorted(set(own) - set(saved))
    if unknown or (strict and missing):
        raise ValueError(
            f"{uri}: trainable weights do not match this model ({len(unknown)} unknown, e.g. "
            f"{unknown[:3]}; {len(missing)} missing, e.g. {missing[:3]}); build the model with the "
            "checkpoint's config (from_pretrained) or pass strict=False"
        )
    with torch.no_grad():
        for name, tensor in saved.items():
            param = own[name]
            if param.shape != tensor.shape:
                raise ValueError(
                    f"{uri}: {name} has shape {tuple(tensor.shape)}, the model {tuple(param.shape)}"
                )
            param.copy_(tensor.to(param.dtype))
    return missing


def from_pretrained(uri: str, load_encoders: bool = True, tokenizer=None, **config_changes):
    """Rebuild the model from its config (frozen parts loaded from their ids / paths) and load the
    trainable weights. ``config_changes`` may override fields that do not change the weights' shapes
    (e.g. ``llm_dtype``, ``max_new_tokens``)."""

    cfg = read_config(uri)
    if config_changes:
        cfg = cfg.replace(**config_changes)
    model = AffectGPT(cfg, tokenizer=tokenizer, load_encoders=load_encoders)
    load_trainable(model, uri)
    return model
