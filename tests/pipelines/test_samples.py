"""``emer samples``: generated MER-style clips, broken inputs and a subtitle CSV (deterministic)."""

from __future__ import annotations

import csv
import json

from emer.cli import main
from pipelines.samples import BROKEN


def test_samples_command_writes_clips_broken_inputs_and_subtitles(tmp_path, capsys):
    assert main(["samples", str(tmp_path / "a"), "--n", "2", "--seed", "3"]) == 0
    assert "2 clips and 6 broken inputs" in capsys.readouterr().out
    clips = tmp_path / "a" / "clips"
    names = sorted(p.stem for p in clips.glob("*.mp4"))
    assert names == sorted(["sample_00000000", "sample_00000001", *BROKEN])
    assert (clips / "broken_empty.mp4").stat().st_size == 0
    with open(tmp_path / "a" / "subtitles.csv", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["name", "chinese", "english"]
    subtitled = {r[0] for r in rows[1:]}
    assert "sample_00000000" in subtitled and "sample_00000001" not in subtitled  # the last has none
    assert "sample_missing_clip" in subtitled and set(BROKEN) <= subtitled
    info = json.loads((tmp_path / "a" / "samples.json").read_text())
    assert info["no_subtitle"] == ["sample_00000001"] and info["seed"] == 3

    assert main(["samples", str(tmp_path / "b"), "--n", "1", "--seed", "3"]) == 0
    first = (clips / "sample_00000000.mp4").read_bytes()
    assert first == (tmp_path / "b" / "clips" / "sample_00000000.mp4").read_bytes()  # deterministic
    assert main(["samples", str(tmp_path / "c"), "--n", "1", "--seed", "4"]) == 0
    assert first != (tmp_path / "c" / "clips" / "sample_00000000.mp4").read_bytes()
