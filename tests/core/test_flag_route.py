"""One route from command-line flags to the run config (``emer.commands.flags``): every flag that names
a config key becomes a dotted override before the config is built, so what a command saves is what it
ran; commands that take no config offer no ``--config``; ``--config a,b`` is ``--config a --config b``.
"""

from __future__ import annotations

import argparse
import json

import pytest
import yaml

from emer.cli import build_parser, main
from emer.commands import flags
from emer.commands.flags import FLAG_KEYS
from emer.runconfig import load_run_config

# What takes a config (every other command refuses --config and dotted overrides).
WITH_CONFIG = {
    "demo",
    "config",
    "clips",
    "annotate",
    "noise",
    "filter",
    "train",
    "features",
    "infer",
    "submit",
    "models import-affectgpt",
    *(f"evaluate {w}" for w in ("ov", "text", "extract", "runs", "compare", "report", "hit", "sentiment")),
}
WITHOUT_CONFIG = {
    ("review", "--data", "d"),
    ("export", "fine", "--data", "d", "--output", "f.csv"),
    ("export", "label-studio", "--data", "d", "--output", "t.json"),
    ("import", "label-studio", "--data", "d", "--input", "t.json", "--reviewer", "me"),
    ("samples", "d"),
    ("models", "prepare"),
    ("models", "export-affectgpt", "run", "--output", "x.pth"),
    ("jobs", "list"),
}


def _leaves(parser: argparse.ArgumentParser, prefix: str = ""):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix.strip(), parser
    for action in subs:
        for name, sub in action.choices.items():
            yield from _leaves(sub, f"{prefix} {name}")


def _takes_config(parser: argparse.ArgumentParser) -> bool:
    return any("--config" in a.option_strings for a in parser._actions)


def test_only_the_commands_that_build_a_config_offer_config():
    offered = {name for name, sub in _leaves(build_parser()) if _takes_config(sub)}
    assert offered == WITH_CONFIG


@pytest.mark.parametrize("argv", sorted(WITHOUT_CONFIG))
def test_commands_without_a_config_refuse_config_and_dotted_overrides(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main([*argv, "--config", "demo"])
    assert info.value.code == 2 and "unrecognized arguments: --config demo" in capsys.readouterr().err
    assert main([*argv, "--annotate.frames=8"]) == 2
    assert "takes no config; not a flag here: --annotate.frames=8" in capsys.readouterr().err


NEEDS = {"train.stage": ["train.fine_uri=fine.csv"]}  # stage 2 needs its EMER-Fine CSV named


def _value(action: argparse.Action):
    """A value for the flag (as typed, as the config should hold it): strings YAML would misread."""
    if isinstance(action, argparse._StoreTrueAction):
        return [], True
    if isinstance(action, argparse._StoreFalseAction):
        return [], False
    if action.choices:
        choice = list(action.choices)[-1]
        return [str(choice)], choice
    if action.type is float:
        return ["0.25"], 0.25
    if action.type is int:
        return ["7"], 7
    return ["1.5: x.parquet"], "1.5: x.parquet"  # a string YAML would misread (as a mapping)


def _required(parser: argparse.ArgumentParser) -> list[str]:
    argv: list[str] = []
    for a in parser._actions:
        if a.required and a.option_strings:
            argv += [a.option_strings[0], "x"]
        elif not a.option_strings and a.nargs is None:
            argv.append("x")
    return argv


def _get(cfg, key: str):
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _flag_cases():
    for name, sub in _leaves(build_parser()):
        for dest, key in (sub.get_default(FLAG_KEYS) or {}).items():
            action = next(a for a in sub._actions if a.dest == dest)
            yield pytest.param(sub, action, key, id=f"{name} {action.option_strings[0]}")


@pytest.mark.parametrize(("sub", "action", "key"), list(_flag_cases()))
def test_every_named_flag_sets_its_config_key(sub, action, key):
    given, expected = _value(action)
    args = sub.parse_args([*_required(sub), action.option_strings[0], *given])
    # the user's dotted override of the same key: the named flag wins over it
    args.overrides = [f"{key}=null", *NEEDS.get(key, [])]
    run = flags.load(args)
    assert _get(run, key) == expected
    assert _get(load_run_config(), key) != expected  # not the default by chance


def test_config_shows_a_flag_with_its_value(emer):
    rc, out, err = emer("config", "--address", "ray://head:10001")
    assert rc == 0, err
    assert "address: ray://head:10001  # --ray.address" in out


def test_evaluate_saves_the_config_its_flags_made(emer, tmp_path):
    gt, pred = tmp_path / "gt.csv", tmp_path / "pred.csv"
    gt.write_text("name,openset\na,\"['happy']\"\nb,\"['sad']\"\n")
    pred.write_text("name,openset\na,\"['happy']\"\nb,\"['angry']\"\n")
    out = tmp_path / "report"
    named = ["--grouping", "exact", "--list-parser", "literal", "--max-failure-fraction", "0.3"]
    rc, stdout, err = emer("evaluate", "ov", "--gt", gt, "--pred", pred, "--out", out, "--json", *named)
    assert rc == 0, err
    assert json.loads(stdout)["accuracy"] == 0.5
    saved = yaml.safe_load((out / "evaluate-config.yaml").read_text())
    assert (saved["grouping"], saved["list_parser"], saved["max_failure_fraction"]) == (
        "exact",
        "literal",
        0.3,
    )
    assert (
        saved["out"] == str(out) and (out / "ov-samples.csv").is_file() and (out / "ov-samples.png").is_file()
    )
    assert (
        emer("evaluate", "ov", "--gt", gt, "--pred", pred, "--out", tmp_path / "none", "--no-report")[0] == 0
    )
    assert not (tmp_path / "none").exists()  # --no-report is evaluate.report = false


def test_comma_separated_presets_compose_like_repeated_config(emer):
    assert load_run_config(["stage1,affectgpt-v1"]) == load_run_config(["stage1", "affectgpt-v1"])
    assert load_run_config("stage2, affectgpt-qwen25") == load_run_config(["stage2", "affectgpt-qwen25"])
    rc, comma, err = emer("config", "--config", "stage1,affectgpt-v1", "--config", "cluster")
    assert rc == 0, err
    assert comma == emer("config", "--config", "stage1", "--config", "affectgpt-v1", "--config", "cluster")[1]
    assert "name: affectgpt-v1" not in comma and "name: emer-cluster" in comma  # later presets win
