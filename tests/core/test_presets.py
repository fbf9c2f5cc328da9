"""The papers' presets have one source: ``configs/*.yaml``. No Python module holds a second copy of
one (a dict or call setting several of a preset's values), and nothing advertises a preset
combination that does not load."""

from __future__ import annotations

import ast
import re

import pytest

from affect_model.model.config import debug_config, official_switches
from core.config import read_yaml
from emer.runconfig import CONFIG_DIR, ROOT, RunConfig, load_run_config

PAPER_PRESETS = ("affectgpt-qwen25", "affectgpt-v1", "emer-coarse", "stage1", "stage2")
CODE = ("core", "pipelines", "affect_model", "evaluation", "emer", "cluster", "benchmarks")
SCALAR = (str, int, float, bool)


def _set_by(name: str) -> set[tuple[str, object]]:
    """(key, value) of every scalar the preset sets to other than the default."""
    defaults = RunConfig().to_dict()
    pairs = set()
    for section, values in read_yaml(CONFIG_DIR / f"{name}.yaml").items():
        for key, value in values.items() if isinstance(values, dict) else ():
            if isinstance(value, SCALAR) and defaults.get(section, {}).get(key, object()) != value:
                pairs.add((key, value))
    return pairs


def _literals(tree: ast.AST):
    """(line, {(key, constant)}) of every call's keywords and every dict literal with string keys."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            items = [(kw.arg, kw.value) for kw in node.keywords if kw.arg]
        elif isinstance(node, ast.Dict):
            items = [(k.value, v) for k, v in zip(node.keys, node.values) if isinstance(k, ast.Constant)]
        else:
            continue
        pairs = {(k, v.value) for k, v in items if isinstance(v, ast.Constant) and isinstance(k, str)}
        if pairs:
            yield node.lineno, pairs


def test_no_module_builds_a_second_copy_of_a_paper_preset():
    presets = {name: _set_by(name) for name in PAPER_PRESETS}
    assert all(presets.values())
    copies = []
    for path in sorted(p for top in CODE for p in (ROOT / top).rglob("*.py")):
        for line, pairs in _literals(ast.parse(path.read_text())):
            copies += [
                f"{path.relative_to(ROOT)}:{line} ~ {n}" for n, p in presets.items() if len(pairs & p) >= 3
            ]
    assert not copies, copies


def test_the_tiny_official_config_takes_its_switches_from_the_preset(tmp_path):
    model = read_yaml(CONFIG_DIR / "affectgpt-qwen25.yaml")["model"]
    assert official_switches() == {k: model[k] for k in official_switches()}
    tiny = debug_config(tmp_path, layout="affectgpt")
    assert all(getattr(tiny, k) == v for k, v in official_switches().items())


def _advertised() -> set[str]:
    texts = [
        p.read_text() for p in [*CONFIG_DIR.glob("*.yaml"), ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
    ]
    found = set()
    for text in texts:
        found |= {
            " ".join(m.split())
            for m in re.findall(r"--config[ =]([\w.,/-]+(?: --config[ =][\w.,/-]+)*)", text)
        }
    return found


@pytest.mark.parametrize("combo", sorted(_advertised()))
def test_every_advertised_config_combination_loads(combo):
    names = re.split(r" --config[ =]", combo)
    if any(re.fullmatch(r"[a-z]|[A-Z_]+(\.yaml)?", n) for name in names for n in name.split(",")):
        pytest.skip(f"{combo}: a placeholder")
    load_run_config(names)
