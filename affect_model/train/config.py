"""``TrainConfig``: the ``train`` section of the run config (stage, data, parallelism, optimiser, ...).

Defaults follow the AffectGPT paper where it says something (batch 3 per GPU, 100 epochs, only the
Q-Former trains) and common practice where it does not (AdamW, linear warm-up then cosine decay,
gradient clipping at 1.0, ZeRO stage 2, bf16). ``storage_path`` may be a local folder or ``s3://``.

``TrainRun``: the run config as training reads it. The application's ``emer.runconfig.RunConfig`` is
one (this package may not import it: ``pyproject.toml``'s import-linter layers), so it is described
by the sections training uses: ``model``, ``train`` and ``evaluate`` (whose ``llm`` extracts OV labels
for ``train.eval_extractor = llm``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from affect_model.model.config import ModelConfig
from core import storage
from core.config import Config, check_choice, check_range
from core.llm import LLMConfig
from core.resources import Resources


def _one_pool() -> Resources:
    return Resources(actors=1)


def fixed_pool_problems(key: str, pool: Resources) -> list[str]:
    """A Ray Train worker group or a job's actor pool here has a fixed size: ``actors`` >= 1."""
    if pool.actors >= 1:
        return []
    return [f"{key}.actors = {pool.actors}: must be >= 1 (this pool has a fixed size)"]


@dataclasses.dataclass(frozen=True)
class FeaturesConfig(Config):
    """``emer features``: run the frozen encoders once over a media table (keys ``train.features.*``)."""

    source_uri: str = ""  # media table (EMER-Coarse layout); "" = train.coarse_uri
    batch_size: int = 8
    pool: Resources = dataclasses.field(default_factory=_one_pool)  # the encoder actors (fixed size)
    dtype: str = "float32"  # stored precision: float32 (exact) or float16 (half the size)

    def problems(self) -> list[str]:
        out: list[str] = []
        check_range(out, "train.features.batch_size", self.batch_size, 1, None)
        out += fixed_pool_problems("train.features.pool", self.pool)
        check_choice(out, "train.features.dtype", self.dtype, ("float32", "float16"))
        return out


@dataclasses.dataclass(frozen=True)
class InferConfig(Config):
    """``emer infer``: batch generation from a trained checkpoint (keys ``train.infer.*``)."""

    checkpoint: str = ""  # run folder or weights folder; "" = <train.storage_path>/stage2
    input_uri: str = ""  # media (or cached features) table; "" = the one training would read
    split: str = "test"  # EMER-Fine split to describe (test/train/all), or "rows": every input row
    output_uri: str = ""  # Parquet (name, description); "" = <train.storage_path>/infer/<split>.parquet
    batch_size: int = 4
    pool: Resources = dataclasses.field(default_factory=_one_pool)  # the generating actors (fixed size)
    max_new_tokens: int = 0  # 0 = model.max_new_tokens
    question: str = "description"  # what the official prompt asks: description | ovlabel
    group_by_length: bool = True  # generate batches of similar prompt length (output order is kept)
    length_bucket_size: int = 8  # batches per length-sorted buffer (an actor's map batch)

    def problems(self) -> list[str]:
        out: list[str] = []
        check_choice(out, "train.infer.split", self.split, ("test", "train", "all", "rows"))
        check_choice(out, "train.infer.question", self.question, ("description", "ovlabel"))
        check_range(out, "train.infer.batch_size", self.batch_size, 1, None)
        out += fixed_pool_problems("train.infer.pool", self.pool)
        check_range(out, "train.infer.max_new_tokens", self.max_new_tokens, 0, None)
        check_range(out, "train.infer.length_bucket_size", self.length_bucket_size, 1, None)
        if self.output_uri and not self.output_uri.lower().endswith(".parquet"):
            out.append(f"train.infer.output_uri = {self.output_uri!r}: must end with .parquet")
        return out


