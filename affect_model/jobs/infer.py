"""``emer infer``: batch generation of EMER descriptions from a trained checkpoint, on Ray Data actors.

The describer is a ``core.stage.Stage`` run by ``map_stages`` like every annotation stage: each
actor loads the model once (frozen parts from their ids / paths, trainable weights from the
checkpoint; no encoders when the input holds cached features) and describes batches of clips (with
``train.infer.group_by_length``: a map batch of ``length_bucket_size`` generate batches, generated in
order of prompt length, less left padding, the rows kept in input order). The
output is one Parquet file ``name, description`` sorted by name, what ``emer evaluate`` reads; rows
that failed go to ``<output>.failures.parquet`` with a reason, and for an EMER-Fine split the
reference descriptions go to ``<output>.references.parquet``. The resolved config is saved beside.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pyarrow as pa

from affect_model.model.checkpoint import from_pretrained
from affect_model.train.batching import describe_in_length_order
from affect_model.train.config import TrainConfig, TrainRun
from affect_model.train.datasets import fine_split, media_source, read_parquet, select_rows
from affect_model.train.loop import resolve_weights
from affect_model.train.task import AffectGPTTask, absolute_paths, to_device
from core import storage
from core.schema import NAME, SUBTITLE_EN, SUBTITLE_ZH
from core.stage import OK, Stage, fail, map_stages

log = logging.getLogger(__name__)


class Describer(Stage):
    """Stage: rows -> ``name, description, error``. ``cfg``: the weights folder; kwargs ``cached``
    (rows hold encoder outputs), ``max_new_tokens`` and ``question`` (the official prompt's question:
    ``description``, or ``ovlabel``: the answer is then the official OV-label sentence). A row that
    cannot be described is recorded as failed with its reason; the other rows of its batch are still
    described."""

    name = "infer"
    needs = ("name",)
    produces = ("description", "error")
    batch_format = "numpy"

    def setup(self) -> None:
        import torch  # heavy: torch, imported on use (the actor process only)

        cached = bool(self.options.get("cached"))
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = from_pretrained(self.cfg, load_encoders=not cached).to(self.device).eval()
        question = self.options.get("question") or "description"
        self.task = AffectGPTTask(self.model.config, cached=cached, question=question)
        self.max_new_tokens = self.options.get("max_new_tokens") or self.model.config.max_new_tokens

    def _describe(self, rows: list[dict]) -> list[str]:
        batch = {k: [r[k] for r in rows] for k in rows[0]}
        model_batch = to_device(self.task.collate(self.model, batch, with_answer=False), self.device)
        return self.task.generate(self.model, model_batch, self.max_new_tokens)

    def _describe_or_fail(self, rows: list[dict]) -> list[str]:
        try:
            return self._describe(rows)
        except Exception:  # noqa: BLE001 - find the bad rows one by one; the others still get a description
            texts = []
            for row in rows:
                try:
                    texts.append(self._describe([row])[0])
                except Exception as err:  # noqa: BLE001 - this row's failure, recorded on it
                    fail(row, self.name, f"{type(err).__name__}: {err}"[:300])
                    texts.append("")
            return texts

    def _texts(self, rows: list[dict]) -> list[str]:
        """Descriptions in ``rows``' order; with option ``group`` (a batch size), generated in batches
        of similar prompt length (less left padding) and put back in order."""
        size = int(self.options.get("group") or 0)
        if not size or len(rows) <= size:
            return self._describe_or_fail(rows)
        columns = {k: [r.get(k) for r in rows] for k in (NAME, SUBTITLE_EN, SUBTITLE_ZH)}
        lengths = self.task.lengths(self.model, columns, with_answer=False)
        return describe_in_length_order(rows, lengths, size, self._describe_or_fail)

    def process(self, rows: list[dict]) -> None:
        texts = self._texts(rows)
        for row, text in zip(rows, texts):
            row["description"] = text
            row["error"] = row.get("reason", "") if row.get("outcome") != OK else ""

    def output_columns(self, rows: list[dict]) -> list[str]:
        return ["name", "description", "error"]


def _inputs(cfg: TrainConfig):
    """(Ray Dataset, reference descriptions or None) for ``train.infer.split``."""
    import ray

    ic = cfg.infer
    uri, key = (
        (ic.input_uri, "train.infer.input_uri")
        if ic.input_uri
        else media_source(cfg, fine=ic.split != "rows")
    )
    if ic.split == "rows":
        return read_parquet(uri, key), None
    wanted = fine_split(cfg, ic.split)
    table = select_rows(uri, key, wanted)
    return ray.data.from_arrow(table), wanted


def output_uri(cfg: TrainConfig) -> str:
    return cfg.infer.output_uri or storage.join(cfg.storage_path, "infer", f"{cfg.infer.split}.parquet")


def run_inference(run_cfg: TrainRun) -> dict[str, Any]:
    """Describe the configured split / table with the configured checkpoint; returns counts and paths."""

    _, cfg = absolute_paths(None, run_cfg.train)
    run_cfg = run_cfg.replace(train=cfg)
    ic = cfg.infer
    default = storage.join(cfg.storage_path, "stage2")
    weights = resolve_weights(ic.checkpoint or default, "train.infer.checkpoint")
    out = output_uri(cfg)
    t0 = time.perf_counter()
    ds, references = _inputs(cfg)
    remote = ic.pool.remote_args()
    group = ic.batch_size if ic.group_by_length else 0  # map batches of several generate batches
    options = {
        "cached": cfg.use_cached_features,
        "max_new_tokens": ic.max_new_tokens,
        "group": group,
        "question": ic.question,
    }
    batch = ic.batch_size * (ic.length_bucket_size if group else 1)
    described = map_stages(
        ds, [(Describer, options)], weights, pool=ic.pool.bounds(), batch_size=batch, remote=remote
    )
    rows = described.select_columns(["name", "description", "error"]).take_all()
    ok = sorted((r for r in rows if not r["error"]), key=lambda r: r["name"])
    failed = [r for r in rows if r["error"]]
    storage.write_table(
        pa.table({"name": [r["name"] for r in ok], "description": [r["description"] for r in ok]}), out
    )
    stem = out[: -len(".parquet")]
    if failed:
        storage.write_table(
            pa.table({"name": [r["name"] for r in failed], "error": [r["error"] for r in failed]}),
            f"{stem}.failures.parquet",
        )
    if references is not None:
        names = sorted(references)
        storage.write_table(
            pa.table({"name": names, "description": [references[n] for n in names]}),
            f"{stem}.references.parquet",
        )
    folder, base = stem.rsplit("/", 1) if "/" in stem else (".", stem)
    storage.save_resolved(run_cfg, folder, f"{base}.config.yaml")
    summary = {
        "output": out,
        "described": len(ok),
        "failed": len(failed),
        "checkpoint": weights,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    log.info("infer: %d descriptions -> %s (%d failed)", len(ok), out, len(failed))
    return summary
