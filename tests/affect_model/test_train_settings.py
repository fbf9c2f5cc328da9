"""The papers' settings (length limits, iterations per epoch, the affectgpt-* presets) and the training
curves (TensorBoard event files, the MLflow switch), without Ray; the Ray run is in test_train_curves."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from affect_model.model.config import ModelConfig
from affect_model.model.prompt import PromptBuilder
from affect_model.train.config import TrainConfig
from affect_model.train.report import History, step_line
from affect_model.train.schedule import total_optimizer_steps
from affect_model.train.tracking import Tracker, check_tracking
from core.config import ConfigError
from emer.runconfig import load_run_config, model_keys

QWEN_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def test_defaults_are_the_official_lengths():
    model, train = ModelConfig(), TrainConfig()
    assert (model.max_length, model.max_answer_tokens, model.max_new_tokens) == (1024, 1024, 1200)
    assert train.iters_per_epoch == 0 and train.eval_max_new_tokens == 0
    assert train.eval_new_tokens == 0  # -> the model's max_new_tokens, as `emer infer`
    assert train.replace(infer=train.infer.replace(max_new_tokens=77)).eval_new_tokens == 77
    assert train.replace(eval_max_new_tokens=5).eval_new_tokens == 5


@pytest.mark.parametrize(
    ("presets", "llm", "lora", "targets", "epochs", "iters"),
    [
        (["affectgpt-v1"], "lmsys/vicuna-7b-v1.5", False, None, 100, 1000),
        (["affectgpt-qwen25"], "Qwen/Qwen2.5-7B-Instruct", True, QWEN_TARGETS, 60, 5000),
        (["stage1", "affectgpt-qwen25"], "Qwen/Qwen2.5-7B-Instruct", True, QWEN_TARGETS, 60, 5000),
    ],
)
def test_presets_load_offline_with_the_papers_values(presets, llm, lora, targets, epochs, iters):
    run = load_run_config(presets)  # validation only: no hub look-up (require_models is not called)
    m, t = run.model, run.train
    assert (m.llm_model, m.lora, t.epochs, t.iters_per_epoch) == (llm, lora, epochs, iters)
    assert (m.max_length, m.max_answer_tokens, m.max_new_tokens) == (1024, 1024, 1200)
    if targets:
        assert (m.lora_r, m.lora_alpha, m.lora_targets) == (16, 32, targets)
        assert (m.audio_model, m.fusion) == ("TencentGameMate/chinese-hubert-large", "attention")
        assert m.vision_model == "openai/clip-vit-large-patch14"
    # the hub ids are what a require_models check would look up later, on a machine that has them
    assert ("model.llm_model", llm) in model_keys(run, ["model"])


def test_composed_preset_keeps_the_stage_settings():
    run = load_run_config(["stage1", "affectgpt-v1"])
    assert (run.train.stage, run.train.workers.actors, run.train.batch_size) == (1, 8, 3)
    assert run.train.coarse_uri == "s3://my-bucket/emer-coarse/samples"


@pytest.fixture(scope="module")
def tokenizer(tiny_cfg):
    return AutoTokenizer.from_pretrained(tiny_cfg.tokenizer_path)


def _encode(cfg, tokenizer, answer: str) -> dict:
    return PromptBuilder(cfg, tokenizer).encode("Hello there.", answer)


def test_answer_is_cut_to_max_length_and_counted(tiny_cfg, tokenizer):
    long = " ".join(["word"] * 60)
    free = _encode(tiny_cfg.replace(max_length=0, max_answer_tokens=1000), tokenizer, long)
    assert free["truncated"] == 0
    prompt_len = free["labels"].count(-100)
    answer_len = len(free["labels"]) - prompt_len
    capped = _encode(tiny_cfg.replace(max_length=prompt_len + 10, max_answer_tokens=1000), tokenizer, long)
    assert len(capped["input_ids"]) == prompt_len + 10 and capped["truncated"] == 1
    assert capped["labels"][-1] == tokenizer.eos_token_id
    by_answer = _encode(tiny_cfg.replace(max_length=0, max_answer_tokens=5), tokenizer, long)
    assert len(by_answer["input_ids"]) - prompt_len == 5 and by_answer["truncated"] == 1
    exact = tiny_cfg.replace(max_length=prompt_len + answer_len, max_answer_tokens=1000)
    fits = _encode(exact, tokenizer, long)
    assert fits["truncated"] == 0 and fits["input_ids"] == free["input_ids"]


def test_iters_per_epoch_fixes_the_epoch_and_the_schedule():
    assert total_optimizer_steps(10, 1, 2, 1, 3) == (5, 15)  # full passes
    assert total_optimizer_steps(10, 1, 2, 1, 3, iters_per_epoch=7) == (7, 21)  # the data cycles
    assert total_optimizer_steps(10, 1, 2, 1, 3, max_steps=9, iters_per_epoch=7) == (7, 9)
    with pytest.raises(ValueError, match="too few"):
        total_optimizer_steps(1, 1, 2, 1, 3, iters_per_epoch=7)
    with pytest.raises(ConfigError, match="train.iters_per_epoch"):
        TrainConfig(iters_per_epoch=-1)


def test_history_and_progress_line_show_truncated_answers():
    h = History(steps=[{"step": 1, "truncated": 2}, {"step": 2, "truncated": 3}])
    assert h.truncated_answers() == 5
    assert '"truncated_answers": 5' in h.to_json()
    rec = {"step": 2, "epoch": 0, "loss": 1.5, "lr": 1e-4, "samples_per_s": 3.0, "mem_gb": 1.0}
    line = step_line({**rec, "grad_norm": 0.25, "truncated_total": 5}, 10)
    assert line.endswith("truncated 5") and "grad_norm 0.250" in line


def _scalars(folder) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tracker_writes_event_files_in_the_run_folder(tmp_path):
    tracker = Tracker(TrainConfig(), str(tmp_path))
    for step in (1, 2):
        tracker.step({"step": step, "loss": 3.0 - step, "lr": 0.1, "grad_norm": 2.0, "samples_per_s": 4.0})
    tracker.evaluation({"eval_accuracy": 0.5, "eval_avg": 0.25, "note": "x"}, 2)
    tracker.close()
    got = _scalars(tmp_path / "tensorboard")
    assert got["train/loss"] == [(1, 2.0), (2, 1.0)]
    assert got["eval/accuracy"] == [(2, 0.5)] and got["eval/avg"] == [(2, 0.25)]
    assert "train/truncated_answers" not in got  # absent from the records: not logged as 0


def test_mlflow_switch_without_the_package_is_a_clear_error(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "mlflow" else real(name))
    with pytest.raises(RuntimeError, match=r"train.mlflow = true: .*emer\[mlflow\]"):
        check_tracking(TrainConfig(mlflow=True))
    check_tracking(TrainConfig())  # off: nothing to check
