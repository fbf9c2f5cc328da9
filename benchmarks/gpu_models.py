"""The models and batches ``benchmarks/gpu_train.py`` measures: named layouts, random-weight towers, and
synthetic EMER-like batches. Imports only model code (``affect_model.model``, ``core``), never the
training package (Ray, DeepSpeed), so it runs on a bare CUDA image.

A layout is a name, the YAML presets it composes (``configs/``, the only copy of the papers' settings;
composed by ``core.config``, no application code) plus dotted overrides, and the switches a CPU dry run
copies onto the tiny debug config. Real-size towers come from the configs table in
``affect_model.model.flops`` (Qwen2.5-7B, Vicuna-7B, CLIP ViT-L/14, HuBERT-large: written in the code,
nothing is downloaded), saved as config-only folders; ``random_weights`` makes ``from_pretrained`` build
them from the config with random weights, directly on the current device (``torch.device`` context) in the
requested dtype.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from affect_model.model import encoders, flops
from affect_model.model.affectgpt import AffectGPT
from affect_model.model.config import ModelConfig, debug_config
from affect_model.model.families import audio_family
from affect_model.model.prompt import IGNORE, SLOT_TEXT, PromptBuilder
from core.config import compose
from core.llm.tiny import build_tiny_tokenizer

# EMER-like answer lengths (descriptions of clues and emotions): log-normal, clipped, seeded.
ANSWER_LENGTHS = {"kind": "lognormal", "median_tokens": 200, "sigma": 0.6, "min": 30, "max": 700, "seed": 0}
SUBTITLE = (
    "I really did not expect you to come back today, and honestly I do not know what to say to you "
    "after everything that happened between us last week."
)


CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def preset(*names: str, overrides: tuple[str, ...] = ()) -> ModelConfig:
    """The ``model`` section of the composed YAML presets ``names`` (``configs/NAME.yaml``) plus dotted
    ``overrides`` such as ``model.layout=qformer``."""
    data, _ = compose([CONFIGS / f"{name}.yaml" for name in names], overrides)
    return ModelConfig.from_dict(data.get("model") or {}, source="+".join(names))


@dataclasses.dataclass(frozen=True)
class Layout:
    """One model configuration to measure: the presets it composes and dotted ``overrides``.
    ``switches``: the preset's fields a CPU dry run copies onto the tiny debug config (sizes and towers
    stay tiny there)."""

    name: str
    configs: tuple[str, ...]
    overrides: tuple[str, ...] = ()
    switches: tuple[str, ...] = ("fusion", "lora", "chat_format")

    def preset(self) -> ModelConfig:
        return preset(*self.configs, overrides=self.overrides)


# The official layout's Qwen2.5-7B towers in the Q-Former layout (the pre-#25 pre-fusion preset).
_QFORMER_QWEN = ("model.layout=qformer", "model.chat_format=auto", "model.target=description")
_QFORMER_QWEN += ("model.media_sampling=emer", "model.vision_projection=false", "model.do_sample=false")
_QFORMER_QWEN += ("model.encoder_dtype=bfloat16", "model.llm_dtype=bfloat16")
LAYOUTS = (
    Layout("qformer/vicuna-7b/stage1", ("stage1",)),
    Layout("qformer/qwen2.5-7b/prefusion", ("stage1", "affectgpt-qwen25"), _QFORMER_QWEN),
    Layout(
        "affectgpt/qwen2.5-7b/official",
        ("stage1", "affectgpt-qwen25"),
        ("model.encoder_dtype=bfloat16", "model.llm_dtype=bfloat16"),  # bf16 like every layout here
        switches=("layout", "fusion", "lora"),
    ),
)


def layout_names() -> list[str]:
    return [layout.name for layout in LAYOUTS]


def model_config(layout: Layout, root: Path, real: bool, layers: int = 0) -> ModelConfig:
    """The layout's config with activation checkpointing on: real-size towers as config-only folders
    under ``root`` (random weights; ``layers``: every tower cut to that depth, a cheap check of the
    real-size path), or the tiny debug towers (HuBERT audio, like the real ones)."""
    preset = layout.preset()
    if not real:
        switches = {key: getattr(preset, key) for key in layout.switches}
        return debug_config(root / "tiny", audio_kind="hubert", gradient_checkpointing=True, **switches)
    paths = {}
    for key in ("vision_model", "audio_model", "llm_model"):
        name = getattr(preset, key)
        folder = root / (name.replace("/", "--") + (f"-{layers}-layers" if layers else ""))
        if not (folder / "config.json").is_file():
            tower = flops.model_config(name)
            if layers:  # rebuilt, so that what depends on the depth (Qwen2's layer_types) follows
                spec = {**tower.to_dict(), "num_hidden_layers": layers}
                spec.pop("layer_types", None)
                tower = type(tower).from_dict(spec)
            tower.save_pretrained(folder)
        paths[key] = str(folder)
    tokenizer = build_tiny_tokenizer(root / "tokenizer")
    return preset.replace(tokenizer=tokenizer, gradient_checkpointing=True, **paths)


@contextlib.contextmanager
def random_weights() -> Iterator[None]:
    """Inside: every ``from_pretrained`` builds the architecture from its config (the ``config`` passed, else
    the folder's) with random weights (seeded by the path), on the current default device, in the dtype
    asked for."""
    import transformers
    from transformers.models.auto.auto_factory import _BaseAutoModelClass

    def seeded(build, path, config=None):
        with torch.random.fork_rng():
            torch.manual_seed(zlib.crc32(str(path).encode()))
            return build(config if config is not None else transformers.AutoConfig.from_pretrained(path))

    def model_from_config(cls, path, *args, dtype=None, config=None, **kwargs):
        return seeded(lambda c: cls._from_config(c, dtype=dtype), path, config)

    def auto_from_config(cls, path, *args, dtype=None, config=None, **kwargs):
        return seeded(lambda c: cls.from_config(c, dtype=dtype), path, config)

    saved = (
        transformers.PreTrainedModel.__dict__["from_pretrained"],
        _BaseAutoModelClass.__dict__["from_pretrained"],
    )
    transformers.PreTrainedModel.from_pretrained = classmethod(model_from_config)
    _BaseAutoModelClass.from_pretrained = classmethod(auto_from_config)
    try:
        yield
    finally:
        transformers.PreTrainedModel.from_pretrained, _BaseAutoModelClass.from_pretrained = saved


def build(cfg: ModelConfig, device: torch.device) -> AffectGPT:
    """AffectGPT with random weights, built on ``device``: frozen towers in the config's dtypes, the
    trained parts (Q-Formers, projections, fusion, LoRA) in float32 (AMP trains them under autocast)."""
    with random_weights(), torch.device(device):
        torch.manual_seed(0)
        return AffectGPT(cfg)


def parameter_counts(model: AffectGPT) -> dict[str, int]:
    def count(module) -> int:
        return 0 if module is None else sum(p.numel() for p in module.parameters())

    lora = sum(p.numel() for n, p in model.llm.named_parameters() if "lora_" in n)
    return {
        "trainable": sum(p.numel() for p in model.trainable_parameters()),
        "lora": lora,
        "llm_frozen": count(model.llm) - lora,
        "vision": count(model.vision),
        "audio": count(model.audio),
    }


# ---------------------------------------------------------------- batches


def answer_lengths(n: int, rng: np.random.Generator, worst: bool = False) -> list[int]:
    """``n`` answer lengths (tokens, with the eos) from ``ANSWER_LENGTHS``; ``worst``: all at its max."""
    d = ANSWER_LENGTHS
    if worst:
        return [d["max"]] * n
    raw = rng.lognormal(math.log(d["median_tokens"]), d["sigma"], n)
    return [int(x) for x in np.clip(np.round(raw), d["min"], d["max"])]


def length_summary(samples: int = 10000) -> dict:
    """The distribution and what a draw of ``samples`` lengths from it looks like."""
    drawn = np.array(answer_lengths(samples, np.random.default_rng(ANSWER_LENGTHS["seed"])))
    stats = {
        "mean": float(drawn.mean()),
        "p50": float(np.median(drawn)),
        "p90": float(np.percentile(drawn, 90)),
    }
    return {**ANSWER_LENGTHS, "drawn": {k: round(v, 1) for k, v in stats.items()}}


class Batches:
    """Synthetic model batches for a built ``AffectGPT``: the real prompt (``PromptBuilder``, slots
    included) with random answer ids of EMER-like lengths, and random media or cached features."""

    def __init__(self, model: AffectGPT, device: torch.device) -> None:
        cfg = model.config
        self.cfg, self.device = cfg, device
        self.prompt = PromptBuilder(cfg, model.tokenizer).encode(SUBTITLE)
        self.eos, self.pad = model.tokenizer.eos_token_id, model.tokenizer.pad_token_id
        # answer ids: ordinary tokens the LLM embeds (the official prompt's added tokens lie past the
        # embedding table: they only mark slots, which features replace)
        self.vocab = min(len(model.tokenizer), model.llm.get_input_embeddings().num_embeddings)
        self.budget = PromptBuilder(cfg, model.tokenizer).answer_budget(len(self.prompt["input_ids"]))
        vcfg = flops.model_config(cfg.vision_model)
        self.vision = getattr(vcfg, "vision_config", None) or vcfg
        # cached video features: CLIP's image features (projection_dim) in the official layout
        self.vision_width = encoders.vision_width(cfg.vision_model, cfg.vision_projection)
        self.audio = flops.audio_tower(cfg)

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt["input_ids"])

    def text(self, lengths: list[int], gen: torch.Generator) -> dict[str, torch.Tensor]:
        """Right-padded rows of the prompt + a random answer of each length (0: the prompt alone)."""
        rows = []
        for n in lengths:
            answer = []
            if n:
                answer = torch.randint(0, self.vocab, (min(n - 1, self.budget),), generator=gen).tolist()
                answer.append(self.eos)
            ids = self.prompt["input_ids"] + answer
            rows.append(
                (ids, self.prompt["labels"] + answer, self.prompt["slot_ids"] + [SLOT_TEXT] * len(answer))
            )
        return _pad(rows, self.pad if self.pad is not None else self.eos)

    def media(self, n: int, cached: bool, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """Random encoder inputs (``pixel_values``, ``audio_features``) or cached encoder outputs."""
        cfg, out = self.cfg, {}
        if cfg.use_video:
            out["frame_mask"] = torch.ones(n, cfg.frames, dtype=torch.bool)
            if cached:
                tokens = 1 if cfg.video_tokens == "pooled" else flops.vision_tower(self.vision)[1]
                out["video_embeds"] = torch.randn(n, cfg.frames, tokens, self.vision_width, generator=gen)
            else:
                size = self.vision.image_size
                out["pixel_values"] = torch.randn(n, cfg.frames, 3, size, size, generator=gen)
        if cfg.use_audio:
            out["clip_mask"] = torch.ones(n, cfg.audio_clips, dtype=torch.bool)
            if cached:
                tokens = self.audio["tokens"] // cfg.audio_clips
                out["audio_embeds"] = torch.randn(
                    n, cfg.audio_clips, tokens, self.audio["width"], generator=gen
                )
            else:
                out["audio_features"] = torch.randn(n, cfg.audio_clips, *self._audio_input(), generator=gen)
        return out

    def _audio_input(self) -> tuple[int, ...]:
        acfg = flops.model_config(self.cfg.audio_model)
        return audio_family(acfg.model_type).input_size(acfg, self.cfg)

    def make(self, n: int, cached: bool, seed: int, worst: bool = False, answers: bool = True) -> dict:
        """One model batch of ``n`` rows on the device (``answers`` False: prompt only, for generation)."""
        gen = torch.Generator().manual_seed(seed)
        lengths = answer_lengths(n, np.random.default_rng(seed), worst) if answers else [0] * n
        batch = {**self.text(lengths, gen), **self.media(n, cached, gen)}
        return {k: v.to(self.device) for k, v in batch.items()}


def _pad(rows: list[tuple[list[int], list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    longest = max(len(ids) for ids, _, _ in rows)
    out = {
        "input_ids": torch.full((len(rows), longest), pad_id, dtype=torch.long),
        "labels": torch.full((len(rows), longest), IGNORE, dtype=torch.long),
        "slot_ids": torch.zeros(len(rows), longest, dtype=torch.long),
        "attention_mask": torch.zeros(len(rows), longest, dtype=torch.long),
    }
    for i, (ids, labels, slots) in enumerate(rows):
        n = len(ids)
        out["input_ids"][i, :n] = torch.tensor(ids)
        out["labels"][i, :n] = torch.tensor(labels)
        out["slot_ids"][i, :n] = torch.tensor(slots)
        out["attention_mask"][i, :n] = 1
    return out
