"""The one route from command-line flags to the run config.

A flag that sets a config key is declared with that key (``config_flag(p, "--retry-failed",
key="annotate.retry_failed", ...)``); ``load(args)`` turns the flags given into dotted overrides, after
the user's own ``--a.b=c`` ones (a named flag wins), and builds the config once. So the config a
command runs is the config it saves (``config.yaml``, the manifest, ``evaluate-config.yaml``), and
``emer config`` shows each flag's value under the key it sets (the dotted key as its source).

The parent parsers say what a command takes: ``Parents.plain`` (``--log-level`` only: no config, and
dotted overrides are refused), ``Parents.config`` (+ ``--config``) and ``Parents.ray`` (+ ``--address``,
the flag of ``ray.address``).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from typing import Any

from core.config import format_override
from emer.runconfig import RunConfig, load_run_config, split_configs

FLAG_KEYS = "_config_flags"  # namespace attribute: {flag dest: dotted config key}


def config_flag(parser: argparse.ArgumentParser, *names: str, key: str, **kwargs: Any) -> argparse.Action:
    """Add a flag that sets config ``key``; not given (default None), the config's value stands."""
    kwargs.setdefault("default", None)
    action = parser.add_argument(*names, **kwargs)
    table = dict(parser.get_default(FLAG_KEYS) or {})
    table[action.dest] = key
    parser.set_defaults(**{FLAG_KEYS: table})
    return action


def flag_overrides(args: argparse.Namespace) -> list[str]:
    """The dotted overrides of the declared flags given on the command line, in declaration order."""
    table: dict[str, str] = getattr(args, FLAG_KEYS, None) or {}
    values = {dest: getattr(args, dest, None) for dest in table}
    return [format_override(key, values[dest]) for dest, key in table.items() if values[dest] is not None]


def overrides(args: argparse.Namespace, extra: Sequence[str] = ()) -> list[str]:
    """Everything after the presets: the user's dotted overrides, the declared flags, then ``extra``."""
    return [*(getattr(args, "overrides", None) or []), *flag_overrides(args), *extra]


def load(args: argparse.Namespace, extra: Sequence[str] = (), default: Sequence[str] = ()) -> RunConfig:
    """The run config of a command: ``--config`` (else ``default``) and ``overrides(args, extra)``."""
    return load_run_config(getattr(args, "config", None) or list(default) or None, overrides(args, extra))


class ConfigAppend(argparse.Action):
    """``--config a --config b,c``: every preset named, in order (commas separate presets too)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        given = getattr(namespace, self.dest, None) or []
        setattr(namespace, self.dest, [*given, *split_configs([values])])


@dataclasses.dataclass(frozen=True)
class Parents:
    """The parent parsers a subcommand picks from (what it takes besides its own flags)."""

    plain: list[argparse.ArgumentParser]
    config: list[argparse.ArgumentParser]
    ray: list[argparse.ArgumentParser]


def _log_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--log-level",
        default=None,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging verbosity (default INFO; WARNING for emer demo, which prints one line per phase)",
    )
    return p


def _config_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--config",
        metavar="NAME|FILE.yaml",
        action=ConfigAppend,
        default=None,
        help="run config: a preset name from configs/ or a YAML file; give several (repeated or "
        "comma-separated, e.g. --config stage1,affectgpt-v1) to compose, later ones overriding "
        "earlier ones key by key; defaults when omitted. Any key can also be set with a dotted "
        "flag, e.g. --annotate.frames=8",
    )
    return p


def _ray_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    config_flag(
        p,
        "--address",
        key="ray.address",
        help="Ray cluster address (sets ray.address; default: $RAY_ADDRESS, else start a local Ray)",
    )
    return p


def parents() -> Parents:
    log, config = _log_parser(), _config_parser()
    return Parents(plain=[log], config=[log, config], ray=[log, config, _ray_parser()])
