"""Training pieces without Ray: lr schedule (warm-up really happens), DeepSpeed config, TrainConfig checks,
the engine's gradient accumulation, the history curves."""

from __future__ import annotations

import math

import pytest
import torch

from affect_model.train.config import TrainConfig
from affect_model.train.ds_config import deepspeed_config
from affect_model.train.engine import DDPEngine
from affect_model.train.report import History
from affect_model.train.schedule import lr_factor, param_groups, total_optimizer_steps
from core.config import ConfigError


class StandIn(torch.nn.Module):
    """A frozen 'encoder' and a trainable head, called like AffectGPT (keyword batch -> .loss)."""

    def __init__(self) -> None:
        super().__init__()
        self.frozen = torch.nn.Linear(4, 8).requires_grad_(False)
        self.head = torch.nn.Linear(8, 1)

    def forward(self, x, y):
        return {"loss": torch.nn.functional.mse_loss(self.head(torch.tanh(self.frozen(x))).squeeze(-1), y)}


def _loss(model, batch):
    return model(**batch)


def test_lr_warms_up_linearly_then_decays_by_cosine():
    f = [lr_factor(s, warmup_steps=4, total_steps=12, min_ratio=0.1) for s in range(12)]
    assert f[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert f[4] == 1.0 and all(a > b for a, b in zip(f[4:], f[5:]))
    assert lr_factor(12, 4, 12, min_ratio=0.1) == pytest.approx(0.1)
    assert lr_factor(8, 4, 12, min_ratio=0.0) == pytest.approx(0.5)
    assert lr_factor(30, 4, 12, cosine=False) == 1.0


def test_official_warmup_from_warmup_lr_then_constant():
    """The official recipe: 1e-6 -> 1e-5 linearly over 5000 steps, then 1e-5 (min_lr = init_lr)."""
    cfg = TrainConfig(lr=1e-5, warmup_lr=1e-6, warmup_steps=5000, cosine=False)
    lrs = [
        cfg.lr * lr_factor(s, 5000, 300000, False, 0.0, cfg.warmup_start_ratio)
        for s in (0, 2500, 5000, 299999)
    ]
    assert lrs == pytest.approx([1e-6, 5.5e-6, 1e-5, 1e-5])
    with pytest.raises(ConfigError, match="train.warmup_lr = 0.1: must not exceed train.lr"):
        TrainConfig(lr=1e-5, warmup_lr=0.1)


def test_engine_optimizer_follows_warmup_and_accumulates():
    torch.manual_seed(0)
    cfg = TrainConfig(
        strategy="ddp",
        precision="fp32",
        lr=0.1,
        warmup_steps=3,
        grad_accum=2,
        grad_clip=1.0,
        weight_decay=0.0,
    )
    model = StandIn()
    frozen_before = model.frozen.weight.clone()
    engine = DDPEngine(model, cfg, total_steps=6, world_size=1, rank=0, device=torch.device("cpu"))
    x, y = torch.randn(6, 4), torch.randn(6)
    lrs, moves, head = [], [], model.head.weight.detach().clone()
    for _ in range(6):
        for _ in range(2):  # two micro-batches per optimizer step
            lr = engine.lr()
            engine.micro_step(_loss, {"x": x, "y": y})
            stepped = engine.step()
        assert stepped
        lrs.append(lr)
        moves.append(float((model.head.weight.detach() - head).abs().max()))
        head = model.head.weight.detach().clone()
    # the optimizer really ran with the warm-up rates: 0.1 * (1/4, 2/4, 3/4), then 0.1, then decay
    assert engine.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * lr_factor(6, 3, 6, min_ratio=0.1))
    assert lrs[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert lrs[4] < lrs[3]
    # Adam's first updates are ~lr in size: the parameter moves grow with the warm-up
    assert moves[0] < moves[1] < moves[2]
    assert torch.equal(model.frozen.weight, frozen_before)


def test_param_groups_only_trainable_and_no_decay_on_biases():
    groups = param_groups(StandIn(), weight_decay=0.05)
    assert [len(g["params"]) for g in groups] == [1, 1]
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0]
    frozen = torch.nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        param_groups(frozen, 0.0)


