"""``emer infer``: batch generation of EMER descriptions from a trained checkpoint, on Ray Data actors.

Each actor loads the model once (frozen parts from their ids / paths, trainable weights from the
checkpoint; no encoders when the input holds cached features) and describes batches of clips. The
output is one Parquet file ``name, description`` sorted by name, what ``emer evaluate`` reads; rows
that failed go to ``<output>.failures.parquet`` with a reason, and for an EMER-Fine split the
reference descriptions go to ``<output>.references.parquet``. The resolved config is saved beside.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pyarrow as pa

from affect_model.train_config import TrainConfig
from affect_model.train_task import AffectGPTTask, absolute_paths, batch_rows, to_device
from cluster import storage

log = logging.getLogger(__name__)


class Describer:
    """Ray Data actor: rows -> ``name, description, error``."""

    def __init__(self, weights_uri: str, cached: bool, max_new_tokens: int) -> None:
        import torch

        from affect_model.checkpoint import from_pretrained

        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = from_pretrained(weights_uri, load_encoders=not cached).to(self.device).eval()
        self.task = AffectGPTTask(self.model.config, cached=cached)
        self.max_new_tokens = max_new_tokens or self.model.config.max_new_tokens

    def _describe(self, batch: dict) -> list[str]:
        model_batch = to_device(self.task.collate(self.model, batch, with_answer=False), self.device)
        return self.task.generate(self.model, model_batch, self.max_new_tokens)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        names = [str(n) for n in batch["name"]]
        try:
            texts, errors = self._describe(batch), [""] * len(names)
        except Exception:  # find the bad rows one by one; the others still get a description
            texts, errors = [], []
            for row in batch_rows(batch):
                try:
                    texts.append(self._describe({k: [v] for k, v in row.items()})[0])
                    errors.append("")
                except Exception as err:
                    texts.append("")
                    errors.append(f"{type(err).__name__}: {err}"[:300])
        return {"name": np.array(names, dtype=object), "description": np.array(texts, dtype=object),
                "error": np.array(errors, dtype=object)}


def _inputs(cfg: TrainConfig):
    """(Ray Dataset, reference descriptions or None) for ``train.infer.split``."""
    import ray

    from affect_model.train_data import fine_split, media_source, read_parquet, select_rows

    ic = cfg.infer
    uri, key = (ic.input_uri, "train.infer.input_uri") if ic.input_uri else media_source(
        cfg, fine=ic.split != "rows")
    if ic.split == "rows":
        return read_parquet(uri, key), None
    wanted = fine_split(cfg, ic.split)
    table = select_rows(uri, key, wanted)
    return ray.data.from_arrow(table), wanted


def output_uri(cfg: TrainConfig) -> str:
    return cfg.infer.output_uri or storage.join(cfg.storage_path, "infer", f"{cfg.infer.split}.parquet")


def run_inference(run_cfg: Any) -> dict:
    """Describe the configured split / table with the configured checkpoint; returns counts and paths."""
    import ray

    from affect_model.train import resolve_weights
    from cluster.runconfig import save_resolved

    _, cfg = absolute_paths(None, run_cfg.train)
    run_cfg = run_cfg.replace(train=cfg)
    ic = cfg.infer
    default = storage.join(cfg.storage_path, "stage2")
    weights = resolve_weights(ic.checkpoint or default, "train.infer.checkpoint")
    out = output_uri(cfg)
    t0 = time.perf_counter()
    ds, references = _inputs(cfg)
    described = ds.map_batches(
        Describer, fn_constructor_args=(weights, cfg.use_cached_features, ic.max_new_tokens),
        batch_size=ic.batch_size, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=ic.actors),
        num_cpus=ic.cpus_per_actor, num_gpus=ic.gpus_per_actor or None)
    rows = described.select_columns(["name", "description", "error"]).take_all()
    ok = sorted((r for r in rows if not r["error"]), key=lambda r: r["name"])
    failed = [r for r in rows if r["error"]]
    storage.write_table(pa.table({"name": [r["name"] for r in ok],
                                  "description": [r["description"] for r in ok]}), out)
    stem = out[: -len(".parquet")]
    if failed:
        storage.write_table(pa.table({"name": [r["name"] for r in failed],
                                      "error": [r["error"] for r in failed]}), f"{stem}.failures.parquet")
    if references is not None:
        names = sorted(references)
        storage.write_table(pa.table({"name": names, "description": [references[n] for n in names]}),
                            f"{stem}.references.parquet")
    folder, base = stem.rsplit("/", 1) if "/" in stem else (".", stem)
    save_resolved(run_cfg, folder, f"{base}.config.yaml")
    summary = {"output": out, "described": len(ok), "failed": len(failed), "checkpoint": weights,
               "seconds": round(time.perf_counter() - t0, 1)}
    log.info("infer: %d descriptions -> %s (%d failed)", len(ok), out, len(failed))
    return summary
