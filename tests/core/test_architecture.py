"""The architecture's rules, checked on the code: the import-linter layer contract holds (and breaks
on a bad import), no module import cycles, own-package imports inside functions only where they
defer a heavy library (and say so), ``ruff format`` clean."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("emer", "cluster", "pipelines", "affect_model", "evaluation", "core")
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        found = shutil.which(name)
        if not found:
            pytest.fail(f"{name} is not installed: run `make setup` (it is in the dev extra)")
        return found
    return str(path)


def test_layer_contract_is_kept():
    res = subprocess.run([_tool("lint-imports"), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 kept, 0 broken" in res.stdout


def test_a_bad_import_breaks_the_contract(tmp_path):
    """The same contract on a copy of the tree where the foundation imports a component fails."""
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "core" / "bad.py").write_text("from pipelines import annotate  # core must not do this\n")
    res = subprocess.run(
        [_tool("lint-imports"), "--no-cache"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(tmp_path), "PATH": str(BIN)},
    )
    assert res.returncode == 1, res.stdout + res.stderr
    assert "BROKEN" in res.stdout and "core.bad -> pipelines.annotate" in res.stdout


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_no_import_cycles():
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    assert len(graph.modules) > 50
    assert _cycles(graph) == []


def test_cycle_finder_finds_a_cycle(tmp_path, monkeypatch):
    pkg = tmp_path / "cyc"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from cyc import b\n")
    (pkg / "b.py").write_text("from cyc import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert _cycles(grimp.build_graph("cyc", cache_dir=None)) == [["cyc.a", "cyc.b"]]


def _function_imports(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every own-package import inside a function of ``path``."""
    source = path.read_text()
    lines = source.splitlines()
    out = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for sub in ast.walk(node):
            names = (
                [sub.module or ""]
                if isinstance(sub, ast.ImportFrom) and not sub.level
                else ([a.name for a in sub.names] if isinstance(sub, ast.Import) else [])
            )
            if any(n.split(".")[0] in PACKAGES for n in names):
                out.append((sub.lineno, lines[sub.end_lineno - 1]))
    return out


def test_imports_inside_functions_only_defer_heavy_libraries():
    offenders = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for line, text in _function_imports(path):
                if "# heavy:" not in text:
                    offenders.append(f"{path.relative_to(ROOT)}:{line}: {text.strip()}")
    assert offenders == [], "own-package imports inside functions without a '# heavy:' reason"


def test_function_import_scanner_sees_one(tmp_path):
    f = tmp_path / "m.py"
    f.write_text(
        textwrap.dedent("""
        def f():
            from core import storage
            return storage
    """)
    )
    assert [t.strip() for _, t in _function_imports(f)] == ["from core import storage"]


def test_ruff_format_is_clean():
    res = subprocess.run([_tool("ruff"), "format", "--check", "."], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