def test_deepspeed_config_from_train_config():
    cfg = TrainConfig(
        zero_stage=3,
        precision="bf16",
        grad_accum=4,
        batch_size=3,
        offload_optimizer=True,
        torch_adam=True,
        grad_clip=0.5,
        lr=3e-4,
        betas=(0.9, 0.95),
    )
    ds = deepspeed_config(cfg, world_size=2, use_gpu=False)
    assert ds["zero_optimization"]["stage"] == 3
    assert ds["zero_optimization"]["offload_optimizer"] == {"device": "cpu", "pin_memory": False}
    assert ds["bf16"] == {"enabled": True} and "fp16" not in ds
    assert ds["train_batch_size"] == 3 * 4 * 2 and ds["gradient_accumulation_steps"] == 4
    assert ds["gradient_clipping"] == 0.5
    assert ds["optimizer"]["params"] == {
        "lr": 3e-4,
        "betas": [0.9, 0.95],
        "eps": 1e-8,
        "weight_decay": 0.05,
        "torch_adam": True,
    }
    assert ds["zero_force_ds_cpu_optimizer"] is False
    plain = deepspeed_config(TrainConfig(precision="fp32"), 1, use_gpu=True)
    assert plain["zero_optimization"] == {"stage": 2}
    assert "bf16" not in plain and "torch_adam" not in str(plain)


def test_train_config_reports_every_problem_with_its_key():
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_dict(
            {
                "stage": 3,
                "precision": "fp8",
                "zero_stage": 4,
                "batch_size": 0,
                "use_cached_features": True,
                "infer": {"split": "dev"},
            }
        )
    text = str(err.value)
    for key in (
        "train.stage = 3",
        "train.precision = 'fp8'",
        "train.zero_stage = 4",
        "train.batch_size = 0",
        "train.features_uri = ''",
        "train.infer.split = 'dev'",
    ):
        assert key in text
    with pytest.raises(ConfigError, match="train.fine_uri"):
        TrainConfig(stage=2)
    assert TrainConfig(stage=2, fine_uri="f.csv").name == "stage2"


def test_total_steps_and_too_few_rows():
    assert total_optimizer_steps(266, 1, 3, 1, 100) == (88, 8800)  # the paper: 88 iterations per epoch
    assert total_optimizer_steps(16, 2, 2, 2, 3, max_steps=5) == (2, 5)
    with pytest.raises(ValueError, match="too few"):
        total_optimizer_steps(3, 2, 2, 1, 1)


def test_history_round_trip_and_curves():
    h = History(
        steps=[
            {"step": i, "epoch": 0, "loss": 2.0 / i, "lr": 1e-4 * i, "samples_per_s": 3.0, "mem_gb": 1.0}
            for i in range(1, 5)
        ],
        epochs=[{"epoch": 0, "step": 4, "eval_accuracy": 0.2, "eval_recall": 0.1, "eval_avg": 0.15}],
        resumes=[2],
    )
    again = History.from_json(h.to_json())
    assert again == h
    curves = h.curves()
    assert set(curves) == {"loss", "lr", "accuracy"}
    assert all(png.startswith(b"\x89PNG") for png in curves.values())
    assert not math.isnan(again.steps[-1]["loss"])


def _ddp(seed: int = 0, lr: float = 0.1) -> DDPEngine:
    torch.manual_seed(seed)
    cfg = TrainConfig(strategy="ddp", precision="fp32", lr=lr, warmup_steps=2, weight_decay=0.0)
    return DDPEngine(StandIn(), cfg, total_steps=6, world_size=1, rank=0, device=torch.device("cpu"))


def _train(engine: DDPEngine, steps: int) -> None:
    gen = torch.Generator().manual_seed(5)
    for _ in range(steps):
        engine.micro_step(_loss, {"x": torch.randn(6, 4, generator=gen), "y": torch.randn(6, generator=gen)})
        engine.step()


def test_ddp_checkpoint_round_trip_is_pickle_free(tmp_path):
    from safetensors.torch import load_file

    engine = _ddp()
    _train(engine, 2)
    engine.save(str(tmp_path), {"step": 2, "epoch": 0, "micro": 2})
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["checkpoint_digest.rank0.json", "ddp_state.pt", "ddp_weights.safetensors"]
    assert set(load_file(tmp_path / "ddp_weights.safetensors")) == {"head.weight", "head.bias"}
    state = torch.load(tmp_path / "ddp_state.pt", weights_only=True)  # tensors and plain containers only
    assert state["client_state"] == {"step": 2, "epoch": 0, "micro": 2}
    # a fresh engine (same frozen part, other head) resumes the same step, weights and schedule
    other = _ddp()
    with torch.no_grad():
        other.module.head.weight.add_(1.0)
    assert other.load(str(tmp_path)) == {"step": 2, "epoch": 0, "micro": 2}
    assert other.lr() == pytest.approx(engine.lr())
    a, b = engine.trainable_state(), other.trainable_state()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    _train(engine, 1)
    _train(other, 1)  # Adam's moments came back too: the next step is the same
    a, b = engine.trainable_state(), other.trainable_state()
    assert all(torch.equal(a[k], b[k]) for k in a)


