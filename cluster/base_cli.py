"""Foundation subcommands: ``emer demo`` (the whole method end to end on the embedded default)
and ``emer config`` (print the resolved run config for a preset plus overrides)."""

from __future__ import annotations

import argparse

from cluster.config import dump_yaml


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "demo", parents=[common], help="generate sample clips and run the whole method end to end",
        description="Generate MER-style sample clips, annotate them into EMER-Coarse, train AffectGPT "
                    "(stage 1 and 2, a few steps with tiny models), run inference and evaluate; all on a "
                    "local Ray unless --address is given. Prints where every output went.")
    p.add_argument("--out", default="runs/demo", help="folder (or s3:// prefix) for all demo outputs")
    p.add_argument("--clips", type=int, default=8, help="number of good sample clips to generate")
    p.add_argument("--seed", type=int, default=0, help="seed for the generated clips and models")
    p.set_defaults(func=_demo)

    c = sub.add_parser("config", parents=[common], help="print the resolved run config",
                       description="Load --config (a YAML file or a preset name from configs/) plus dotted "
                                   "overrides, validate it and print the result as YAML.")
    c.set_defaults(func=_config)


def _demo(args: argparse.Namespace) -> int:
    from cluster.demo import run_demo

    return run_demo(args)


def _config(args: argparse.Namespace) -> int:
    from cluster.runconfig import load_run_config

    print(dump_yaml(load_run_config(args.config, args.overrides)), end="")
    return 0
