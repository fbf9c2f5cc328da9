"""One dataset schema end to end: `emer annotate` writes EMER-Coarse, `emer train` reads that folder
as it is, and `emer evaluate` scores it, falling back to the annotation's ``ov_labels`` for the
reference labels; no renaming or conversion step in between."""

from __future__ import annotations

import json

import pytest
from train_helpers import history, run_config

from core import storage
from core.config import dump_yaml
from core.llm import tiny
from core.schema import AUDIO, DESCRIPTION_EN, FRAMES, NAME, OV_LABELS, decode_audio
from emer.cli import main


@pytest.mark.timeout(600)
def test_annotate_output_trains_and_evaluates_as_is(ray_local, sample_clips, tiny_cfg, tmp_path, capsys):
    out = tmp_path / "coarse"
    models = {role: tiny.BUILDERS[role](tmp_path / "llm" / role) for role in ("audio", "video", "text")}
    llm_flags = [
        f"--annotate.{role}.{key}={value}"
        for role, path in models.items()
        for key, value in (("model", path), ("max_new_tokens", 6), ("min_new_tokens", 2))
    ]
    assert (
        main(
            [
                "annotate",
                "--input",
                str(sample_clips.root / "clips"),
                "--subtitles",
                str(sample_clips.subtitles),
                "--output",
                str(out),
                "--annotate.stages.decode.actors=1",
                *llm_flags,
            ]
        )
        == 0
    )
    capsys.readouterr()
    samples = storage.join(str(out), "samples")
    table = storage.read_table(samples)
    assert table.num_rows == 8
    row = table.slice(0, 1).to_pylist()[0]
    assert {NAME, FRAMES, AUDIO, DESCRIPTION_EN, OV_LABELS} <= set(table.column_names)
    assert decode_audio(row[AUDIO]).dtype.name == "float32"  # FLAC bytes, decoded by the schema module

    # emer train reads the annotation folder itself
    cfg = run_config(tiny_cfg, stage=1, coarse_uri=samples, storage_path=str(tmp_path / "runs"), max_steps=2)
    config_file = tmp_path / "train.yaml"
    config_file.write_text(dump_yaml(cfg))
    assert main(["train", "--config", str(config_file)]) == 0
    trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert trained["rows"] == 8 and trained["steps"] == 2
    assert len(history(trained["run_uri"])["steps"]) == 2

    # emer evaluate scores the same folder: no `openset` column, the annotation's ov_labels stand in
    assert (
        main(
            [
                "evaluate",
                "ov",
                "--gt",
                samples,
                "--pred",
                samples,
                "--grouping",
                "exact",
                "--json",
                "--no-report",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["gt_samples"] == 8 and result["missing_predictions"] == 0
    labelled = sum(1 for labels in table.column(OV_LABELS).to_pylist() if labels)
    if labelled:  # the same labels on both sides score 1
        assert result["accuracy"] == pytest.approx(1.0) and result["recall"] == pytest.approx(1.0)