KEY = b"k" * 64  # a checkpoint key for the digest tests (conftest sets EMER_CHECKPOINT_KEY for engines)


@pytest.mark.parametrize(
    "case", ["no manifest", "file swapped", "manifest rewritten too", "manifest rewritten with the key"]
)
def test_ddp_load_refuses_a_crafted_pickle_without_running_it(tmp_path, case):
    import os

    from train_helpers import RunsCode

    folder, marker = tmp_path / "ckpt", tmp_path / "code-ran"
    folder.mkdir()
    if case != "no manifest":
        engine = _ddp()
        engine.save(str(folder), {"step": 1, "epoch": 0, "micro": 1})
    torch.save({"client_state": RunsCode(marker)}, folder / "ddp_state.pt")
    if case.startswith("manifest rewritten"):  # an attacker who also recomputes the digests
        from affect_model.train.integrity import seal

        key = os.environ["EMER_CHECKPOINT_KEY"].encode() if case.endswith("with the key") else None
        seal(str(folder), rank=0, key=key)
    with pytest.raises(ValueError) as err:
        _ddp(seed=1).load(str(folder))
    assert not marker.exists()  # the payload never ran
    expected = {
        "no manifest": "no checkpoint_digest",
        "file swapped": "ddp_state.pt",
        "manifest rewritten too": "HMAC does not match",  # without the key: refused by the HMAC
        "manifest rewritten with the key": "not only tensors",  # with it: weights_only=True still holds
    }[case]
    assert expected in str(err.value)


def test_checkpoint_digest_names_a_changed_an_added_and_a_missing_file(tmp_path):
    from affect_model.train.integrity import CheckpointTampered, seal, verify

    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "a.pt").write_bytes(b"a")
    (tmp_path / "history.json").write_text("{}")
    seal(str(tmp_path), rank=0, key=KEY)
    verify(str(tmp_path), KEY)  # untouched: passes
    (tmp_path / "state" / "a.pt").write_bytes(b"b")
    with pytest.raises(CheckpointTampered, match=r"state/a\.pt.*changed"):
        verify(str(tmp_path), KEY)
    (tmp_path / "state" / "a.pt").write_bytes(b"a")
    (tmp_path / "state" / "extra.pt").write_bytes(b"x")
    with pytest.raises(CheckpointTampered, match=r"state/extra\.pt.*not listed"):
        verify(str(tmp_path), KEY)
    (tmp_path / "state" / "extra.pt").unlink()
    (tmp_path / "history.json").unlink()
    with pytest.raises(CheckpointTampered, match=r"history\.json.*missing"):
        verify(str(tmp_path), KEY)


def test_checkpoint_digest_covers_the_ranks_folders_merged_into_one(tmp_path):
    import shutil

    from affect_model.train.integrity import CheckpointTampered, seal, verify

    merged = tmp_path / "merged"
    for rank in (0, 1):  # every rank seals its own folder; Ray copies them into one
        own = tmp_path / f"rank{rank}"
        (own / "state").mkdir(parents=True)
        (own / "state" / f"zero_pp_rank_{rank}_optim_states.pt").write_bytes(bytes([rank]) * 9)
        seal(str(own), rank=rank, key=KEY)
        shutil.copytree(own, merged, dirs_exist_ok=True)
    verify(str(merged), KEY)
    (merged / "checkpoint_digest.rank1.json").unlink()
    with pytest.raises(CheckpointTampered, match=r"zero_pp_rank_1_optim_states\.pt is not listed"):
        verify(str(merged), KEY)


