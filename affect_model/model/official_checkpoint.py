"""Official AffectGPT ``.pth`` checkpoints <-> emer checkpoint folders (``layout = "affectgpt"`` only).

The official code saves ``{'model': trainable tensors, 'optimizer', 'config', 'scaler', 'epoch'}``
with its module names; emer's names map one to one: ``heads.<name>`` <-> ``<name>`` (the attention
heads, ``affect_model.model.official``) and ``llm.<peft name>`` <-> ``llama_model.<peft name>`` (LoRA
``...layers.N.<module>.lora_{A,B}.default.weight``). The official model also owns ``image_llama_proj``
(single images), which its video task never uses: an import keeps it in ``official_extra.safetensors``
so an export gives it back unchanged; a model trained in emer exports it freshly initialised, as the
official model starts it (nn.Linear's default init, seeded), so the key set is the official one.

``expected_shapes(cfg)`` builds the model's trainable part on the meta device (no weights loaded,
no memory): the names and shapes a checkpoint must hold. Files are read with
``torch.load(weights_only=True)``: no pickled code runs.
"""

from __future__ import annotations

import json
import logging
import re

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from affect_model.model import encoders
from affect_model.model.affectgpt import wrap_llm
from affect_model.model.checkpoint import CONFIG_FILE, FORMAT, WEIGHTS_FILE, read_config, read_trainable
from affect_model.model.config import ModelConfig
from affect_model.model.official import OfficialHeads
from core import storage

log = logging.getLogger(__name__)

EXTRA_FILE = "official_extra.safetensors"
IMAGE_PROJ = ("image_llama_proj.weight", "image_llama_proj.bias")
_PREFIXES = (("heads.", ""), ("llm.", "llama_model."))


def to_official(name: str) -> str:
    """The official name of an emer trainable tensor."""
    for ours, theirs in _PREFIXES:
        if name.startswith(ours):
            return theirs + name[len(ours) :]
    raise ValueError(f"{name}: not a tensor of the affectgpt layout (no official name)")


def to_emer(name: str) -> str:
    """The emer name of an official tensor (the longest official prefix wins)."""
    for ours, theirs in sorted(_PREFIXES, key=lambda p: -len(p[1])):
        if name.startswith(theirs):
            return ours + name[len(theirs) :]
    raise ValueError(f"{name}: not an official AffectGPT tensor")


def _require_layout(cfg: ModelConfig) -> None:
    if cfg.layout != "affectgpt":
        raise ValueError(
            f"model.layout = {cfg.layout!r}: official checkpoints map onto model.layout = 'affectgpt' "
            "only (e.g. --config affectgpt-qwen25)"
        )


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """``{emer name: shape}`` of every trainable tensor of a model built from ``cfg``."""
    from transformers import AutoConfig, AutoModelForCausalLM

    _require_layout(cfg)
    with torch.device("meta"):
        llm = wrap_llm(AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(cfg.llm_model)), cfg)
        width = llm.get_input_embeddings().embedding_dim
        vw = encoders.vision_width(cfg.vision_model, cfg.vision_projection)
        heads = OfficialHeads(vw, encoders.audio_width(cfg.audio_model), width, cfg.fusion != "none")
    shapes = {f"heads.{n}": tuple(p.shape) for n, p in heads.named_parameters()}
    shapes.update({f"llm.{n}": tuple(p.shape) for n, p in llm.named_parameters() if p.requires_grad})
    return shapes


def official_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """``{official name: shape}``: the official model's trainable key set (with ``image_llama_proj``)."""
    shapes = {to_official(n): s for n, s in expected_shapes(cfg).items()}
    vw, width = shapes["affectgpt_proj.weight"][1], shapes["affectgpt_proj.weight"][0]
    shapes.update({IMAGE_PROJ[0]: (width, vw), IMAGE_PROJ[1]: (width,)})
    return shapes


