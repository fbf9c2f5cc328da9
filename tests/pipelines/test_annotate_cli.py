"""``emer annotate`` and ``emer samples`` through the real CLI entry point."""

from __future__ import annotations

import json

import pytest
from annotate_helpers import all_inputs, check_every_name_once

from emer.cli import main

FAST = ["--annotate.stop_after=check", "--annotate.stages.decode.actors=1"]


@pytest.mark.timeout(300)
def test_annotate_command_then_retry_failed(s3, ray_local, sample_clips, tmp_path, capsys):
    out = tmp_path / "out"
    args = [
        "annotate",
        "--input",
        str(sample_clips.root / "clips"),
        "--subtitles",
        str(sample_clips.subtitles),
        "--output",
        str(out),
        *FAST,
    ]
    assert main(args) == 0
    assert "14 inputs -> 8 samples, 3 rejected, 3 failed" in capsys.readouterr().out
    check_every_name_once(str(out), all_inputs(sample_clips))
    resolved = (out / "config.yaml").read_text()
    assert "annotate:" in resolved and "stop_after: check" in resolved and "storage:" in resolved

    assert main([*args, "--retry-failed"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["this_run"]["attempted"] == 6 and manifest["this_run"]["skipped_finished"] == 8
    assert manifest["counts"]["ok"] == 8
    check_every_name_once(str(out), all_inputs(sample_clips))


def test_annotate_command_reports_bad_input(tmp_path, capsys):
    subs = tmp_path / "s.csv"
    subs.write_text("name,chinese,english\n")
    code = main(
        [
            "annotate",
            "--input",
            str(tmp_path / "missing"),
            "--subtitles",
            str(subs),
            "--output",
            str(tmp_path / "o"),
            *FAST,
        ]
    )
    assert code == 2 and "no such folder" in capsys.readouterr().err
    code = main(
        [
            "annotate",
            "--input",
            str(tmp_path),
            "--subtitles",
            str(subs),
            "--output",
            str(tmp_path / "o"),
            "--annotate.frames=0",
        ]
    )
    assert code == 2 and "annotate.frames = 0" in capsys.readouterr().err