def test_a_manifest_rewritten_without_the_key_is_refused(tmp_path):
    """#23/3: a planted file plus a recomputed manifest passed ``verify``; the HMAC refuses it now."""
    import json

    from affect_model.train.integrity import CheckpointKeyMissing, CheckpointTampered, seal, verify

    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "mp_rank_00_model_states.pt").write_bytes(b"the run's")
    manifest = seal(str(tmp_path), rank=0, key=KEY)
    assert KEY.decode() not in open(manifest).read()  # the key itself is never written
    (tmp_path / "state" / "mp_rank_00_model_states.pt").write_bytes(b"planted")
    for forged_with in (None, b"x" * 64):  # recomputed without a key, or with a guessed one
        seal(str(tmp_path), rank=0, key=forged_with)
        with pytest.raises(
            CheckpointTampered, match=r"checkpoint_digest\.rank0\.json: its HMAC does not match"
        ):
            verify(str(tmp_path), KEY)
    meta = json.loads(open(manifest).read())  # an edited HMAC field is refused as well
    meta["hmac_sha256"] = "0" * 64
    open(manifest, "w").write(json.dumps(meta))
    with pytest.raises(CheckpointTampered, match="HMAC does not match"):
        verify(str(tmp_path), KEY)
    seal(str(tmp_path), rank=0, key=KEY)
    verify(str(tmp_path), KEY)
    with pytest.raises(CheckpointKeyMissing, match="sealed with a checkpoint key, but none is set"):
        verify(str(tmp_path), None)  # a keyed checkpoint never loads unauthenticated


def test_the_checkpoint_key_comes_from_the_named_variable_or_file(tmp_path, monkeypatch):
    from affect_model.train.integrity import CheckpointKeyMissing, checkpoint_key

    monkeypatch.delenv("EMER_CHECKPOINT_KEY", raising=False)
    with pytest.raises(CheckpointKeyMissing) as err:
        checkpoint_key(TrainConfig(), required=True)
    for text in (
        "train.checkpoint_key_env = 'EMER_CHECKPOINT_KEY'",
        "train.checkpoint_key_file",
        "token_hex",
    ):
        assert text in str(err.value)
    assert checkpoint_key(TrainConfig(strategy="ddp"), required=False) is None
    monkeypatch.setenv("MY_RUN_KEY", "short-key")
    with pytest.raises(CheckpointKeyMissing, match="under 32") as err:
        checkpoint_key(TrainConfig(checkpoint_key_env="MY_RUN_KEY"), required=True)
    assert "short-key" not in str(err.value)
    monkeypatch.setenv("MY_RUN_KEY", "a" * 64)
    assert checkpoint_key(TrainConfig(checkpoint_key_env="MY_RUN_KEY"), required=True) == b"a" * 64
    key_file = tmp_path / "keys" / "ckpt.key"
    with pytest.raises(CheckpointKeyMissing, match="train.checkpoint_key_file = .*no such file"):
        checkpoint_key(TrainConfig(checkpoint_key_file=str(key_file)), required=False)
    key_file.parent.mkdir()
    key_file.write_text("b" * 64 + "\n")
    cfg = TrainConfig(checkpoint_key_file=str(key_file), storage_path=str(tmp_path / "runs"))
    assert checkpoint_key(cfg, required=True) == b"b" * 64  # the file wins over the variable
    with pytest.raises(ConfigError, match="inside train.storage_path"):
        TrainConfig(checkpoint_key_file=str(tmp_path / "runs" / "k"), storage_path=str(tmp_path / "runs"))
    with pytest.raises(ConfigError, match="looks like a key itself"):  # a key pasted as the name
        TrainConfig(checkpoint_key_env="Xk9fQ2mZ7pL4vR8tN1wS6yB3cH5jD0gK2aE")


def test_training_without_a_key_fails_before_ray_train_starts(monkeypatch):
    from affect_model.train.integrity import CheckpointKeyMissing
    from affect_model.train.loop import run_training
    from emer.runconfig import load_run_config

    monkeypatch.delenv("EMER_CHECKPOINT_KEY", raising=False)
    run_cfg = load_run_config(None, ["train.coarse_uri=/nowhere"])
    with pytest.raises(CheckpointKeyMissing, match="EMER_CHECKPOINT_KEY"):
        run_training(run_cfg, task=object())


