"""docs/fidelity.md stays true: every `key = value` its emer columns name is what the preset holds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

DOC = Path(__file__).resolve().parents[2] / "docs" / "fidelity.md"
PRESET = re.compile(r"^Preset: `emer train --stage 1 (?P<configs>(?:--config [\w-]+ ?)+)`", re.M)
ASSIGN = re.compile(r"`((?:model|train)\.[\w.]+) = ([^`]+)`")
VERDICTS = ("yes", "no", "partly", "unknown")


def tables() -> list[tuple[list[str], list[list[str]]]]:
    """(config names, table rows as cells) per preset section of the document."""
    text = DOC.read_text(encoding="utf-8")
    out = []
    starts = list(PRESET.finditer(text))
    for i, m in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
        names = re.findall(r"--config ([\w-]+)", m.group("configs"))
        rows = [
            [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            for line in text[m.end() : end].splitlines()
            if line.startswith("| ") and not line.startswith("| part") and not line.startswith("| ---")
        ]
        out.append((names, rows))
    return out


def value_of(run, key: str):
    obj = run
    for part in key.split("."):
        obj = getattr(obj, part)
    return list(obj) if isinstance(obj, tuple) else obj


def test_the_document_covers_both_papers_and_every_issue_row():
    found = tables()
    assert [names for names, _ in found] == [["stage1", "affectgpt-qwen25"], ["stage1", "affectgpt-v1"]]
    official_parts = {row[0] for row in found[0][1]}
    for part in ("per-modality pooling", "tokens into the LLM", "pre-fusion", "video encoder", "audio clips",
                 "prompt", "training target", "optimisation", "decoding", "checkpoint"):  # fmt: skip
        assert part in official_parts, part


@pytest.mark.parametrize("index", [0, 1])
def test_every_listed_value_is_the_presets(index):
    from emer.runconfig import load_run_config

    names, rows = tables()[index]
    run = load_run_config(names)
    checked = 0
    for row in rows:
        assert len(row) == 4, row
        assert row[3].split(",")[0].split(":")[0].strip() in VERDICTS, row
        for key, raw in ASSIGN.findall(row[2]):
            want = yaml.safe_load(raw)
            assert value_of(run, key) == want, (
                f"{row[0]}: {key} is {value_of(run, key)!r}, the table says {want!r}"
            )
            checked += 1
    assert checked >= 15
