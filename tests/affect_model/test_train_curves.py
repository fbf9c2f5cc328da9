"""A 2-step DDP run of the tiny AffectGPT (1 worker) whose epoch is 2 iterations over 2 rows (the data
cycles): TensorBoard event files land in the s3:// run folder, with the truncated-answer count."""

from __future__ import annotations

import pytest
from train_helpers import history, run_config, write_coarse

from affect_model.train.loop import run_training
from affect_model.train.tracking import tensorboard_dir
from core import storage

pytestmark = pytest.mark.slow


def _download(uri: str, dest) -> None:
    for path in storage.list_files(uri, skip_temp=True):
        name = path.rsplit("/", 1)[-1]
        (dest / name).write_bytes(storage.read_bytes(path))


@pytest.mark.timeout(400)
def test_two_steps_write_tensorboard_scalars_to_the_run_folder(ray_local, s3, tiny_cfg, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = run_config(
        tiny_cfg.replace(max_answer_tokens=3),  # every description is longer: all 2 x 2 answers are cut
        coarse_uri=write_coarse(tmp_path, 2),
        storage_path=f"s3://{s3.bucket}/curves",
        strategy="ddp",
        iters_per_epoch=2,  # 2 rows / batch 2 = 1 step a pass: the epoch reads the data twice
        checkpoint_every=0,
    )
    res = run_training(cfg)
    assert res["steps"] == 2
    steps = history(res["run_uri"])["steps"]
    assert [r["truncated"] for r in steps] == [2, 2] and steps[-1]["truncated_total"] == 4
    assert res["metrics"]["truncated_answers"] == 4
    local = tmp_path / "tb"
    local.mkdir()
    _download(tensorboard_dir(res["run_uri"]), local)
    acc = EventAccumulator(str(local))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/grad_norm", "train/samples_per_s"} <= tags
    for tag in ("train/loss", "train/grad_norm", "train/truncated_answers"):
        assert [e.step for e in acc.Scalars(tag)] == [1, 2]
    loss = [e.value for e in acc.Scalars("train/loss")]
    assert loss == pytest.approx([r["loss"] for r in steps], rel=1e-6)
    assert all(e.value > 0 for e in acc.Scalars("train/grad_norm"))
    assert [e.value for e in acc.Scalars("train/truncated_answers")] == [2, 4]
