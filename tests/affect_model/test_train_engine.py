"""The DeepSpeed engine in one process (no Ray): ZeRO 2 / 3, bf16, optimizer offload train the tiny
AffectGPT, and a checkpoint (frozen parameters left out) restores the trainable weights, the optimizer
and the schedule exactly; the gathered trainable weights are what ``save_pretrained`` writes."""

from __future__ import annotations

import os
import socket

import pytest
import torch

from affect_model.train.config import TrainConfig
from affect_model.train.engine import make_engine
from affect_model.train.task import AffectGPTTask

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def process_group():
    import torch.distributed as dist

    if not dist.is_initialized():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        os.environ.update(
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            RANK="0",
            WORLD_SIZE="1",
            LOCAL_RANK="0",
            LOCAL_WORLD_SIZE="1",
        )
        dist.init_process_group("gloo", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _batch(task, module):
    from train_helpers import rows

    data = rows(2)
    columns = {k: [r[k] for r in data] for k in data[0]}
    out = task.collate(module, columns)
    out.pop("names")
    return out


def _engine(cfg, tiny_cfg):
    task = AffectGPTTask(tiny_cfg)
    torch.manual_seed(0)
    module = task.build()
    return (
        task,
        module,
        make_engine(module, cfg, total_steps=10, world_size=1, rank=0, device=torch.device("cpu")),
    )


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "changes",
    [
        {"zero_stage": 2, "precision": "bf16"},
        {"zero_stage": 3, "precision": "fp32"},
        {"zero_stage": 2, "precision": "fp32", "offload_optimizer": True, "grad_accum": 2},
    ],
    ids=["zero2-bf16", "zero3", "zero2-offload-accum"],
)
def test_deepspeed_checkpoint_round_trip(process_group, tiny_cfg, tmp_path, changes):
    cfg = TrainConfig(strategy="deepspeed", torch_adam=True, lr=1e-2, warmup_steps=2, batch_size=2, **changes)
    task, module, engine = _engine(cfg, tiny_cfg)
    batch = _batch(task, module)
    before = engine.trainable_state()
    steps = 0
    while steps < 2:
        engine.micro_step(task.loss, batch)
        steps += engine.step()
    after = engine.trainable_state()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it trained
    engine.save(str(tmp_path), {"step": 2, "epoch": 0, "micro": 2 * cfg.grad_accum})
    files = [p.name for p in (tmp_path / "state").iterdir()]
    assert any("optim_states" in f for f in files)
    # no frozen weight in the checkpoint, tied aliases included (the LLM's lm_head = its embeddings)
    [states] = (tmp_path / "state").glob("*mp_rank_00_model_states.pt")  # ZeRO-3: zero_pp_rank_0_...
    saved = torch.load(states, weights_only=False)["module"]
    frozen = {n for n, p in module.named_parameters(remove_duplicate=False) if not p.requires_grad}
    assert "llm.lm_head.weight" in frozen and not frozen & set(saved)
    assert set(saved) == {n for n, p in module.named_parameters() if p.requires_grad}
    # a fresh engine (other random trainable weights) restores weights, optimizer and lr exactly
    torch.manual_seed(1)
    task2 = AffectGPTTask(tiny_cfg)
    module2 = task2.build()
    engine2 = make_engine(module2, cfg, total_steps=10, world_size=1, rank=0, device=torch.device("cpu"))
    assert engine2.load(str(tmp_path)) == {"step": 2, "epoch": 0, "micro": 2 * cfg.grad_accum}
    restored = engine2.trainable_state()
    assert all(torch.equal(after[k], restored[k]) for k in after)
    assert engine2.lr() == pytest.approx(engine.lr())
    # both continue identically
    for e in (engine, engine2):
        for _ in range(cfg.grad_accum):
            loss = e.micro_step(task.loss, batch)
            e.step()
    a, b = engine.trainable_state(), engine2.trainable_state()
    assert all(torch.allclose(a[k], b[k]) for k in a), loss
    # the weights saved on their own load into a model
    task.save_weights(a, str(tmp_path / "weights"))
    from affect_model.model.checkpoint import load_trainable

    load_trainable(module2, str(tmp_path / "weights"), strict=True)


@pytest.mark.timeout(300)
def test_deepspeed_load_refuses_a_tampered_checkpoint_before_deepspeed_unpickles(
    process_group, tiny_cfg, tmp_path
):
    from train_helpers import RunsCode

    cfg = TrainConfig(strategy="deepspeed", torch_adam=True, batch_size=2, precision="fp32")
    _, _, engine = _engine(cfg, tiny_cfg)
    folder, marker = tmp_path / "ckpt", tmp_path / "code-ran"
    engine.save(str(folder), {"step": 0, "epoch": 0, "micro": 0})
    target = folder / "state" / "mp_rank_00_model_states.pt"
    assert target.exists()
    torch.save({"module": RunsCode(marker)}, target)  # DeepSpeed would unpickle this (weights_only=False)
    calls = []
    real = engine.model.load_checkpoint
    engine.model.load_checkpoint = lambda *a, **k: calls.append(a) or real(*a, **k)
    with pytest.raises(ValueError, match=r"state/mp_rank_00_model_states\.pt"):
        engine.load(str(folder))
    assert calls == [] and not marker.exists()


@pytest.mark.timeout(300)
def test_deepspeed_load_refuses_a_rewritten_manifest_before_deepspeed_unpickles(
    process_group, tiny_cfg, tmp_path
):
    """#23/3: a malicious mp_rank_00_model_states.pt plus a recomputed checkpoint_digest.rank0.json:
    the payload ran. The manifest's HMAC (the key is not in the folder) refuses it now."""
    from train_helpers import RunsCode

    from affect_model.train.integrity import seal

    cfg = TrainConfig(strategy="deepspeed", torch_adam=True, batch_size=2, precision="fp32")
    _, _, engine = _engine(cfg, tiny_cfg)
    folder, marker = tmp_path / "ckpt", tmp_path / "code-ran"
    engine.save(str(folder), {"step": 0, "epoch": 0, "micro": 0})
    assert os.environ["EMER_CHECKPOINT_KEY"] not in (folder / "checkpoint_digest.rank0.json").read_text()
    torch.save({"module": RunsCode(marker)}, folder / "state" / "mp_rank_00_model_states.pt")
    calls = []
    real = engine.model.load_checkpoint
    engine.model.load_checkpoint = lambda *a, **k: calls.append(a) or real(*a, **k)
    for forged_with in (None, b"guessed-" * 8):  # the attacker recomputes every digest, without the key
        seal(str(folder), rank=0, key=forged_with)
        with pytest.raises(ValueError, match=r"checkpoint_digest\.rank0\.json: its HMAC does not match"):
            engine.load(str(folder))
    assert calls == [] and not marker.exists()


def test_deepspeed_without_a_checkpoint_key_is_a_clear_error(process_group, tiny_cfg, monkeypatch):
    from affect_model.train.integrity import CheckpointKeyMissing

    monkeypatch.delenv("EMER_CHECKPOINT_KEY")
    cfg = TrainConfig(strategy="deepspeed", torch_adam=True, batch_size=2, precision="fp32")
    with pytest.raises(
        CheckpointKeyMissing, match=r"train\.checkpoint_key_env = 'EMER_CHECKPOINT_KEY'.*token_hex"
    ):
        _engine(cfg, tiny_cfg)
