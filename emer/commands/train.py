"""``emer train`` (Ray Train + DeepSpeed), ``emer features`` (frozen-encoder cache), ``emer infer`` (batch
generation). Settings live in the ``train`` (and ``model``) sections of the run config."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from core import storage
from core.runtime import init_ray
from emer.runconfig import load_run_config
from evaluation.runs import epoch_scorer

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    t = sub.add_parser(
        "train",
        parents=[common],
        help="train AffectGPT: stage 1 on EMER-Coarse, stage 2 on EMER-Fine",
        description="Train the Q-Formers of AffectGPT with Ray Train (TorchTrainer) and DeepSpeed (ZeRO-2 by "
        "default) on every worker; data through Ray Data. Checkpoints, the trainable weights, "
        "history.json and loss/accuracy curves go to <train.storage_path>/<run name> (local or "
        "s3://). Running the same command again resumes from the last checkpoint. Stage 2 starts "
        "from stage 1's weights (train.init_from; default <train.storage_path>/stage1 when it "
        "exists). Example: emer train --stage 1 --config configs/demo.yaml --train.max_steps=4",
    )
    t.add_argument(
        "--stage",
        type=int,
        choices=(1, 2),
        default=None,
        help="1 = EMER-Coarse, 2 = EMER-Fine train split (sets train.stage)",
    )
    t.set_defaults(func=_train)

    f = sub.add_parser(
        "features",
        parents=[common],
        help="cache the frozen encoders' outputs for training (Ray Data job)",
        description="Run the frozen vision and audio encoders once over a media table (EMER-Coarse layout) "
        "and write their outputs to train.features_uri; train with "
        "--train.use_cached_features=true to skip the encoders. Reruns skip cached names.",
    )
    f.add_argument(
        "--input",
        metavar="URI",
        default=None,
        help="media table to encode (sets train.features.source_uri; default train.coarse_uri)",
    )
    f.add_argument("--output", metavar="URI", default=None, help="cache folder (sets train.features_uri)")
    f.set_defaults(func=_features)

    i = sub.add_parser(
        "infer",
        parents=[common],
        help="describe clips with a trained AffectGPT (Ray Data actors)",
        description="Generate EMER descriptions for the EMER-Fine test split (or any split / every row of "
        "a table) with a trained checkpoint and write Parquet (name, description) for "
        "`emer evaluate`, plus references and failures beside it.",
    )
    i.add_argument(
        "--checkpoint",
        metavar="URI",
        default=None,
        help="training run or weights folder (train.infer.checkpoint; default: the stage-2 run)",
    )
    i.add_argument(
        "--split",
        choices=("test", "train", "all", "rows"),
        default=None,
        help="EMER-Fine split to describe, or 'rows': every row of the input (train.infer.split)",
    )
    i.add_argument(
        "--input", metavar="URI", default=None, help="media / features table (train.infer.input_uri)"
    )
    i.add_argument("--output", metavar="URI", default=None, help="output .parquet (train.infer.output_uri)")
    i.add_argument(
        "--question",
        choices=("description", "ovlabel"),
        default=None,
        help="what the official prompt (model.chat_format affectgpt) asks: a description or the "
        "open-vocabulary labels (train.infer.question; default description)",
    )
    i.set_defaults(func=_infer)


def _load(args: argparse.Namespace, flags: dict[str, str | int | None]):
    extra = [f"{key}={value}" for key, value in flags.items() if value is not None]
    run = load_run_config(args.config, list(args.overrides) + extra)
    init_ray(run.ray.replace(address=args.address) if args.address else run.ray)
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

    run = _with_stage1_init(_load(args, {"train.stage": args.stage}))
    result = run_training(run, scorer=epoch_scorer(run.evaluate))
    print(json.dumps({k: result[k] for k in ("run_uri", "weights", "steps", "rows", "metrics")}, default=str))
    if run.train.tensorboard:  # stderr: stdout's last line stays the JSON summary
        print(f"curves: tensorboard --logdir {result['run_uri']}", file=sys.stderr)
    return 0


def _features(args: argparse.Namespace) -> int:
    from affect_model.jobs.features import build_features  # heavy: torch, imported on use

    run = _load(args, {"train.features.source_uri": args.input, "train.features_uri": args.output})
    summary = build_features(run.model, run.train)
    print(json.dumps({k: summary[k] for k in ("output", "rows", "encoded_now", "skipped_done", "failed")}))
    return 0


def _infer(args: argparse.Namespace) -> int:
    from affect_model.jobs.infer import run_inference  # heavy: torch, imported on use

    run = _load(
        args,
        {
            "train.infer.checkpoint": args.checkpoint,
            "train.infer.split": args.split,
            "train.infer.input_uri": args.input,
            "train.infer.output_uri": args.output,
            "train.infer.question": args.question,
        },
    )
    print(json.dumps(run_inference(run)))
    return 0
