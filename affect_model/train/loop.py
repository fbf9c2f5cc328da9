"""Training AffectGPT with Ray Train, the driver's side: ``run_training`` (every worker runs
``affect_model.train.worker.train_loop``).

The driver builds the stage's Ray Datasets (EMER-Coarse, or the EMER-Fine train split; raw media or
cached encoder features) and a ``TorchTrainer`` whose workers each get the run's ``TrainJob``
(``affect_model.train.job``: a frozen dataclass, bound to ``train_loop``) and read their shard
through ``ray.train.get_dataset_shard``. Every worker runs DeepSpeed (ZeRO 2 by default) or plain DDP
via ``affect_model.train.engine``. Checkpoints go to ``train.storage_path/<run name>`` (local or
s3://): every rank writes its own DeepSpeed shard, rank 0 adds the trainable weights (``weights/``)
and the history, and every rank seals its files with digests last; Ray merges them into one
checkpoint folder, which loads only if every file matches (``affect_model.train.integrity``). A run
resumes from its latest checkpoint after a worker failure (``FailureConfig``) and when the same
command runs again (same name + storage path), but only with the output-affecting settings it was
started with (``affect_model.train.resume``; a rerun that changed one is refused before config.yaml
is rewritten).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import signal
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from affect_model.model.checkpoint import CONFIG_FILE
from affect_model.train.config import Scorer, TrainConfig, TrainRun
from affect_model.train.datasets import eval_dataset, train_dataset
from affect_model.train.integrity import checkpoint_key
from affect_model.train.job import TrainJob
from affect_model.train.resume import check_run_folder, run_record
from affect_model.train.schedule import total_optimizer_steps
from affect_model.train.task import AffectGPTTask, absolute_paths
from affect_model.train.tracking import check_tracking
from affect_model.train.worker import WEIGHTS_DIR, train_loop
from core import storage
from core.runtime import runtime_env_for, worker_env

if TYPE_CHECKING:  # Ray is imported where it runs (the driver and the trainer task)
    from ray.data import Dataset
    from ray.train.torch import TorchTrainer

log = logging.getLogger(__name__)


def resolve_weights(uri: str, key: str = "train.init_from") -> str:
    """A folder written by ``save_pretrained``: ``uri`` itself or its ``weights/`` (a finished run)."""

    for candidate in (uri, storage.join(uri, WEIGHTS_DIR)):
        if storage.exists(storage.join(candidate, CONFIG_FILE)):
            return candidate
    raise FileNotFoundError(
        f"{key} = {uri!r}: neither it nor {WEIGHTS_DIR}/ inside it holds trainable "
        "weights; pass a training run folder (e.g. runs/train/stage1) or its weights/"
    )


def run_training(
    run_cfg: TrainRun,
    task: AffectGPTTask | None = None,
    extra_env: dict[str, str] | None = None,
    scorer: Scorer | None = None,
) -> dict[str, Any]:
    """Train the ``train`` section's stage; returns ``run_uri``, ``weights``, ``steps``, ``metrics``.

    ``task``: the model adapter (default ``AffectGPTTask``). ``extra_env``: variables for the trainer and
    its workers beyond ``core.runtime.worker_env()`` (which leaves secrets to the nodes' environment).
    ``scorer(gt_uri, pred_uri, complete, labels_uri=...) -> metrics``: scores the per-epoch evaluation
    (``evaluation.runs.score_epoch`` bound to the ``evaluate`` section; None: predictions only).
    """
    import ray

    model_cfg, cfg = absolute_paths(run_cfg.model, run_cfg.train)
    check_tracking(cfg)
    checkpoint_key(cfg, required=cfg.strategy == "deepspeed")  # here too: a clear error before Ray Train
    run_cfg = run_cfg.replace(model=model_cfg, train=cfg)
    task = task or AffectGPTTask(run_cfg.model, cached=cfg.use_cached_features, seed=cfg.seed)
    init_uri = resolve_weights(cfg.init_from) if cfg.init_from else ""
    record = run_record(run_cfg)
    # a rerun resumes from the last checkpoint: refuse changed settings before anything is overwritten
    check_run_folder(cfg.run_uri, record)
    storage.save_resolved(run_cfg, cfg.run_uri, "config.yaml")
    # The trainer runs in a 0-CPU task carrying the (non-secret) storage / HF / DeepSpeed variables, so
    # its controller and workers see them even when Ray was started without them.
    # RAY_ADDRESS: Ray Train's placement-group cleaner looks the cluster up itself and would otherwise
    # fail on a machine running several Ray instances
    env = {**worker_env(), "RAY_ADDRESS": ray.get_runtime_context().gcs_address, **(extra_env or {})}
    job = TrainJob(
        train=cfg,
        task=task,
        record=record,
        env=env,
        init_uri=init_uri,
        scorer=scorer,
        eval_llm=run_cfg.evaluate.llm,
    )
    fit = ray.remote(num_cpus=0, max_retries=0)(_fit)
    runtime_env = runtime_env_for(env)  # RAY_ADDRESS at least: the workers do not inherit it
    fit = fit.options(runtime_env=runtime_env) if runtime_env else fit
    return ray.get(fit.remote(job))


def _fit(job: TrainJob) -> dict[str, Any]:
    """Runs in the trainer task: the datasets, the step counts, then ``TorchTrainer.fit()``."""
    cfg = job.train
    train_ds, rows = train_dataset(cfg)
    per_epoch, total = total_optimizer_steps(
        rows,
        cfg.workers.actors,
        cfg.batch_size,
        cfg.grad_accum,
        cfg.epochs,
        cfg.max_steps,
        cfg.iters_per_epoch,
    )
    log.info(
        "%s: %d training rows, %d steps/epoch, %d steps in all, %d worker(s)",
        *(cfg.name, rows, per_epoch, total, cfg.workers.actors),
    )
    trainer = _trainer(job.with_steps(rows, per_epoch, total), _datasets(cfg, train_ds))
    with _sigint_restored():
        result = trainer.fit()
    return {
        "run_uri": cfg.run_uri,
        "weights": storage.join(cfg.run_uri, WEIGHTS_DIR),
        "steps": total,
        "rows": rows,
        "metrics": dict(result.metrics or {}),
        "checkpoint": result.checkpoint.path if result.checkpoint else None,
    }


def _datasets(cfg: TrainConfig, train_ds: Dataset) -> dict[str, Dataset]:
    """The ``train`` dataset (split over the workers) and, for per-epoch evaluation, ``eval``."""
    datasets = {"train": train_ds}  # train.materialize: already in memory (train_dataset)
    if cfg.eval_each_epoch:
        datasets["eval"], _ = eval_dataset(cfg)
    return datasets


def _trainer(job: TrainJob, datasets: dict[str, Dataset]) -> TorchTrainer:
    """The ``TorchTrainer`` running ``train_loop`` bound to ``job`` on ``train.workers``."""
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    cfg, workers = job.train, job.train.workers
    options = DataConfig.default_ingest_options()
    options.preserve_order = True  # the same seed gives the same batches (and the same loss)
    fs, path = storage.filesystem(cfg.storage_path)
    run_config = RunConfig(
        name=cfg.name,
        storage_path=path,
        storage_filesystem=fs,
        failure_config=FailureConfig(max_failures=cfg.max_failures),
        checkpoint_config=CheckpointConfig(num_to_keep=cfg.keep_checkpoints),
        worker_runtime_env={"env_vars": job.env},
    )
    return TorchTrainer(
        functools.partial(train_loop, job),  # the typed job, not a dict of string keys
        scaling_config=ScalingConfig(
            num_workers=workers.actors,
            use_gpu=cfg.use_gpu,
            resources_per_worker={"CPU": float(workers.num_cpus), **workers.per_actor()},
        ),
        run_config=run_config,
        datasets=datasets,
        dataset_config=DataConfig(datasets_to_split=["train"], execution_options={"train": options}),
    )


@contextlib.contextmanager
def _sigint_restored() -> Iterator[None]:
    """Put back the SIGINT handler that ``fit()`` replaces. Ray Train 2.60's handler holds the
    TrainController's handle, so while it stays installed the controller, its DatasetManager and
    the training datasets' SplitCoordinators stay alive; Ray Data's autoscaling coordinator keeps
    giving their executors an equal share of the free CPUs, and later Ray Data jobs of the same
    driver hung on what was left (the test suite's filter and bad-input jobs did)."""
    main = threading.current_thread() is threading.main_thread()
    old = signal.getsignal(signal.SIGINT) if main else None
    try:
        yield
    finally:
        if main:
            signal.signal(signal.SIGINT, old)