def read_official(path: str) -> dict:
    """The official ``.pth`` (local or s3://) as plain data; refuses any pickled object by name."""
    import io
    import pickle

    data = storage.read_bytes(path)
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError) as err:
        found = re.search(r"(?:Unsupported global|GLOBAL)[: ]+(?:GLOBAL )?([\w.]+)", str(err))
        what = found.group(1) if found else str(err).splitlines()[0][:200]
        raise ValueError(
            f"{path}: holds an object torch.load(weights_only=True) will not load: {what}. Only tensors "
            "and plain containers are read (no pickled code runs); re-save the file with "
            "torch.save({'model': state_dict}) or pass the official checkpoint itself"
        ) from err
    if not isinstance(obj, dict) or not isinstance(obj.get("model"), dict):
        kind = type(obj).__name__ if not isinstance(obj, dict) else f"dict with keys {sorted(obj)[:5]}"
        raise ValueError(f"{path}: not an official AffectGPT checkpoint ({kind}; expected {{'model': ...}})")
    bad = [k for k, v in obj["model"].items() if not torch.is_tensor(v)]
    if bad:
        raise ValueError(f"{path}: 'model' holds non-tensors under {bad[:5]}")
    return obj


def check_state(state: dict[str, torch.Tensor], want: dict[str, tuple[int, ...]], source: str) -> None:
    """Refuse unknown, missing or misshapen keys, naming them."""
    unknown = sorted(set(state) - set(want))
    missing = sorted(set(want) - set(state))
    shapes = sorted(k for k in set(state) & set(want) if tuple(state[k].shape) != tuple(want[k]))
    problems = []
    if unknown:
        problems.append(f"{len(unknown)} unknown key(s): {', '.join(unknown[:8])}")
    if missing:
        problems.append(f"{len(missing)} missing key(s): {', '.join(missing[:8])}")
    if shapes:
        shown = [f"{k} {tuple(state[k].shape)} != {tuple(want[k])}" for k in shapes[:8]]
        problems.append(f"{len(shapes)} shape mismatch(es): {'; '.join(shown)}")
    if problems:
        raise ValueError(
            f"{source}: does not match the official model of this config ({' | '.join(problems)}); "
            "check model.* (LLM, encoders, lora_r, lora_targets, fusion) against the checkpoint's config"
        )


def import_official(path: str, cfg: ModelConfig, output: str) -> dict:
    """Convert the official checkpoint at ``path`` into an emer checkpoint folder ``output`` for
    ``cfg`` (a ``layout = "affectgpt"`` config); returns a summary."""
    obj = read_official(path)
    state = dict(obj["model"])
    check_state(state, official_shapes(cfg), path)
    ours = {to_emer(k): v.contiguous() for k, v in state.items() if k not in IMAGE_PROJ}
    extra = {k: state[k].contiguous() for k in IMAGE_PROJ}
    storage.makedirs(output)
    storage.write_bytes(storage.join(output, EXTRA_FILE), st_save(extra, metadata={"source": "official"}))
    storage.write_bytes(storage.join(output, WEIGHTS_FILE), st_save(ours, metadata={"format": FORMAT}))
    meta = {"format": FORMAT, "model": cfg.to_dict(), "trainable": sorted(ours), "imported_from": path}
    storage.write_text(storage.join(output, CONFIG_FILE), json.dumps(meta, indent=2, ensure_ascii=False))
    log.info("imported %d official tensors from %s into %s", len(state), path, output)
    return {"output": output, "tensors": len(state), "parameters": sum(t.numel() for t in state.values())}


def _image_proj(uri: str, shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    path = storage.join(uri, EXTRA_FILE)
    if storage.exists(path):
        return st_load(storage.read_bytes(path))
    width, vw = shapes[IMAGE_PROJ[0]]
    torch.manual_seed(0)
    fresh = nn.Linear(vw, width)
    log.warning("%s: no %s (trained in emer): image_llama_proj exported freshly initialised", uri, EXTRA_FILE)
    return {IMAGE_PROJ[0]: fresh.weight.detach(), IMAGE_PROJ[1]: fresh.bias.detach()}


def export_official(uri: str, output: str) -> dict:
    """Write the emer checkpoint folder ``uri`` as an official ``{'model': ...}`` ``.pth`` at ``output``."""
    import io

    cfg = read_config(uri)
    _require_layout(cfg)
    shapes = official_shapes(cfg)
    state = {to_official(k): v for k, v in read_trainable(uri).items()}
    state.update(_image_proj(uri, shapes))
    check_state(state, shapes, uri)
    buf = io.BytesIO()
    torch.save({"model": {k: state[k].contiguous() for k in sorted(state)}}, buf)
    storage.write_bytes(output, buf.getvalue())
    log.info("exported %d tensors from %s to %s", len(state), uri, output)
    return {"output": output, "tensors": len(state), "parameters": sum(t.numel() for t in state.values())}