@dataclasses.dataclass(frozen=True)
class TrainConfig(Config):
    """How to train AffectGPT on Ray Train (+ DeepSpeed). Every field has a default."""

    stage: int = 1  # 1 = EMER-Coarse, 2 = EMER-Fine train (initialised from stage 1)
    coarse_uri: str = ""  # EMER-Coarse table (Parquet file/folder written by `emer annotate`)
    fine_uri: str = ""  # EMER-Fine descriptions (CSV: name, english)
    fine_media_uri: str = ""  # EMER-Fine clips' media (EMER-Coarse layout); "" = coarse_uri
    fine_split_seed: int = 0  # the deterministic 266/66 EMER-Fine train/test split
    storage_path: str = "runs/train"  # checkpoints, curves, logs (local folder or s3://bucket/prefix)
    run_name: str = ""  # "" = "stage1" / "stage2"; the same name resumes the same run
    # Ray Train's workers: actors = how many, num_cpus / num_gpus / resources = what each asks
    workers: Resources = dataclasses.field(default_factory=_one_pool)
    batch_size: int = 3  # per worker and micro-step (the paper: 3 on one A100)
    grad_accum: int = 1
    materialize: bool = False  # small sets: read the rows once (Arrow), keep them in Ray's object store
    shuffle_buffer: int = 64  # rows in the per-worker shuffle window (seeded per epoch); 0 = data order
    group_by_length: bool = True  # batches of similar token length (less padding); seeded per epoch
    length_bucket_size: int = 50  # batches per length-sorted buffer of rows on each worker
    epochs: int = 100
    # the papers' epoch is a fixed number of iterations (AffectGPT: 1000; its later framework: 5000):
    # > 0 = an epoch is that many optimizer steps (cycling the data), 0 = one full pass over the data
    iters_per_epoch: int = 0
    max_steps: int = 0  # optimizer steps; 0 = run all epochs
    lr: float = 1e-4
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 100
    warmup_lr: float = 0.0  # lr at warm-up step 0 (official: 1e-6, rising to train.lr); 0 = lr/(warmup+1)
    cosine: bool = True  # False = constant after warm-up
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0  # 0 = off
    precision: str = "bf16"  # bf16 | fp16 | fp32
    strategy: str = "deepspeed"  # deepspeed | ddp (plain torch DDP, for comparison)
    zero_stage: int = 2
    activation_checkpointing: bool = False
    offload_optimizer: bool = False
    torch_adam: bool = False  # torch's AdamW inside DeepSpeed (no fused-op compile; CPU tests)
    checkpoint_every: int = 100  # optimizer steps between checkpoints; 0 = end of each epoch only
    keep_checkpoints: int = 2
    # the HMAC key that seals checkpoints (DeepSpeed's files are pickles): kept outside checkpoint
    # storage, in the variable this names (set on every node) or in checkpoint_key_file (wins if set)
    checkpoint_key_env: str = "EMER_CHECKPOINT_KEY"
    checkpoint_key_file: str = ""  # a local file holding the key, outside storage_path
    max_failures: int = 3  # worker failures survived (resume from the last checkpoint)
    init_from: str = ""  # trainable weights to start from (stage 2: stage 1's `weights/` folder or run)
    use_cached_features: bool = False  # read frozen-encoder outputs written by `emer features`
    features_uri: str = ""
    eval_each_epoch: bool = False  # generate on EMER-Fine test, extract OV labels, score
    eval_max_new_tokens: int = 0  # 0 = what `emer infer` uses (train.infer.max_new_tokens, else the model's)
    eval_limit: int = 0  # 0 = whole test split
    eval_extractor: str = "model"  # OV labels from descriptions: model (own LLM) | llm (evaluate.llm) | none
    eval_gt_uri: str = ""  # name + evaluate.labels_column (e.g. check-openset.csv); "" = the rows' labels
    log_every: int = 1
    tensorboard: bool = True  # event files (loss, lr, grad norm, samples/s, eval) in <run folder>/tensorboard
    mlflow: bool = False  # log the same scalars to MLflow (pip install 'emer[mlflow]')
    mlflow_tracking_uri: str = ""  # "" = MLflow's default ($MLFLOW_TRACKING_URI or ./mlruns)
    mlflow_experiment: str = "emer"
    seed: int = 0
    features: FeaturesConfig = dataclasses.field(default_factory=FeaturesConfig)
    infer: InferConfig = dataclasses.field(default_factory=InferConfig)

    def problems(self) -> list[str]:
        out: list[str] = []
        check_choice(out, "train.stage", self.stage, (1, 2))
        check_choice(out, "train.precision", self.precision, ("bf16", "fp16", "fp32"))
        check_choice(out, "train.strategy", self.strategy, ("deepspeed", "ddp"))
        check_choice(out, "train.zero_stage", self.zero_stage, (0, 1, 2, 3))
        check_choice(out, "train.eval_extractor", self.eval_extractor, ("model", "llm", "none"))
        if self.eval_each_epoch and self.zero_stage == 3 and self.strategy == "deepspeed":
            out.append(
                "train.eval_each_epoch = True: per-epoch generation is not supported with "
                "train.zero_stage = 3 (run `emer infer` on a checkpoint instead)"
            )
        if self.stage == 2 and not self.fine_uri:
            out.append("train.fine_uri = '': stage 2 trains on EMER-Fine; name its CSV (name, english)")
        out += fixed_pool_problems("train.workers", self.workers)
        for key in ("batch_size", "grad_accum", "epochs", "log_every", "keep_checkpoints"):
            check_range(out, f"train.{key}", getattr(self, key), 1, None)
        for key in (
            "max_steps",
            "iters_per_epoch",
            "shuffle_buffer",
            "warmup_steps",
            "checkpoint_every",
            "eval_limit",
            "eval_max_new_tokens",
        ):
            check_range(out, f"train.{key}", getattr(self, key), 0, None)
        check_range(out, "train.max_failures", self.max_failures, -1, None)
        check_range(out, "train.length_bucket_size", self.length_bucket_size, 1, None)
        check_range(out, "train.lr", self.lr, 0, None)
        check_range(out, "train.min_lr_ratio", self.min_lr_ratio, 0, 1)
        check_range(out, "train.warmup_lr", self.warmup_lr, 0, None)
        if self.warmup_lr > self.lr:
            out.append(f"train.warmup_lr = {self.warmup_lr}: must not exceed train.lr ({self.lr})")
        check_range(out, "train.weight_decay", self.weight_decay, 0, None)
        check_range(out, "train.grad_clip", self.grad_clip, 0, None)
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            out.append(f"train.betas = {list(self.betas)!r}: must be two numbers in [0, 1)")
        if self.use_cached_features and not self.features_uri:
            out.append(
                "train.features_uri = '': must be set when train.use_cached_features is true "
                "(the output of `emer features`)"
            )
        if self.offload_optimizer and self.strategy != "deepspeed":
            out.append("train.offload_optimizer = True: needs train.strategy = 'deepspeed'")
        out += self._key_file_problems()
        if self.strategy == "ddp" and self.precision == "fp16":
            out.append("train.precision = 'fp16': plain DDP here runs bf16 or fp32; use deepspeed for fp16")
        return out

    def _key_file_problems(self) -> list[str]:
        key_file, what = self.checkpoint_key_file, "train.checkpoint_key_file"
        if not key_file:
            return []
        if "://" in key_file:
            return [f"{what} = {key_file!r}: must be a local file on every node (not a URL)"]
        store = self.storage_path
        if "://" not in store and Path(key_file).expanduser().absolute().is_relative_to(
            Path(store).absolute()
        ):
            return [
                f"{what} = {key_file!r}: inside train.storage_path ({store}); a key stored with the "
                "checkpoints protects nothing: keep it outside (e.g. ~/.config/emer/checkpoint.key)"
            ]
        return []

    @property
    def use_gpu(self) -> bool:
        """Each worker holds GPUs (``train.workers.num_gpus`` > 0)."""
        return self.workers.num_gpus > 0

    @property
    def warmup_start_ratio(self) -> float:
        """``warmup_lr`` as a fraction of ``lr`` (0: the default ramp)."""
        return self.warmup_lr / self.lr if self.lr else 0.0

    @property
    def name(self) -> str:
        """The run's name under ``storage_path`` (the same name resumes)."""
        return self.run_name or f"stage{self.stage}"

    @property
    def eval_new_tokens(self) -> int:
        """New tokens per description in the per-epoch evaluation (0 = the model's ``max_new_tokens``)."""
        return self.eval_max_new_tokens or self.infer.max_new_tokens

    @property
    def run_uri(self) -> str:
        return storage.join(self.storage_path, self.name)


# scorer(gt_uri, pred_uri, extractor, labels_uri=...) -> metrics: the per-epoch evaluation's scoring, a
# callable the application passes in (``evaluation.runs.epoch_scorer``; training never imports evaluation)
Scorer = Callable[..., Mapping[str, float]]


class EvaluateSection(Protocol):
    """The ``evaluate`` section as training reads it."""

    @property
    def llm(self) -> LLMConfig: ...


class TrainRun(Protocol):
    """The run config as training reads it (``emer.runconfig.RunConfig`` is one)."""

    @property
    def model(self) -> ModelConfig: ...

    @property
    def train(self) -> TrainConfig: ...

    @property
    def evaluate(self) -> EvaluateSection: ...

    def replace(self, **changes: Any) -> TrainRun: ...
