"""The `emer` CLI: every subcommand has help text on every flag; bad config is one clear error."""

from __future__ import annotations

import argparse

import pytest

from emer.cli import build_parser, main, split_overrides


def _subcommands(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                for inner_name, inner in _subcommands(sub):
                    yield f"{name} {inner_name}", inner


def test_every_flag_has_help():
    parser = build_parser()
    names = [n for n, _ in _subcommands(parser)]
    assert {"demo", "config"} <= set(names)
    for name, sub in _subcommands(parser):
        for action in sub._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            assert action.help and action.help != argparse.SUPPRESS, f"emer {name}: {action.dest} has no help"


def test_help_runs_for_every_subcommand(capsys):
    for name, _ in list(_subcommands(build_parser())):
        with pytest.raises(SystemExit) as info:
            main([*name.split(), "--help"])
        assert info.value.code == 0
        assert "usage: emer" in capsys.readouterr().out


def test_split_overrides():
    rest, overrides = split_overrides(["demo", "--out", "x", "--annotate.frames=8", "--ray.num_cpus", "2"])
    assert rest == ["demo", "--out", "x"]
    assert overrides == ["annotate.frames=8", "ray.num_cpus=2"]


def test_bad_config_value_is_one_clear_error(capsys):
    assert main(["config", "--ray.num_cpus=-1", "--ray.dashboard_port=80"]) == 2
    err = capsys.readouterr().err
    assert "ray.num_cpus = -1: must be >= 0" in err
    assert "ray.dashboard_port = 80: must be between 1024 and 65535" in err
    assert err.count("  - ") == 2
