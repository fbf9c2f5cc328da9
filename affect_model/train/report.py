"""What a training run reports: one line per step, the history (JSON), loss / lr / accuracy curves (PNG)
and the per-epoch evaluation on the EMER-Fine test split (predictions Parquet + scores).

Ray-free: the training loop calls these on rank 0. Everything is written under the run's folder
(``train.storage_path/<run name>``, local or s3://) through ``core.storage``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging

import pyarrow as pa

from core import storage
from core.plots import pyplot

log = logging.getLogger(__name__)


def memory_gb(device_type: str) -> float:
    """Peak accelerator memory of this process (GPU), else its resident memory (CPU), in GiB."""
    import torch

    if device_type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    import psutil

    return psutil.Process().memory_info().rss / 2**30


def step_line(rec: dict, total: int) -> str:
    """The progress line of one optimizer step (``truncated``: answers cut so far in this run;
    ``pad``: the share of padding in the step's text tokens)."""
    pad = f" pad {rec['pad_frac']:.1%}" if "pad_frac" in rec else ""
    return (
        f"step {rec['step']}/{total} epoch {rec['epoch']} loss {rec['loss']:.4f} lr {rec['lr']:.3e} "
        f"grad_norm {rec.get('grad_norm', float('nan')):.3f} samples/s {rec['samples_per_s']:.2f}{pad} "
        f"mem {rec['mem_gb']:.2f}GiB truncated {rec.get('truncated_total', 0)}"
    )


@dataclasses.dataclass
class History:
    """Per-step records (step, epoch, loss, lr, grad_norm, samples_per_s, mem_gb, pad_frac,
    media_pad_frac, truncated: answers cut to the length limits in that step's batches,
    truncated_total) and per-epoch evaluations."""

    steps: list[dict] = dataclasses.field(default_factory=list)
    epochs: list[dict] = dataclasses.field(default_factory=list)
    resumes: list[int] = dataclasses.field(default_factory=list)  # steps a run resumed at

    def truncated_answers(self) -> int:
        """Training answers cut to ``model.max_answer_tokens`` / ``model.max_length`` so far (every
        worker, every step: a row seen twice counts twice)."""
        return sum(int(r.get("truncated", 0)) for r in self.steps)

    def to_json(self) -> str:
        data = {"steps": self.steps, "epochs": self.epochs, "resumes": self.resumes}
        return json.dumps({**data, "truncated_answers": self.truncated_answers()}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> History:
        data = json.loads(text)
        return cls(list(data.get("steps", [])), list(data.get("epochs", [])), list(data.get("resumes", [])))

    def write(self, run_uri: str) -> None:
        """``history.json`` and ``curves/{loss,lr,accuracy}.png`` in the run folder."""
        storage.write_text(storage.join(run_uri, "history.json"), self.to_json())
        for name, png in self.curves().items():
            storage.write_bytes(storage.join(run_uri, "curves", f"{name}.png"), png)

    def curves(self) -> dict[str, bytes]:
        out = {}
        if self.steps:
            steps = [r["step"] for r in self.steps]
            losses = [r["loss"] for r in self.steps]
            out["loss"] = _plot(steps, {"train loss": losses}, "optimizer step", "loss")
            out["lr"] = _plot(steps, {"learning rate": [r["lr"] for r in self.steps]}, "optimizer step", "lr")
        keys = ("eval_accuracy", "eval_recall", "eval_avg")
        scored = [e for e in self.epochs if any(k in e for k in keys)]
        if scored:
            xs = [e["epoch"] for e in scored]
            series = {k[5:]: [e.get(k, float("nan")) for e in scored] for k in keys}
            out["accuracy"] = _plot(xs, series, "epoch", "EMER-Fine test (set-level)")
        return out


def _plot(xs: list, series: dict[str, list], xlabel: str, ylabel: str) -> bytes:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    for label, ys in series.items():
        ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def write_predictions(records: list[dict], uri: str) -> None:
    """``name, description`` Parquet (what ``emer evaluate`` reads), sorted by name."""
    records = sorted(records, key=lambda r: r["name"])
    table = pa.table(
        {"name": [r["name"] for r in records], "description": [r["description"] for r in records]}
    )
    storage.write_table(table, uri)


def write_ground_truth(rows: list[dict], gt_labels: dict[str, list[str]] | None, uri: str) -> None:
    """The test split's references: ``name, description`` (+ ``openset`` labels when known)."""
    rows = sorted(rows, key=lambda r: r["name"])
    data = {"name": [r["name"] for r in rows], "description": [r["reference"] for r in rows]}
    if gt_labels is not None:
        data["openset"] = [list(gt_labels.get(r["name"], [])) for r in rows]
    storage.write_table(pa.table(data), uri)
