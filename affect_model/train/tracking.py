"""Training curves for the usual viewers: TensorBoard event files and (optionally) MLflow.

Rank 0 of the training loop logs per-step scalars (loss, lr, grad norm, samples/s, truncated answers)
and per-epoch evaluation scores through one ``Tracker``. TensorBoard files go to ``<run folder>/
tensorboard`` beside the checkpoints: written in place for a local run folder; for ``s3://`` written
to a local folder and uploaded through ``core.storage`` at every checkpoint and at the end. After a
resume, TensorBoard drops the earlier file's events from the resumed step on (``purge_step``).
MLflow (``train.mlflow``) gets the same scalars when the package is installed (``emer[mlflow]``).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import tempfile
from pathlib import Path

from affect_model.train.config import TrainConfig
from core import storage

log = logging.getLogger(__name__)
TB_DIR = "tensorboard"
STEP_TAGS = {
    "loss": "train/loss",
    "lr": "train/lr",
    "grad_norm": "train/grad_norm",
    "samples_per_s": "train/samples_per_s",
    "truncated_total": "train/truncated_answers",
}


def check_tracking(cfg: TrainConfig) -> None:
    """Fail before training when a switched-on tracker's package is missing (one clear error)."""
    if cfg.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise RuntimeError("train.tensorboard = true: the tensorboard package is not installed")
    if cfg.mlflow and importlib.util.find_spec("mlflow") is None:
        raise RuntimeError(
            "train.mlflow = true: the mlflow package is not installed "
            "(pip install 'emer[mlflow]', or set train.mlflow = false)"
        )


def tensorboard_dir(run_uri: str) -> str:
    """Where a run's event files end up (what ``tensorboard --logdir`` finds under the run folder)."""
    return storage.join(run_uri, TB_DIR)


class Tracker:
    """Rank 0's scalar sinks for one run; ``start_step``: the step a resumed run continues from."""

    def __init__(self, cfg: TrainConfig, run_uri: str, start_step: int = 0) -> None:
        self.remote = storage.is_s3(run_uri)
        self.target = tensorboard_dir(run_uri)
        self._tmp = None
        self.writer = None
        self.mlflow = None
        if cfg.tensorboard:
            self.writer = self._writer(start_step)
        if cfg.mlflow:
            self.mlflow = _start_mlflow(cfg)

    def _writer(self, start_step: int):
        from torch.utils.tensorboard import SummaryWriter

        if self.remote:
            self._tmp = tempfile.TemporaryDirectory(prefix="emer-tb-")
            folder = self._tmp.name
        else:
            folder = self.target
            os.makedirs(folder, exist_ok=True)
        return SummaryWriter(folder, purge_step=start_step + 1 if start_step else None)

    def step(self, rec: dict) -> None:
        """One optimizer step's record (``History.steps`` entry)."""
        values = {tag: float(rec[key]) for key, tag in STEP_TAGS.items() if rec.get(key) is not None}
        self._log(values, int(rec["step"]))

    def evaluation(self, metrics: dict, step: int) -> None:
        """Per-epoch scores (``eval_accuracy`` ... -> ``eval/accuracy`` ...) at the step they were taken."""
        values = {
            "eval/" + key.removeprefix("eval_"): float(v)
            for key, v in metrics.items()
            if isinstance(v, (int, float))
        }
        self._log(values, step)

    def _log(self, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, step)
        if self.mlflow is not None and values:
            self.mlflow.log_metrics(values, step=step)

    def flush(self) -> None:
        """Write pending events; for an s3:// run folder, upload the event files."""
        if self.writer is not None:
            self.writer.flush()
            self._upload()

    def _upload(self) -> None:
        if self._tmp is None:
            return
        root = Path(self._tmp.name)
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            storage.write_bytes(storage.join(self.target, str(path.relative_to(root))), path.read_bytes())

    def close(self) -> None:
        """Flush, upload and close everything (the end of training)."""
        if self.writer is not None:
            self.writer.close()
            self._upload()
        if self._tmp is not None:
            self._tmp.cleanup()
        if self.mlflow is not None:
            self.mlflow.end_run()


def _start_mlflow(cfg: TrainConfig):
    check_tracking(cfg.replace(tensorboard=False))
    import mlflow

    if cfg.mlflow_tracking_uri:
        mlflow.set_tracking_uri(cfg.mlflow_tracking_uri)
    mlflow.set_experiment(cfg.mlflow_experiment)
    mlflow.start_run(run_name=cfg.name)
    log.info("logging scalars to MLflow experiment %r (run %s)", cfg.mlflow_experiment, cfg.name)
    return mlflow
