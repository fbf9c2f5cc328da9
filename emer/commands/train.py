"""``emer train`` (Ray Train + DeepSpeed), ``emer features`` (frozen-encoder cache), ``emer infer`` (batch
generation). Settings live in the ``train`` (and ``model``) sections of the run config."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from core import storage
from core.runtime import init_ray
from emer.commands import flags
from emer.commands.flags import Parents, config_flag
from evaluation.runs import epoch_scorer

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction, parents: Parents) -> None:
    t = sub.add_parser(
        "train",
        parents=parents.ray,
        help="train AffectGPT: stage 1 on EMER-Coarse, stage 2 on EMER-Fine",
        description="Train the Q-Formers of AffectGPT with Ray Train (TorchTrainer) and DeepSpeed (ZeRO-2 by "
        "default) on every worker; data through Ray Data. Checkpoints, the trainable weights, "
        "history.json and loss/accuracy curves go to <train.storage_path>/<run name> (local or "
        "s3://). Running the same command again resumes from the last checkpoint. Stage 2 starts "
        "from stage 1's weights (train.init_from; default <train.storage_path>/stage1 when it "
        "exists). Example: emer train --stage 1 --config configs/demo.yaml --train.max_steps=4",
    )
    config_flag(
        t,
        "--stage",
        key="train.stage",
        type=int,
        choices=(1, 2),
        help="1 = EMER-Coarse, 2 = EMER-Fine train split (sets train.stage)",
    )
    t.set_defaults(func=_train)

    f = sub.add_parser(
        "features",
        parents=parents.ray,
        help="cache the frozen encoders' outputs for training (Ray Data job)",
        description="Run the frozen vision and audio encoders once over a media table (EMER-Coarse layout) "
        "and write their outputs to train.features_uri; train with "
        "--train.use_cached_features=true to skip the encoders. Reruns skip cached names.",
    )
    config_flag(
        f,
        "--input",
        key="train.features.source_uri",
        metavar="URI",
        help="media table to encode (sets train.features.source_uri; default train.coarse_uri)",
    )
    config_flag(
        f, "--output", key="train.features_uri", metavar="URI", help="cache folder (sets train.features_uri)"
    )
    f.set_defaults(func=_features)

    i = sub.add_parser(
        "infer",
        parents=parents.ray,
        help="describe clips with a trained AffectGPT (Ray Data actors)",
        description="Generate EMER descriptions for the EMER-Fine test split (or any split / every row of "
        "a table) with a trained checkpoint and write Parquet (name, description) for "
        "`emer evaluate`, plus references and failures beside it.",
    )
    config_flag(
        i,
        "--checkpoint",
        key="train.infer.checkpoint",
        metavar="URI",
        help="training run or weights folder (train.infer.checkpoint; default: the stage-2 run)",
    )
    config_flag(
        i,
        "--split",
        key="train.infer.split",
        choices=("test", "train", "all", "rows"),
        help="EMER-Fine split to describe, or 'rows': every row of the input (train.infer.split)",
    )
    config_flag(
        i,
        "--input",
        key="train.infer.input_uri",
        metavar="URI",
        help="media / features table (train.infer.input_uri)",
    )
    config_flag(
        i,
        "--output",
        key="train.infer.output_uri",
        metavar="URI",
        help="output .parquet (train.infer.output_uri)",
    )
    config_flag(
        i,
        "--question",
        key="train.infer.question",
        choices=("description", "ovlabel"),
        help="what the official prompt (model.chat_format affectgpt) asks: a description or the "
        "open-vocabulary labels (train.infer.question; default description)",
    )
    i.set_defaults(func=_infer)


def _load(args: argparse.Namespace):
    run = flags.load(args)
    init_ray(run.ray)
    return run


def _with_stage1_init(run):
    cfg = run.train
    if cfg.stage != 2 or cfg.init_from:
        return run
    stage1 = storage.join(cfg.storage_path, "stage1")
    if storage.exists(storage.join(stage1, "weights")):
        log.info("stage 2 starts from stage 1's weights in %s", stage1)
        return run.replace(train=cfg.replace(init_from=stage1))
    log.warning(
        "stage 2 without stage 1: no weights in %s and train.init_from is empty; the Q-Formers "
        "start from their initialisation",
        stage1,
    )
    return run


def _train(args: argparse.Namespace) -> int:
    from affect_model.train.loop import run_training  # heavy: torch, imported on use

    run = _with_stage1_init(_load(args))
    result = run_training(run, scorer=epoch_scorer(run.evaluate))
    print(json.dumps({k: result[k] for k in ("run_uri", "weights", "steps", "rows", "metrics")}, default=str))
    if run.train.tensorboard:  # stderr: stdout's last line stays the JSON summary
        print(f"curves: tensorboard --logdir {result['run_uri']}", file=sys.stderr)
    return 0


def _features(args: argparse.Namespace) -> int:
    from affect_model.jobs.features import build_features  # heavy: torch, imported on use

    run = _load(args)
    summary = build_features(run.model, run.train)
    print(json.dumps({k: summary[k] for k in ("output", "rows", "encoded_now", "skipped_done", "failed")}))
    return 0


def _infer(args: argparse.Namespace) -> int:
    from affect_model.jobs.infer import run_inference  # heavy: torch, imported on use

    run = _load(args)
    print(json.dumps(run_inference(run)))
    return 0