def test_the_demo_makes_its_key_outside_the_checkpoints_and_reuses_it(tmp_path, monkeypatch):
    import stat

    from emer.demo import with_checkpoint_key
    from emer.runconfig import load_run_config

    cfg = load_run_config(None, [])
    monkeypatch.setenv("EMER_CHECKPOINT_KEY", "e" * 64)
    assert with_checkpoint_key(cfg, str(tmp_path)) is cfg  # the user's key wins
    monkeypatch.delenv("EMER_CHECKPOINT_KEY")
    made = with_checkpoint_key(cfg, str(tmp_path)).train.checkpoint_key_file
    assert made == str(tmp_path / ".state" / "checkpoint.key")
    assert stat.S_IMODE((tmp_path / ".state" / "checkpoint.key").stat().st_mode) == 0o600
    key = (tmp_path / ".state" / "checkpoint.key").read_text()
    assert (
        len(key.strip()) == 64 and with_checkpoint_key(cfg, str(tmp_path)).train.checkpoint_key_file == made
    )
    assert (tmp_path / ".state" / "checkpoint.key").read_text() == key  # a rerun resumes with the same key
    from core.config import dump_yaml

    assert key.strip() not in dump_yaml(with_checkpoint_key(cfg, str(tmp_path)))


def test_resume_record_refuses_changed_settings_and_allows_operational_ones(tmp_path):
    from affect_model.model.config import ModelConfig
    from affect_model.train.resume import check_checkpoint, check_run_folder, run_record, write_record
    from core.fingerprint import ResumeMismatch
    from emer.runconfig import RunConfig

    run = RunConfig(model=ModelConfig(lora=True), train=TrainConfig(storage_path=str(tmp_path)))
    assert check_run_folder(str(tmp_path), run_record(run)) is None  # nothing to resume yet
    folder = tmp_path / "checkpoint_0000002"
    folder.mkdir()
    write_record(run_record(run), str(folder))
    same = run.replace(train=run.train.replace(log_every=50, max_failures=0, keep_checkpoints=5))
    assert check_run_folder(str(tmp_path), run_record(same)) == str(folder)
    check_checkpoint(str(folder), run_record(same), str(tmp_path))
    other = run.replace(model=run.model.replace(lora_r=16), train=run.train.replace(epochs=200))
    for check in (check_run_folder, lambda uri, rec: check_checkpoint(str(folder), rec, uri)):
        with pytest.raises(ResumeMismatch) as err:
            check(str(tmp_path), run_record(other))
        assert [key for key, _, _ in err.value.changes] == ["model.lora_r", "train.epochs"]
        assert "model.lora_r: 8 -> 16" in str(err.value) and "train.run_name" in str(err.value)


def test_max_steps_stops_cycling_the_data_after_the_current_pass(monkeypatch):
    """iters_per_epoch 5000 with max_steps 2: the epoch drains the pass it is in, then stops (it used
    to cycle 3-batch passes up to 5000 micro-batches, decoding every one)."""
    from affect_model.train import shard
    from affect_model.train.job import TrainJob, WorkerContext

    job = TrainJob(train=TrainConfig(iters_per_epoch=5000, max_steps=2), task=None, record={}, env={})
    ctx = WorkerContext(job, engine=None, rank=0, world=1, device=torch.device("cpu"))
    state, passes = {"step": 0}, []

    def batches(ctx, epoch, cycle):
        passes.append(cycle)
        for b in range(3):
            if cycle == 0 and b == 1:
                state["step"] = 2  # the last step is done inside the first pass
            yield b

    def finished():
        return state["step"] >= 2

    monkeypatch.setattr(shard, "_batches", batches)
    assert len(list(shard.micro_batches(ctx, 0, 5000, finished))) == 3 and passes == [0]
    state["step"], passes[:] = 0, []
    monkeypatch.setattr(shard, "_batches", lambda ctx, epoch, c: (passes.append(c), iter(range(3)))[1])
    assert len(list(shard.micro_batches(ctx, 0, 7, finished))) == 9 and passes == [0, 1, 2]  # cycles


def test_the_job_handed_to_workers_is_frozen_and_travels_by_pickle():
    """Workers get a ``TrainJob`` (not a dict of string keys): its fields are fixed once the driver
    fills in the step counts, and it survives the trip to a Ray worker unchanged."""
    import dataclasses

    import ray.cloudpickle

    from affect_model.train.job import TrainJob

    job = TrainJob(train=TrainConfig(max_steps=4), task=None, record={"fingerprint": "x"}, env={"A": "1"})
    filled = job.with_steps(rows=16, per_epoch=8, total=4)
    assert (job.rows, job.total) == (0, 0) and (filled.rows, filled.per_epoch, filled.total) == (16, 8, 4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        filled.total = 5
    assert ray.cloudpickle.loads(ray.cloudpickle.dumps(filled)) == filled
