"""The ``emer`` command: one subcommand per job, thin (parse, load config, call).

Each module in ``emer.commands`` adds its subcommands through ``register(subparsers, parents)``;
``parents`` (``emer.commands.flags.Parents``) says what a subcommand takes: no config, ``--config``,
or ``--config`` and ``--address``. Dotted overrides such as ``--annotate.frames=8`` are collected into
``args.overrides``; a command that takes no config refuses them.
"""

from __future__ import annotations

import argparse
import logging
import sys

from core.config import ConfigError
from core.failures import RunFailed
from emer.commands import annotate, base, clips, evaluate, exchange, fine, flags, jobs, noise, review, train

log = logging.getLogger(__name__)

COMMANDS = (base, clips, annotate, fine, review, exchange, train, evaluate, jobs, noise)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emer",
        description="Explainable multimodal emotion recognition at cluster scale: annotate clips into "
        "EMER-Coarse, train AffectGPT, evaluate, and run it all on Ray. Any config key can be "
        "overridden with a dotted flag, e.g. --annotate.frames=8.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    shared = flags.parents()
    for module in COMMANDS:
        module.register(sub, shared)
    return parser


def split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """Separate dotted ``--a.b=c`` / ``--a.b c`` overrides from ordinary arguments."""
    rest, overrides = [], []
    i = 0
    while i < len(argv):
        arg = argv[i]
        key = arg[2:].split("=", 1)[0] if arg.startswith("--") else ""
        if "." in key and not key.startswith("."):
            if "=" in arg:
                overrides.append(arg[2:])
            elif i + 1 < len(argv):
                overrides.append(f"{key}={argv[i + 1]}")
                i += 1
            else:
                overrides.append(f"{key}=")
        else:
            rest.append(arg)
        i += 1
    return rest, overrides


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    rest, overrides = split_overrides(argv)
    parser = build_parser()
    args = parser.parse_args(rest)
    args.overrides = overrides
    logging.basicConfig(
        level=getattr(args, "log_level", None) or ("WARNING" if args.command == "demo" else "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if overrides and not hasattr(args, "config"):
        print(f"emer {args.command}: takes no config; not a flag here: --{overrides[0]}", file=sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except RunFailed as err:
        print(f"emer {args.command}: failed: {err}", file=sys.stderr)
        return 1
    except ConfigError as err:
        print(f"emer {args.command}: {err}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as err:
        print(f"emer {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"emer {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
