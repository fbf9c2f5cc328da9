"""Per-epoch evaluation inside the Ray Train loop: generate on the EMER-Fine test split, score on rank 0.

Every worker reads the whole (unsplit) ``eval`` dataset and generates for every ``world``-th batch;
the descriptions are gathered on rank 0, which writes ``eval/epoch_NNN.parquet`` (``name, description``,
what ``emer evaluate`` reads) and scores it with ``evaluation/``: OV labels are extracted from each
description (``train.eval_extractor``: the model's own frozen LLM, the ``evaluate.llm`` endpoint, or
none) and compared set-wise with the ground truth; BLEU / ROUGE-L compare with the reference texts.
"""

from __future__ import annotations

import logging
from typing import Any

from affect_model.train_report import score_epoch, write_ground_truth, write_predictions
from affect_model.train_task import to_device
from cluster import storage

log = logging.getLogger(__name__)


def _generate_share(loop: Any) -> list[dict]:
    import ray.train

    cfg, task, module = loop.cfg, loop.task, loop.engine.module
    out: list[dict] = []
    shard = ray.train.get_dataset_shard("eval")
    for j, batch in enumerate(shard.iter_batches(batch_size=cfg.batch_size, batch_format="numpy")):
        if j % loop.world != loop.rank:
            continue
        model_batch = loop.engine.cast(to_device(task.collate(module, batch, with_answer=False), loop.device))
        texts = task.generate(module, model_batch, cfg.eval_max_new_tokens)
        labels = batch.get("labels")
        for i, text in enumerate(texts):
            row = {"name": str(batch["name"][i]), "description": text,
                   "reference": str(batch["description_en"][i])}
            if labels is not None and labels[i] is not None:
                row["labels"] = [str(x) for x in labels[i]]
            out.append(row)
    return out


def _ground_truth_labels(loop: Any, rows: list[dict]) -> dict[str, list[str]] | None:
    cfg, eval_cfg = loop.cfg, loop.eval_cfg
    if cfg.eval_gt_uri:
        from evaluation.tables import label_lists, read_table

        table = read_table(cfg.eval_gt_uri, eval_cfg.name_column)
        return dict(zip(table.names, label_lists(table, eval_cfg.labels_column, eval_cfg.list_parser)))
    if rows and all("labels" in r for r in rows):
        return {r["name"]: r["labels"] for r in rows}
    return None


def _extractor(loop: Any):
    kind = loop.cfg.eval_extractor
    if kind == "model":
        return loop.task.label_extractor(loop.engine.module)
    if kind == "llm":
        from evaluation.llm import OpenAIComplete

        return OpenAIComplete(loop.eval_cfg.llm)
    return None


def evaluate_epoch(loop: Any, epoch: int) -> dict[str, float]:
    """Metrics of this epoch on rank 0 (``{}`` on the other ranks)."""
    mine = _generate_share(loop)
    gathered = [mine]
    if loop.world > 1:
        import torch.distributed as dist

        gathered = [None] * loop.world
        dist.all_gather_object(gathered, mine)
    if loop.rank != 0:
        return {}
    if loop.eval_cfg is None:
        from evaluation.config import EvaluateConfig

        loop.eval_cfg = EvaluateConfig()
    rows = [r for part in gathered for r in part]
    folder = storage.join(loop.run_uri, "eval")
    pred_uri = storage.join(folder, f"epoch_{epoch:03d}.parquet")
    gt_uri = storage.join(folder, "ground_truth.parquet")
    write_predictions(rows, pred_uri)
    write_ground_truth(rows, _ground_truth_labels(loop, rows), gt_uri)
    metrics = score_epoch(gt_uri, pred_uri, loop.eval_cfg, _extractor(loop))
    log.info("epoch %d eval on %d EMER-Fine test samples: %s", epoch, len(rows),
             " ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items())))
    return {f"eval_{k}" if not k.startswith("eval_") else k: v for k, v in metrics.items()}
