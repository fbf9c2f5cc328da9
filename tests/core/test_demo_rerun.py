"""A finished ``emer demo`` (its ``summary.json`` written last, for the same config) is not run again:
the rerun prints the saved summary without generating anything or starting Ray; another config runs
the demo."""

from __future__ import annotations

import argparse
import json

import pytest

from emer import demo


class Started(Exception):
    pass


def _args(out, **changes) -> argparse.Namespace:
    base = dict(out=str(out), config=None, overrides=[], address=None, clips=9, seed=0, log_level=None)
    return argparse.Namespace(**{**base, **changes})


def _summary(digest: str) -> dict:
    phase = {"phase": "train", "what": "stage 1 loss 3.1 -> 1.2", "seconds": 12.5, "at_s": 12.5}
    scores = {"annotation (OV labels)": {"scored": 8, "avg": 0.5}}
    return {"config_digest": digest, "seconds": 99.0, "phases": [phase], "stage1_loss": [3.1, 1.2],
            "scores": scores, "outputs": {"evaluation report": "x/report.md"}}  # fmt: skip


def test_a_finished_demo_prints_its_summary_without_ray(models_cache, tmp_path, monkeypatch, capsys):
    def started(*a, **k):
        raise Started

    monkeypatch.setattr(demo, "generate_samples", started)  # the first phase that does work
    monkeypatch.setattr(demo, "init_ray", started)
    args = _args(tmp_path)
    digest = demo.demo_digest(demo.demo_config(args), args)
    (tmp_path / demo.SUMMARY).write_text(json.dumps(_summary(digest)))
    assert demo.run_demo(args) == 0
    out = capsys.readouterr().out
    assert f"finished before (config {digest})" in out
    assert "stage 1 loss 3.1 -> 1.2" in out and "8 scored" in out and "x/report.md" in out

    changed = _args(tmp_path, overrides=["train.max_steps=5"])
    assert demo.demo_digest(demo.demo_config(changed), changed) != digest
    with pytest.raises(Started):  # another config: the demo runs (up to its samples phase here)
        demo.run_demo(changed)
