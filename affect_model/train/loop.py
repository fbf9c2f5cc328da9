"""Training AffectGPT with Ray Train: ``run_training`` (driver) and ``train_loop`` (every worker).

The driver builds the stage's Ray Datasets (EMER-Coarse, or the EMER-Fine train split; raw media or
cached encoder features) and a ``TorchTrainer`` whose workers each read their shard through
``ray.train.get_dataset_shard``. Every worker runs DeepSpeed (ZeRO 2 by default) or plain DDP via
``affect_model.train.engine``. Checkpoints go to ``train.storage_path/<run name>`` (local or s3://):
every rank writes its own DeepSpeed shard, rank 0 adds the trainable weights (``weights/``) and the
history, and every rank seals its files with digests last; Ray merges them into one checkpoint folder,
which loads only if every file matches (``affect_model.train.integrity``). A run resumes from its
latest checkpoint after a worker failure (``FailureConfig``) and when the same command runs again
(same name + storage path), but only with the output-affecting settings it was started with
(``affect_model.train.resume``; a rerun that changed one is refused before config.yaml is rewritten).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

from affect_model.model.checkpoint import CONFIG_FILE
from affect_model.train.batching import grouped_batches, mean_padding, padding_stats
from affect_model.train.config import TrainConfig
from affect_model.train.datasets import eval_dataset, train_dataset
from affect_model.train.engine import make_engine
from affect_model.train.evaluate import evaluate_epoch
from affect_model.train.integrity import checkpoint_key
from affect_model.train.report import History, memory_gb, step_line
from affect_model.train.resume import check_checkpoint, check_run_folder, run_record, write_record
from affect_model.train.schedule import total_optimizer_steps
from affect_model.train.task import AffectGPTTask, absolute_paths, to_device
from affect_model.train.tracking import Tracker, check_tracking
from core import metrics, storage
from core.runtime import worker_env

log = logging.getLogger(__name__)
WEIGHTS_DIR = "weights"


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
    run_cfg: Any, task: Any = None, extra_env: dict[str, str] | None = None, scorer: Callable | None = None
) -> dict:
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
    evaluate = getattr(run_cfg, "evaluate", None)
    payload = {
        "train": cfg,
        "task": task,
        "scorer": scorer,
        "eval_llm": getattr(evaluate, "llm", None),
        "init_uri": resolve_weights(cfg.init_from) if cfg.init_from else "",
        "record": run_record(run_cfg),
    }
    # a rerun resumes from the last checkpoint: refuse changed settings before anything is overwritten
    check_run_folder(cfg.run_uri, payload["record"])
    storage.save_resolved(run_cfg, cfg.run_uri, "config.yaml")
    # The trainer runs in a 0-CPU task carrying the (non-secret) storage / HF / DeepSpeed variables, so
    # its controller and workers see them even when Ray was started without them.
    # RAY_ADDRESS: Ray Train's placement-group cleaner looks the cluster up itself and would otherwise
    # fail on a machine running several Ray instances
    env = {**worker_env(), "RAY_ADDRESS": ray.get_runtime_context().gcs_address, **(extra_env or {})}
    payload["env"] = env
    fit = ray.remote(num_cpus=0, max_retries=0)(_fit).options(runtime_env={"env_vars": env})
    return ray.get(fit.remote(payload))


def _fit(payload: dict) -> dict:
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    cfg: TrainConfig = payload["train"]
    train_ds, rows = train_dataset(cfg)
    datasets = {"train": train_ds.materialize() if cfg.materialize else train_ds}
    workers = cfg.workers.actors
    per_epoch, total = total_optimizer_steps(
        rows, workers, cfg.batch_size, cfg.grad_accum, cfg.epochs, cfg.max_steps, cfg.iters_per_epoch
    )
    if cfg.eval_each_epoch:
        datasets["eval"], _ = eval_dataset(cfg)
    log.info(
        "%s: %d training rows, %d steps/epoch, %d steps in all, %d worker(s)",
        cfg.name,
        rows,
        per_epoch,
        total,
        cfg.workers.actors,
    )
    options = DataConfig.default_ingest_options()
    options.preserve_order = True  # the same seed gives the same batches (and the same loss)
    fs, path = storage.filesystem(cfg.storage_path)
    run_config = RunConfig(
        name=cfg.name,
        storage_path=path,
        storage_filesystem=fs,
        failure_config=FailureConfig(max_failures=cfg.max_failures),
        checkpoint_config=CheckpointConfig(num_to_keep=cfg.keep_checkpoints),
        worker_runtime_env={"env_vars": payload["env"]},
    )
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={**payload, "per_epoch": per_epoch, "total": total, "rows": rows},
        scaling_config=ScalingConfig(
            num_workers=cfg.workers.actors,
            use_gpu=cfg.use_gpu,
            resources_per_worker={"CPU": float(cfg.workers.num_cpus), **cfg.workers.per_actor()},
        ),
        run_config=run_config,
        datasets=datasets,
        dataset_config=DataConfig(datasets_to_split=["train"], execution_options={"train": options}),
    )
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


def _worker_logging() -> None:
    root = logging.getLogger("affect_model")
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        root.propagate = False


def train_loop(config: dict) -> None:
    """The per-worker training function of the ``TorchTrainer``."""
    import ray.train
    import ray.train.torch

    _worker_logging()
    cfg: TrainConfig = config["train"]
    task = config["task"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    torch.manual_seed(cfg.seed)
    module = task.build(cfg.activation_checkpointing)
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None and config["init_uri"]:
        task.load_weights(module, config["init_uri"])
    engine = make_engine(module, cfg, config["total"], world, rank, device)
    loop = _Loop(cfg, task, engine, config, rank, world, device)
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            loop.restore(folder)
    loop.run()


class _Loop:
    """State and steps of one worker's training run."""

    def __init__(
        self, cfg: TrainConfig, task, engine, config: dict, rank: int, world: int, device: torch.device
    ) -> None:
        self.cfg, self.task, self.engine = cfg, task, engine
        self.rank, self.world, self.device = rank, world, device
        self.per_epoch, self.total = config["per_epoch"], config["total"]
        self.scorer = config.get("scorer")
        self.eval_llm = config.get("eval_llm")
        self.state = {"step": 0, "epoch": 0, "micro": 0}
        self.history = History()
        self._pads: list[dict] = []  # padding_stats of this step's micro-batches
        self.run_uri = cfg.run_uri
        self.record = config["record"]
        self.tracker: Tracker | None = None  # rank 0's TensorBoard / MLflow sinks (made in run())

    def restore(self, folder: str) -> None:
        check_checkpoint(folder, self.record, self.run_uri)  # the same output-affecting settings
        self.state.update(self.engine.load(folder))  # verifies every file's digest first
        path = os.path.join(folder, "history.json")
        if os.path.exists(path):
            with open(path) as f:
                self.history = History.from_json(f.read())
        self.history.resumes.append(self.state["step"])
        log.info(
            "rank %d resumed at step %d (epoch %d, micro-batch %d) from %s",
            self.rank,
            self.state["step"],
            self.state["epoch"],
            self.state["micro"],
            folder,
        )

    # ------------------------------------------------------------ epochs and steps

    def run(self) -> None:
        torch.manual_seed(self.cfg.seed + 7919 * self.rank + self.state["step"])
        self.engine.module.train()
        if self.rank == 0:
            self.tracker = Tracker(self.cfg, self.run_uri, self.state["step"])
        while self.state["step"] < self.total and self.state["epoch"] < self.cfg.epochs:
            self._epoch()
        self._finish()

    def _micro_batches(self, epoch: int, limit: int):
        """(index, batch) of this epoch: one pass over the shard, or with ``train.iters_per_epoch``
        passes until ``limit`` micro-batches (every pass read to its end, as all workers must). Once
        the run's last step is done no new pass starts: every rank is at the same step, so all of them
        stop after the same pass (before, ``train.max_steps`` below ``iters_per_epoch`` cycled the
        data up to the epoch's full length just to drain it)."""
        i, passes = 0, 0
        while True:
            start = i
            for batch in self._batches(epoch, passes):
                yield i, batch
                i += 1
            passes += 1
            if not self.cfg.iters_per_epoch or i >= limit or self.state["step"] >= self.total:
                return
            if i == start:
                raise RuntimeError(f"rank {self.rank}: a pass over the training shard gave no batch")

    def _batches(self, epoch: int, cycle: int = 0):
        import ray.train

        shard = ray.train.get_dataset_shard("train")
        task, module = self.task, self.engine.module

        def collate(batch):
            out = task.collate(module, batch, count_truncated=True)
            out.pop("names", None)
            out["truncated"] = torch.tensor(out["truncated"])
            return out

        shuffle = self.cfg.shuffle_buffer or None
        if self.cfg.group_by_length and hasattr(task, "lengths"):
            return self._grouped(shard, collate, epoch + 1_000_003 * cycle, shuffle)
        return shard.iter_torch_batches(
            batch_size=self.cfg.batch_size,
            drop_last=True,
            collate_fn=collate,
            device=self.device,
            local_shuffle_buffer_size=shuffle,
            local_shuffle_seed=self.cfg.seed + epoch + 1_000_003 * cycle if shuffle else None,
        )

    def _grouped(self, shard, collate, epoch: int, shuffle: int | None):
        """Length-grouped batches from buffers of ``length_bucket_size x batch_size`` rows of the shard
        (``affect_model.train.batching``); as many full batches as ``iter_torch_batches`` gives."""
        cfg, task, module = self.cfg, self.task, self.engine.module
        chunks = shard.iter_batches(
            batch_size=cfg.batch_size * cfg.length_bucket_size,
            batch_format="numpy",
            local_shuffle_buffer_size=shuffle,
            local_shuffle_seed=cfg.seed + epoch if shuffle else None,
        )
        return grouped_batches(
            chunks,
            lambda chunk: task.lengths(module, chunk),
            lambda rows: to_device(collate(rows), self.device),
            cfg.batch_size,
            cfg.length_bucket_size,
            seed=cfg.seed + epoch,
        )

    def _epoch(self) -> None:
        epoch, skip = self.state["epoch"], self.state["micro"]
        limit = self.per_epoch * self.cfg.grad_accum
        losses: list[float] = []
        truncated = 0
        self._pads = []
        t0 = time.perf_counter()
        stopped = False
        for i, batch in self._micro_batches(epoch, limit):
            if i < skip or i >= limit or stopped:
                continue  # already done before a resume / beyond the last full step: drain the shard
            truncated += int(batch.pop("truncated"))
            self._pads.append(padding_stats(batch))
            losses.append(self.engine.micro_step(self.task.loss, batch))
            self.state["micro"] = i + 1
            lr = self.engine.lr()  # the rate this step uses (the scheduler moves in step())
            if not self.engine.step():
                continue
            self.state["step"] += 1
            self._record(epoch, losses, truncated, lr, time.perf_counter() - t0)
            losses, truncated, t0 = [], 0, time.perf_counter()
            end_of_epoch = self.state["micro"] >= limit
            stopped = self.state["step"] >= self.total
            every = self.cfg.checkpoint_every
            if every and self.state["step"] % every == 0 and not (end_of_epoch or stopped):
                self._checkpoint({})
        if not stopped or self.state["micro"] >= limit:
            self.state.update(epoch=epoch + 1, micro=0)
        evaluate = self.cfg.eval_each_epoch and (self.state["micro"] == 0 or stopped)
        self._checkpoint(self._evaluate(epoch) if evaluate else {}, epoch)

    def _record(self, epoch: int, losses: list[float], truncated: int, lr: float, seconds: float) -> None:
        sums = torch.tensor([sum(losses) / max(1, len(losses)), truncated], dtype=torch.float64)
        if self.world > 1:
            import torch.distributed as dist

            sums = sums.to(self.device)
            dist.all_reduce(sums)
            sums = sums.cpu()
            sums[0] /= self.world
        samples = self.cfg.batch_size * self.cfg.grad_accum * self.world
        rec = {
            "step": self.state["step"],
            "epoch": epoch,
            "loss": float(sums[0]),
            "lr": lr,
            "grad_norm": self.engine.grad_norm(),
            "truncated": int(sums[1]),  # answers cut to fit model.max_answer_tokens / model.max_length
            "truncated_total": self.history.truncated_answers() + int(sums[1]),
            "samples_per_s": samples / max(seconds, 1e-9),
            "mem_gb": memory_gb(self.device.type),
            **mean_padding(self._pads),
        }
        self._pads = []
        self.history.steps.append(rec)
        if self.tracker is not None:
            self.tracker.step(rec)
        if self.rank == 0 and (self.state["step"] % self.cfg.log_every == 0 or self.state["step"] == 1):
            log.info(step_line(rec, self.total))
            tags = {"run": self.cfg.name}
            metrics.gauge("emer_train_loss").set(rec["loss"], {**tags, "split": "train"})
            metrics.gauge("emer_train_samples_per_second").set(rec["samples_per_s"], tags)
            metrics.gauge("emer_train_step").set(rec["step"], tags)
            metrics.gauge("emer_train_learning_rate").set(rec["lr"], tags)

    # ------------------------------------------------------------ checkpoints and the end

    def _checkpoint(self, extra: dict, epoch: int | None = None) -> None:
        import ray.train

        weights = self.engine.trainable_state()  # a collective under ZeRO: every rank takes part
        last = self.history.steps[-1] if self.history.steps else {}
        report = {
            "step": self.state["step"],
            "epoch": self.state["epoch"],
            "loss": last.get("loss"),
            "lr": last.get("lr"),
            "truncated_answers": self.history.truncated_answers(),
            **extra,
        }
        if extra:
            self.history.epochs.append({"epoch": epoch, "step": self.state["step"], **extra})
        with tempfile.TemporaryDirectory(prefix="emer-ckpt-") as folder:
            if self.rank == 0:
                self.task.save_weights(weights, os.path.join(folder, WEIGHTS_DIR))
                with open(os.path.join(folder, "history.json"), "w") as f:
                    f.write(self.history.to_json())
                write_record(self.record, folder)
            self.engine.save(folder, dict(self.state))  # last: it seals the folder's files with digests
            has_files = bool(os.listdir(folder))
            ckpt = ray.train.Checkpoint.from_directory(folder) if has_files else None
            name = f"checkpoint_{self.state['step']:07d}"
            ray.train.report(report, checkpoint=ckpt, checkpoint_dir_name=name)
        if self.rank == 0:
            self.history.write(self.run_uri)
            if extra:
                self.tracker.evaluation(extra, self.state["step"])
            self.tracker.flush()
            log.info("checkpoint at step %d saved to %s", self.state["step"], self.run_uri)

    def _finish(self) -> None:
        weights = self.engine.trainable_state()
        if self.rank == 0:
            self.task.save_weights(weights, storage.join(self.run_uri, WEIGHTS_DIR))
            self.history.write(self.run_uri)
            self.tracker.close()
            log.info(
                "training done at step %d; trainable weights in %s",
                self.state["step"],
                storage.join(self.run_uri, WEIGHTS_DIR),
            )

    # ------------------------------------------------------------ per-epoch evaluation

    def _evaluate(self, epoch: int) -> dict:
        module = self.engine.module
        module.eval()
        try:
            return evaluate_epoch(self, epoch)
        finally:
            module.train()
