"""``emer infer``: batch generation on Ray Data actors from a saved checkpoint -> Parquet (name, description)
that ``emer evaluate`` reads; a broken clip is a failure row, not a crashed job."""

from __future__ import annotations

import pytest
import torch
from train_helpers import rows, write_fine_csv

from affect_model.model.checkpoint import save_pretrained
from affect_model.train.data import read_fine_csv, split_fine, write_coarse
from core import storage
from emer.cli import main

pytestmark = pytest.mark.slow


@pytest.mark.timeout(300)
def test_infer_cli_describes_the_test_split(ray_local, tiny_cfg, tmp_path, capsys):
    from affect_model.model.affectgpt import AffectGPT

    fine = write_fine_csv(tmp_path, 16)
    _, test_names = split_fine(read_fine_csv(fine))
    data = rows(16)
    broken = test_names[0]
    for row in data:
        if row["name"] == broken:
            row["frames"] = [b"\xff\xd8 not really a jpeg"]
    media = str(tmp_path / "media.parquet")
    write_coarse(data, media)
    torch.manual_seed(0)
    save_pretrained(AffectGPT(tiny_cfg), str(tmp_path / "ckpt"))
    out = str(tmp_path / "pred" / "test.parquet")

    code = main(
        [
            "infer",
            "--checkpoint",
            str(tmp_path / "ckpt"),
            "--split",
            "test",
            "--output",
            out,
            f"--train.fine_uri={fine}",
            f"--train.coarse_uri={media}",
            "--train.infer.batch_size=2",
            "--train.infer.max_new_tokens=5",
        ]
    )
    assert code == 0
    assert f'"described": {len(test_names) - 1}' in capsys.readouterr().out

    pred = storage.read_table(out)
    assert pred.column_names == ["name", "description"]
    assert pred.column("name").to_pylist() == [n for n in test_names if n != broken]
    assert all(isinstance(t, str) for t in pred.column("description").to_pylist())
    failures = storage.read_table(str(tmp_path / "pred" / "test.failures.parquet")).to_pylist()
    assert [f["name"] for f in failures] == [broken] and "ValueError" in failures[0]["error"]
    refs = storage.read_table(str(tmp_path / "pred" / "test.references.parquet"))
    assert refs.column("name").to_pylist() == test_names
    assert storage.exists(str(tmp_path / "pred" / "test.config.yaml"))


def test_infer_without_a_checkpoint_names_the_fix(tmp_path):
    from affect_model.train.loop import resolve_weights

    with pytest.raises(FileNotFoundError, match="train.infer.checkpoint = .*nothing.*weights"):
        resolve_weights(str(tmp_path / "nothing"), "train.infer.checkpoint")
