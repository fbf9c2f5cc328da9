"""What every Ray Train worker runs: ``train_loop(job)`` and one worker's run (``WorkerRun``).

A worker builds the model from its ``TrainJob`` (``affect_model.train.job``), wraps it in the engine
(DeepSpeed or DDP, ``affect_model.train.engine``), resumes from the checkpoint Ray hands it (only with
the run's output-affecting settings: ``affect_model.train.resume``), then steps through its shard
(``affect_model.train.shard``) epoch by epoch: losses all-reduced, curves recorded, checkpoints
reported to Ray Train (every rank its DeepSpeed shard, rank 0 the trainable weights and the history,
every rank sealing its files last), the per-epoch evaluation (``affect_model.train.evaluate``), and
at the end rank 0 writes the trainable weights to ``<run>/weights``.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time

import torch

from affect_model.train.batching import mean_padding, padding_stats
from affect_model.train.engine import make_engine
from affect_model.train.evaluate import evaluate_epoch
from affect_model.train.job import TrainJob, WorkerContext
from affect_model.train.report import History, memory_gb, step_line
from affect_model.train.resume import check_checkpoint, write_record
from affect_model.train.shard import micro_batches
from affect_model.train.tracking import Tracker
from core import metrics, storage

log = logging.getLogger(__name__)
WEIGHTS_DIR = "weights"  # the trainable weights inside a run folder and a checkpoint


def train_loop(job: TrainJob) -> None:
    """The per-worker training function of the ``TorchTrainer`` (bound to ``job`` by the driver)."""
    import ray.train
    import ray.train.torch

    _worker_logging()
    cfg, task = job.train, job.task
    ray_ctx = ray.train.get_context()
    rank, world = ray_ctx.get_world_rank(), ray_ctx.get_world_size()
    device = ray.train.torch.get_device()
    torch.manual_seed(cfg.seed)
    module = task.build(cfg.activation_checkpointing)
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None and job.init_uri:
        task.load_weights(module, job.init_uri)
    engine = make_engine(module, cfg, job.total, world, rank, device)
    run = WorkerRun(WorkerContext(job, engine, rank, world, device))
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            run.restore(folder)
    run.run()


def _worker_logging() -> None:
    root = logging.getLogger("affect_model")
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        root.propagate = False


class WorkerRun:
    """State and steps of one worker's training run."""

    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx, self.cfg, self.engine = ctx, ctx.cfg, ctx.engine
        self.state = {"step": 0, "epoch": 0, "micro": 0}
        self.history = History()
        self.tracker: Tracker | None = None  # rank 0's TensorBoard / MLflow sinks (made in run())

    def restore(self, folder: str) -> None:
        check_checkpoint(folder, self.ctx.job.record, self.cfg.run_uri)  # the same output-affecting settings
        self.state.update(self.engine.load(folder))  # verifies every file's digest first
        path = os.path.join(folder, "history.json")
        if os.path.exists(path):
            with open(path) as f:
                self.history = History.from_json(f.read())
        self.history.resumes.append(self.state["step"])
        step, epoch, micro = self.state["step"], self.state["epoch"], self.state["micro"]
        log.info(
            "rank %d resumed at step %d (epoch %d, micro-batch %d) from %s",
            *(self.ctx.rank, step, epoch, micro, folder),
        )

    def run(self) -> None:
        torch.manual_seed(self.cfg.seed + 7919 * self.ctx.rank + self.state["step"])
        self.engine.module.train()
        if self.ctx.rank == 0:
            self.tracker = Tracker(self.cfg, self.cfg.run_uri, self.state["step"])
        while self.state["step"] < self.ctx.job.total and self.state["epoch"] < self.cfg.epochs:
            self._epoch()
        self._finish()

    def _epoch(self) -> None:
        epoch, skip, total = self.state["epoch"], self.state["micro"], self.ctx.job.total
        limit = self.ctx.job.per_epoch * self.cfg.grad_accum
        losses: list[float] = []
        truncated, pads, t0, stopped = 0, [], time.perf_counter(), False
        for i, batch in micro_batches(self.ctx, epoch, limit, lambda: self.state["step"] >= total):
            if i < skip or i >= limit or stopped:
                continue  # already done before a resume / beyond the last full step: drain the shard
            truncated += int(batch.pop("truncated"))
            pads.append(padding_stats(batch))
            losses.append(self.engine.micro_step(self.ctx.task.loss, batch))
            self.state["micro"] = i + 1
            lr = self.engine.lr()  # the rate this step uses (the scheduler moves in step())
            if not self.engine.step():
                continue
            self.state["step"] += 1
            self._record(epoch, losses, truncated, lr, pads, time.perf_counter() - t0)
            losses, truncated, pads, t0 = [], 0, [], time.perf_counter()
            end_of_epoch = self.state["micro"] >= limit
            stopped = self.state["step"] >= total
            every = self.cfg.checkpoint_every
            if every and self.state["step"] % every == 0 and not (end_of_epoch or stopped):
                self._checkpoint({})
        if not stopped or self.state["micro"] >= limit:
            self.state.update(epoch=epoch + 1, micro=0)
        evaluate = self.cfg.eval_each_epoch and (self.state["micro"] == 0 or stopped)
        self._checkpoint(self._evaluate(epoch) if evaluate else {}, epoch)

    def _record(
        self, epoch: int, losses: list[float], truncated: int, lr: float, pads: list[dict], seconds: float
    ) -> None:
        """One optimizer step's record: the loss and truncation count all-reduced over the workers."""
        ctx = self.ctx
        sums = torch.tensor([sum(losses) / max(1, len(losses)), truncated], dtype=torch.float64)
        if ctx.world > 1:
            import torch.distributed as dist

            sums = sums.to(ctx.device)
            dist.all_reduce(sums)
            sums = sums.cpu()
            sums[0] /= ctx.world
        rec = {
            "step": self.state["step"],
            "epoch": epoch,
            "loss": float(sums[0]),
            "lr": lr,
            "grad_norm": self.engine.grad_norm(),
            "truncated": int(sums[1]),  # answers cut to fit model.max_answer_tokens / model.max_length
            "truncated_total": self.history.truncated_answers() + int(sums[1]),
            "samples_per_s": self.cfg.batch_size * self.cfg.grad_accum * ctx.world / max(seconds, 1e-9),
            "mem_gb": memory_gb(ctx.device.type),
            **mean_padding(pads),
        }
        self.history.steps.append(rec)
        if self.tracker is not None:
            self.tracker.step(rec)
        if ctx.rank == 0 and (rec["step"] % self.cfg.log_every == 0 or rec["step"] == 1):
            self._log_step(rec)

    def _log_step(self, rec: dict) -> None:
        log.info(step_line(rec, self.ctx.job.total))
        tags = {"run": self.cfg.name}
        metrics.gauge("emer_train_loss").set(rec["loss"], {**tags, "split": "train"})
        metrics.gauge("emer_train_samples_per_second").set(rec["samples_per_s"], tags)
        metrics.gauge("emer_train_step").set(rec["step"], tags)
        metrics.gauge("emer_train_learning_rate").set(rec["lr"], tags)

    def _checkpoint(self, extra: dict, epoch: int | None = None) -> None:
        import ray.train

        weights = self.engine.trainable_state()  # a collective under ZeRO: every rank takes part
        if extra:
            self.history.epochs.append({"epoch": epoch, "step": self.state["step"], **extra})
        with tempfile.TemporaryDirectory(prefix="emer-ckpt-") as folder:
            if self.ctx.rank == 0:
                self.ctx.task.save_weights(weights, os.path.join(folder, WEIGHTS_DIR))
                with open(os.path.join(folder, "history.json"), "w") as f:
                    f.write(self.history.to_json())
                write_record(self.ctx.job.record, folder)
            self.engine.save(folder, dict(self.state))  # last: it seals the folder's files with digests
            ckpt = ray.train.Checkpoint.from_directory(folder) if os.listdir(folder) else None
            name = f"checkpoint_{self.state['step']:07d}"
            ray.train.report(self._report(extra), checkpoint=ckpt, checkpoint_dir_name=name)
        if self.ctx.rank == 0:
            self.history.write(self.cfg.run_uri)
            if extra:
                self.tracker.evaluation(extra, self.state["step"])
            self.tracker.flush()
            log.info("checkpoint at step %d saved to %s", self.state["step"], self.cfg.run_uri)

    def _report(self, extra: dict) -> dict:
        """The metrics reported to Ray Train with a checkpoint."""
        last = self.history.steps[-1] if self.history.steps else {}
        return {
            "step": self.state["step"],
            "epoch": self.state["epoch"],
            "loss": last.get("loss"),
            "lr": last.get("lr"),
            "truncated_answers": self.history.truncated_answers(),
            **extra,
        }

    def _finish(self) -> None:
        weights = self.engine.trainable_state()
        if self.ctx.rank == 0:
            folder = storage.join(self.cfg.run_uri, WEIGHTS_DIR)
            self.ctx.task.save_weights(weights, folder)
            self.history.write(self.cfg.run_uri)
            self.tracker.close()
            log.info("training done at step %d; trainable weights in %s", self.state["step"], folder)

    def _evaluate(self, epoch: int) -> dict:
        module = self.engine.module
        module.eval()
        try:
            return evaluate_epoch(self.ctx, epoch)
        finally:
            module.train()
