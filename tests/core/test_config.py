"""The config machinery: YAML + dotted overrides, one error naming every problem, shipped presets."""

from __future__ import annotations

import dataclasses

import pytest

from core.config import (
    Config,
    ConfigError,
    apply_overrides,
    check_choice,
    check_range,
    load,
    parse_override,
)
from emer.runconfig import CONFIG_DIR, RunConfig, load_run_config


@dataclasses.dataclass(frozen=True)
class Inner(Config):
    frames: int = 8
    mode: str = "a"

    def problems(self):
        out = []
        check_range(out, "inner.frames", self.frames, 1, 64)
        check_choice(out, "inner.mode", self.mode, ["a", "b"])
        return out


@dataclasses.dataclass(frozen=True)
class Outer(Config):
    name: str = "x"
    rate: float = 0.5
    tags: list[str] = dataclasses.field(default_factory=list)
    inner: Inner = dataclasses.field(default_factory=Inner)


def test_overrides_are_typed_and_nested():
    cfg = Outer.from_dict(apply_overrides({}, ["inner.frames=4", "rate=1", "tags=[a, b]", "--inner.mode=b"]))
    assert cfg.inner.frames == 4 and cfg.inner.mode == "b"
    assert cfg.rate == 1.0 and isinstance(cfg.rate, float)
    assert cfg.tags == ["a", "b"]


def test_every_problem_is_reported_once_with_key_value_and_allowed():
    with pytest.raises(ConfigError) as info:
        Outer.from_dict({"inner": {"frames": 0, "mode": "z", "framez": 3}, "rate": "fast", "nme": "y"})
    problems = info.value.problems
    assert "inner.frames = 0: must be between 1 and 64" in problems
    assert "inner.mode = 'z': must be one of 'a', 'b'" in problems
    assert any(p.startswith("inner.framez: unknown key; did you mean 'inner.frames'") for p in problems)
    assert "rate = 'fast': must be a number" in problems
    assert any(p.startswith("nme: unknown key; did you mean 'name'") for p in problems)
    assert len(problems) == 5
    assert str(info.value).count("\n  - ") == 5


def test_direct_construction_validates():
    with pytest.raises(ConfigError, match="inner.frames = 100"):
        Inner(frames=100)


def test_parse_override_needs_equals():
    assert parse_override("--a.b=3") == ("a.b", 3)
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_override("a.b")


def test_missing_and_malformed_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load(Outer, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("inner: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(Outer, bad)


@pytest.mark.parametrize("preset", sorted(p.name for p in CONFIG_DIR.glob("*.yaml")))
def test_every_shipped_preset_loads(preset):
    cfg = load_run_config(str(CONFIG_DIR / preset))
    assert isinstance(cfg, RunConfig)
    assert cfg.name


def test_preset_name_without_path_and_bad_value_error():
    cfg = load_run_config("demo", ["ray.num_cpus=2"])
    assert cfg.ray.num_cpus == 2
    with pytest.raises(ConfigError) as info:
        load_run_config("demo", ["ray.num_cpus=-1"])
    assert info.value.problems == ["ray.num_cpus = -1: must be >= 0 (from --ray.num_cpus)"]


def test_presets_compose_key_by_key_with_sources(tmp_path, capsys):
    """`emer config --config demo --config cluster --annotate.frames=6`: later files win key by key,
    each printed value names the file or flag it came from."""
    from emer.cli import main

    assert main(["config", "--config", "demo", "--config", "cluster", "--annotate.frames=6"]) == 0
    out = capsys.readouterr().out
    demo, cluster = str(CONFIG_DIR / "demo.yaml"), str(CONFIG_DIR / "cluster.yaml")
    annotate = out.split("\nannotate:\n")[1].split("\n")
    assert annotate[0] == "  frames: 6  # --annotate.frames"
    assert annotate[1] == f"  frame_size: 112  # {demo}"  # set by demo only
    assert out.startswith(f"name: emer-cluster  # {cluster}\n")  # both set it: the later file wins
    assert "  dashboard_port: 8265  # default\n" in out
    cfg = load_run_config(["demo", "cluster"], ["annotate.frames=6"])
    assert cfg.annotate.frames == 6 and cfg.annotate.frame_size == load_run_config("demo").annotate.frame_size
    assert cfg.name == load_run_config("cluster").name


def test_a_wrong_key_in_the_second_file_names_that_file(tmp_path):
    second = tmp_path / "second.yaml"
    second.write_text("annotate:\n  framez: 6\ntrain:\n  batch_size: many\n")
    with pytest.raises(ConfigError) as info:
        load_run_config(["demo", str(second)])
    problems = info.value.problems
    assert len(problems) == 2
    assert problems[0].startswith("annotate.framez: unknown key; did you mean 'annotate.frames'?")
    assert all(p.endswith(f"(from {second})") for p in problems)
    assert "must be an integer" in problems[1]


@pytest.mark.parametrize(
    "value", ["wait...", "...", "1.5", "a: b", "null", "x", 1.5, 3, True, None, [1, "2"], {"a": 1}]
)
def test_format_override_is_the_inverse_of_parse_override(value):
    from core.config import format_override

    assert parse_override(format_override("annotate.text.prompt", value)) == ("annotate.text.prompt", value)
