"""``AffectGPTTask``: what the Ray Train loop, the feature job and batch inference need from AffectGPT.

The loop itself (``affect_model.train.loop``) is model-agnostic: it builds the module, turns Ray Data batches
(dicts of numpy columns) into model batches, computes the loss, generates for evaluation and saves /
loads trainable weights only through a task object. The task holds configs only, so it pickles cheaply
to Ray workers; heavy state (tokenizer, media processor) is built once per process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

from affect_model.model.affectgpt import AffectGPT
from affect_model.model.checkpoint import load_trainable, save_pretrained
from affect_model.model.config import ModelConfig
from affect_model.train.config import TrainConfig
from affect_model.train.data import MediaProcessor, SampleEncoder, collate
from core.stage import numpy_rows

log = logging.getLogger(__name__)
FEATURE_COLUMNS = ("video_embeds", "frame_mask", "audio_embeds", "clip_mask")
RAW_COLUMNS = ("frames", "audio")


class _WeightsView:
    """What ``checkpoint.save_pretrained`` reads from a model, with weights gathered by the engine."""

    def __init__(self, config: ModelConfig, state: dict[str, torch.Tensor]) -> None:
        self.config = config
        self._state = state

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        return self._state


class AffectGPTTask:
    """AffectGPT as seen by the training loop. ``cached``: rows carry frozen-encoder outputs
    (``video_embeds`` / ``audio_embeds``), so the encoders are not even loaded."""

    def __init__(
        self, model_cfg: ModelConfig, cached: bool = False, seed: int = 0, question: str = "description"
    ) -> None:
        self.model_cfg = model_cfg
        self.cached = cached
        self.seed = seed  # the hybrid target's draws (model.target = hybrid)
        self.question = question  # what prompt-only batches ask (the official prompt only)
        self._encoder = None

    def build(self, activation_checkpointing: bool = False) -> torch.nn.Module:
        cfg = self.model_cfg
        if activation_checkpointing and not cfg.gradient_checkpointing:
            cfg = cfg.replace(gradient_checkpointing=True)
        return AffectGPT(cfg, load_encoders=not self.cached)

    def _sample_encoder(self, module):
        if self._encoder is None:
            media = None if self.cached else MediaProcessor(self.model_cfg)
            self._encoder = SampleEncoder(
                self.model_cfg, module.tokenizer, media, seed=self.seed, question=self.question
            )
        return self._encoder

    def collate(
        self, module, batch: dict[str, Any], with_answer: bool = True, count_truncated: bool = False
    ) -> dict:
        """The model batch of a Ray Data batch; ``count_truncated``: add ``truncated`` (how many answers
        were cut to fit ``max_answer_tokens`` / ``max_length``), which the caller pops before the model."""
        encode = self._sample_encoder(module)
        items = [encode(row, with_answer=with_answer) for row in numpy_rows(batch)]
        pad = module.tokenizer.pad_token_id
        out = collate(
            items,
            pad if pad is not None else module.tokenizer.eos_token_id,
            padding_side="right" if with_answer else "left",
        )
        if count_truncated:
            out["truncated"] = sum(int(it.get("truncated", 0)) for it in items)
        return out

    def lengths(self, module, batch: dict[str, Any], with_answer: bool = True) -> list[int]:
        """Token length of each row's text part (what ``collate`` pads), for length-grouped batching."""
        encode = self._sample_encoder(module)
        texts = {k: v for k, v in batch.items() if k not in FEATURE_COLUMNS + RAW_COLUMNS}  # no media copies
        return [encode.text_length(row, with_answer=with_answer) for row in numpy_rows(texts)]

    @staticmethod
    def loss(model: Callable, batch: dict) -> Any:
        return model(**batch)

    @staticmethod
    def generate(module, batch: dict, max_new_tokens: int) -> list[str]:
        return module.generate(**batch, max_new_tokens=max_new_tokens)

    def save_weights(self, state: dict[str, torch.Tensor], uri: str) -> None:
        save_pretrained(_WeightsView(self.model_cfg, state), uri)

    @staticmethod
    def load_weights(module, uri: str) -> None:
        load_trainable(module, uri)
        log.info("trainable weights loaded from %s", uri)

    def label_extractor(self, module, max_new_tokens: int = 48) -> Callable[[list[str]], list[str]]:
        """``complete(prompts) -> answers`` with the model's own (frozen) LLM, text only: the OV-label
        extraction step of evaluation without any outside service."""
        tok = module.tokenizer

        def complete(prompts: list[str]) -> list[str]:
            answers = []
            llm = module.llm
            for prompt in prompts:
                if getattr(tok, "chat_template", None):
                    text = tok.apply_chat_template(
                        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
                    )
                else:
                    text = f"USER: {prompt}\nASSISTANT:"
                ids = tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
                ids = ids.to(next(llm.parameters()).device)
                with torch.no_grad():
                    out = llm.generate(
                        input_ids=ids,
                        attention_mask=torch.ones_like(ids),
                        do_sample=False,
                        max_new_tokens=max_new_tokens,
                        pad_token_id=tok.pad_token_id,
                    )
                answers.append(tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip())
            return answers

        return complete


def _absolute(value: str) -> str:
    from pathlib import Path

    if value and "://" not in value and Path(value).exists() and not Path(value).is_absolute():
        return str(Path(value).absolute())
    return value


def absolute_paths(
    model_cfg: ModelConfig | None, train_cfg: TrainConfig
) -> tuple[ModelConfig | None, TrainConfig]:
    """Local relative paths made absolute on the driver: Ray workers run in other folders."""
    from pathlib import Path

    if model_cfg is not None:
        keys = ("vision_model", "audio_model", "llm_model", "tokenizer")
        model_cfg = model_cfg.replace(**{k: _absolute(getattr(model_cfg, k)) for k in keys})
    keys = (
        "coarse_uri",
        "fine_uri",
        "fine_media_uri",
        "features_uri",
        "init_from",
        "eval_gt_uri",
        "checkpoint_key_file",
    )
    changes = {k: _absolute(getattr(train_cfg, k)) for k in keys}
    if "://" not in train_cfg.storage_path:
        changes["storage_path"] = str(Path(train_cfg.storage_path).absolute())
    fc, ic = train_cfg.features, train_cfg.infer
    changes["features"] = fc.replace(source_uri=_absolute(fc.source_uri))
    changes["infer"] = ic.replace(
        checkpoint=_absolute(ic.checkpoint),
        input_uri=_absolute(ic.input_uri),
        output_uri=ic.output_uri
        if "://" in ic.output_uri or not ic.output_uri
        else str(Path(ic.output_uri).absolute()),
    )
    return model_cfg, train_cfg.replace(**changes)


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
