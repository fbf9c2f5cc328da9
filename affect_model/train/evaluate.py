"""Per-epoch evaluation inside the Ray Train loop: generate on the EMER-Fine test split, score on rank 0.

Every worker reads the whole (unsplit) ``eval`` dataset and generates for every ``world``-th batch;
the descriptions are gathered on rank 0, which writes ``eval/epoch_NNN.parquet`` (``name, description``,
what ``emer evaluate`` reads) and scores it with the run's ``scorer``: a callable the application
layer hands to ``run_training`` (``evaluation.runs.score_epoch`` with the ``evaluate`` section; this
package never imports ``evaluation``). OV labels are extracted from each description
(``train.eval_extractor``: the model's own frozen LLM, the ``evaluate.llm`` model, or none) and
compared set-wise with the ground truth; BLEU / ROUGE-L compare with the reference texts. Without a
scorer the predictions are written and no metrics are reported.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from affect_model.train.job import WorkerContext
from affect_model.train.report import write_ground_truth, write_predictions
from affect_model.train.task import to_device
from core import storage
from core.llm import Completer
from core.schema import DESCRIPTION_EN, OV_LABELS

log = logging.getLogger(__name__)


def _generate_share(ctx: WorkerContext) -> list[dict]:
    import ray.train

    cfg, task, module = ctx.cfg, ctx.task, ctx.module
    out: list[dict] = []
    shard = ray.train.get_dataset_shard("eval")
    for j, batch in enumerate(shard.iter_batches(batch_size=cfg.batch_size, batch_format="numpy")):
        if j % ctx.world != ctx.rank:
            continue
        model_batch = ctx.engine.cast(to_device(task.collate(module, batch, with_answer=False), ctx.device))
        texts = task.generate(module, model_batch, cfg.eval_new_tokens)  # as `emer infer`
        labels = batch.get(OV_LABELS)
        for i, text in enumerate(texts):
            row = {
                "name": str(batch["name"][i]),
                "description": text,
                "reference": str(batch[DESCRIPTION_EN][i]),
            }
            if labels is not None and labels[i] is not None:
                row["labels"] = [str(x) for x in labels[i]]
            out.append(row)
    return out


def _ground_truth_labels(rows: list[dict]) -> dict[str, list[str]] | None:
    """The annotation's OV labels of the test rows (EMER-Coarse ``ov_labels``), when every row has them."""
    if rows and all("labels" in r for r in rows):
        return {r["name"]: r["labels"] for r in rows}
    return None


def _extractor(ctx: WorkerContext) -> Callable[[list[str]], list[str]] | None:
    kind, eval_llm = ctx.cfg.eval_extractor, ctx.job.eval_llm
    if kind == "model":
        return ctx.task.label_extractor(ctx.module)
    if kind == "llm" and eval_llm is not None:
        return Completer.from_config(eval_llm)
    return None


def evaluate_epoch(ctx: WorkerContext, epoch: int) -> dict[str, float]:
    """Metrics of this epoch on rank 0 (``{}`` on the other ranks)."""
    mine = _generate_share(ctx)
    gathered = [mine]
    if ctx.world > 1:
        import torch.distributed as dist

        gathered = [None] * ctx.world
        dist.all_gather_object(gathered, mine)
    if ctx.rank != 0:
        return {}
    rows = [r for part in gathered for r in part]
    folder = storage.join(ctx.cfg.run_uri, "eval")
    pred_uri = storage.join(folder, f"epoch_{epoch:03d}.parquet")
    gt_uri = storage.join(folder, "ground_truth.parquet")
    write_predictions(rows, pred_uri)
    write_ground_truth(rows, _ground_truth_labels(rows), gt_uri)
    scorer = ctx.job.scorer
    if scorer is None:
        log.info("epoch %d: %d predictions in %s (no scorer given: not scored)", epoch, len(rows), pred_uri)
        return {}
    metrics = scorer(gt_uri, pred_uri, _extractor(ctx), labels_uri=ctx.cfg.eval_gt_uri)
    log.info(
        "epoch %d eval on %d EMER-Fine test samples: %s",
        epoch,
        len(rows),
        " ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items())),
    )
    return {f"eval_{k}" if not k.startswith("eval_") else k: v for k, v in metrics.items()}
