"""Ray Train + DeepSpeed training of the tiny AffectGPT on CPU: ZeRO-2 = DDP, S3 checkpoints, resume after
a killed worker and on rerun (refused when a setting changed), stage 2 from stage 1, per-epoch
evaluation, cached features = live encoders."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest
import ray.cloudpickle
import torch
from train_helpers import history, run_config, write_coarse, write_fine_csv

from affect_model.model.checkpoint import read_trainable
from affect_model.train.loop import run_training
from affect_model.train.task import AffectGPTTask
from core import storage
from core.resources import Resources
from evaluation.runs import epoch_scorer

pytestmark = pytest.mark.slow
ROWS = 16  # 2 workers x batch 2 -> 4 steps an epoch; 1 worker -> 8
S3_SECRETS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}  # moto's dummy keys
FAST_FAILOVER = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5"}  # the controller polls workers this often

# The crash task below must reach the Ray workers by value (this module is not importable there).
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


class CrashOnce(AffectGPTTask):
    """AffectGPT whose worker process kills itself (SIGKILL) at its ``at``-th micro-batch, once, a few
    seconds into that step (time for the controller to register the checkpoint reported just before:
    a report still queued on a worker that dies is lost, and the run falls back to the one before)."""

    def __init__(self, model_cfg, marker: str, at: int) -> None:
        super().__init__(model_cfg)
        self.marker, self.at, self.calls = marker, at, 0

    def loss(self, model, batch):
        self.calls += 1
        if self.calls == self.at and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            time.sleep(3)
            os.kill(os.getpid(), signal.SIGKILL)
        return super().loss(model, batch)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train_data")
    return {"coarse": write_coarse(folder, ROWS), "fine": write_fine_csv(folder, ROWS)}


@pytest.fixture(scope="module")
def stage1_ddp(ray_local, tiny_cfg, data, tmp_path_factory):
    """Stage 1 with plain DDP, 2 workers: the reference run."""
    cfg = run_config(
        tiny_cfg,
        coarse_uri=data["coarse"],
        storage_path=str(tmp_path_factory.mktemp("runs")),
        run_name="ddp",
        workers=Resources(actors=2),
        strategy="ddp",
    )
    return cfg, run_training(cfg)


def losses(run_uri: str) -> list[float]:
    return [r["loss"] for r in history(run_uri)["steps"]]


@pytest.mark.timeout(420)
def test_zero2_matches_ddp_and_checkpoints_land_in_s3(stage1_ddp, s3):
    ddp_cfg, ddp = stage1_ddp
    cfg = ddp_cfg.replace(
        train=ddp_cfg.train.replace(
            strategy="deepspeed", zero_stage=2, run_name="zero2", storage_path=s3.uri("train")
        )
    )
    res = run_training(cfg, extra_env=S3_SECRETS)
    assert res["steps"] == ddp["steps"] == 4
    assert losses(res["run_uri"]) == losses(ddp["run_uri"])  # identical, to the last digit
    lrs = [r["lr"] for r in history(res["run_uri"])["steps"]]
    assert lrs[0] < lrs[1] < lrs[2] > lrs[3]  # two warm-up steps, then cosine decay
    keys = [k[len(s3.uri("train/zero2")) + 1 :] for k in storage.list_files(s3.uri("train/zero2"))]
    last = "checkpoint_0000004/"
    for rank in (0, 1):  # every rank wrote its own ZeRO shard
        assert last + f"state/zero_pp_rank_{rank}_mp_rank_00_optim_states.pt" in keys
    for name in ("weights/trainable.safetensors", "weights/affectgpt_config.json", "history.json"):
        assert last + name in keys
    assert {
        "weights/trainable.safetensors",
        "history.json",
        "curves/loss.png",
        "curves/lr.png",
        "config.yaml",
    } <= set(keys)
    a, b = read_trainable(res["weights"]), read_trainable(ddp["weights"])
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


@pytest.mark.timeout(420)
def test_killed_worker_resumes_from_last_checkpoint(ray_local, s3, tiny_cfg, data, tmp_path):
    cfg = run_config(
        tiny_cfg,
        coarse_uri=data["coarse"],
        storage_path=s3.uri("crash"),
        run_name="crash",
        strategy="deepspeed",
        checkpoint_every=2,
    )
    run_uri = s3.uri("crash/crash")
    # 1) the worker dies at step 3 and no failure is allowed: the run stops after checkpoint 2
    with pytest.raises(Exception, match="(?i)worker"):
        run_training(
            cfg,
            task=CrashOnce(tiny_cfg, str(tmp_path / "a"), at=3),
            extra_env={**S3_SECRETS, **FAST_FAILOVER},
        )
    assert history(run_uri)["steps"][-1]["step"] == 2
    saved_config = storage.read_text(storage.join(run_uri, "config.yaml"))
    # 1b) a rerun with another learning rate would mix two runs' settings: refused before it starts,
    # naming the key, and the first run's config.yaml stays as it was
    changed = cfg.replace(train=cfg.train.replace(lr=cfg.train.lr / 2, max_failures=1))
    with pytest.raises(ValueError, match=r"train\.lr: 0\.002 -> 0\.001") as err:
        run_training(changed, extra_env={**S3_SECRETS, **FAST_FAILOVER})
    assert "1 output-affecting setting(s) changed" in str(err.value)  # max_failures may change
    assert storage.read_text(storage.join(run_uri, "config.yaml")) == saved_config
    # 2) the same command again, now surviving one failure: it resumes at 2, dies at 5, resumes at 4
    cfg = cfg.replace(train=cfg.train.replace(max_failures=1))
    res = run_training(
        cfg, task=CrashOnce(tiny_cfg, str(tmp_path / "b"), at=3), extra_env={**S3_SECRETS, **FAST_FAILOVER}
    )
    h = history(run_uri)
    assert res["steps"] == 8 and h["resumes"] == [2, 4]
    assert [r["step"] for r in h["steps"]] == list(range(1, 9))
    assert storage.exists(storage.join(run_uri, "checkpoint_0000008", "state", "latest")) or storage.exists(
        storage.join(run_uri, "checkpoint_0000008", "latest")
    )
    for name in ("run_config.json", "checkpoint_digest.rank0.json"):  # the settings, sealed with digests
        assert storage.exists(storage.join(run_uri, "checkpoint_0000008", name))


@pytest.mark.timeout(420)
def test_stage2_starts_from_stage1_weights_and_evaluates(stage1_ddp, tiny_cfg, data, tmp_path):
    from affect_model.model.affectgpt import AffectGPT
    from affect_model.train.data import read_fine_csv, split_fine

    _, stage1 = stage1_ddp
    cfg = run_config(
        tiny_cfg,
        stage=2,
        coarse_uri=data["coarse"],
        fine_uri=data["fine"],
        lr=0.0,
        init_from=stage1["run_uri"],
        storage_path=str(tmp_path),
        strategy="deepspeed",
        eval_each_epoch=True,
        eval_max_new_tokens=4,
    )
    res = run_training(cfg, scorer=epoch_scorer(cfg.evaluate))
    train_names, test_names = split_fine(read_fine_csv(data["fine"]))
    assert res["rows"] == len(train_names) and res["steps"] == len(train_names) // 2
    # lr 0: stage 2 ends with exactly the weights it started from, which are stage 1's
    start, end = read_trainable(stage1["weights"]), read_trainable(res["weights"])
    assert start.keys() == end.keys() and all(torch.equal(start[k], end[k]) for k in start)
    torch.manual_seed(0)
    fresh = AffectGPT(tiny_cfg).trainable_state_dict()
    assert any(not torch.equal(fresh[k], start[k]) for k in start)
    # per-epoch evaluation on the EMER-Fine test split, and the curves
    preds = storage.read_table(os.path.join(res["run_uri"], "eval", "epoch_000.parquet"))
    assert preds.column_names == ["name", "description"]
    assert preds.column("name").to_pylist() == sorted(test_names)
    epoch = history(res["run_uri"])["epochs"][0]
    assert {"eval_bleu1", "eval_rouge_l", "eval_accuracy", "eval_recall"} <= set(epoch)
    for name in ("loss", "lr", "accuracy"):
        assert open(os.path.join(res["run_uri"], "curves", f"{name}.png"), "rb").read(4) == b"\x89PNG"


@pytest.mark.timeout(420)
def test_cached_features_give_the_same_loss_as_live_encoders(stage1_ddp, tiny_cfg, data, tmp_path):
    from affect_model.jobs.features import build_features

    ddp_cfg, ddp = stage1_ddp
    train = ddp_cfg.train.replace(
        features_uri=str(tmp_path / "features"),
        use_cached_features=True,
        storage_path=str(tmp_path / "runs"),
        run_name="cached",
    )
    summary = build_features(tiny_cfg, train)
    assert summary["rows"] == ROWS and summary["failed"] == 0
    res = run_training(ddp_cfg.replace(train=train))
    live, cached = losses(ddp["run_uri"]), losses(res["run_uri"])
    assert len(cached) == len(live) == 4
    assert cached == pytest.approx(live, rel=1e-5, abs=1e-6)
