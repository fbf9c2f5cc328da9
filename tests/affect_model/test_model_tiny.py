"""Tiny encoder checkpoints are built atomically: a reader sees no folder or a complete one."""

from __future__ import annotations

import pytest

from affect_model.model import tiny
from core.llm.tiny import MARKER


def test_an_interrupted_build_leaves_nothing_and_a_finished_one_is_reused(tmp_path):
    out = tmp_path / "models" / "tiny-x"

    def broken(folder):
        (folder / "config.json").write_text("{}")
        raise RuntimeError("killed half way")

    with pytest.raises(RuntimeError, match="half way"):
        tiny.build_folder(out, "x", broken)
    assert not out.exists() and list(out.parent.iterdir()) == []  # no half model, no temp folder
    calls = []

    def make(folder):
        calls.append(folder)
        (folder / "config.json").write_text('{"ok": true}')

    assert tiny.build_folder(out, "x", make) == str(out) == tiny.build_folder(out, "x", make)
    assert len(calls) == 1 and calls[0] != out  # built elsewhere, then renamed into place
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "config.json"]
    assert [p.name for p in out.parent.iterdir()] == ["tiny-x"]


def test_a_half_written_folder_of_an_older_build_is_replaced(tmp_path):
    out = tmp_path / "tiny-y"
    out.mkdir()
    (out / "stale.bin").write_text("partial")
    tiny.build_folder(out, "y", lambda folder: (folder / "config.json").write_text("{}"))
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "config.json"]
