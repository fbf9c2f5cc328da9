"""Run-config fingerprints: the digest is stable under dict order, ignored keys change nothing, the diff
names nested dotted keys, and ``check_resume`` refuses with every changed key and its old/new value."""

from __future__ import annotations

import pytest

from core.fingerprint import ResumeMismatch, check_resume, diff_keys, fingerprint, output_affecting

CONFIG = {
    "model": {"lora_r": 8, "targets": ("q_proj", "v_proj")},
    "train": {"lr": 1e-4, "log_every": 1, "features": {"batch_size": 8, "dtype": "float32"}},
}
IGNORE = {"train.log_every", "train.features"}


def _reordered(node):
    return {k: _reordered(v) if isinstance(v, dict) else v for k, v in reversed(list(node.items()))}


def test_fingerprint_is_stable_regardless_of_key_order_and_tuples():
    digest = fingerprint(CONFIG)
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert fingerprint(_reordered(CONFIG)) == digest
    as_lists = {**CONFIG, "model": {"lora_r": 8, "targets": ["q_proj", "v_proj"]}}  # YAML / JSON form
    assert fingerprint(as_lists) == digest
    assert fingerprint({**CONFIG, "model": {**CONFIG["model"], "lora_r": 16}}) != digest


def test_ignored_keys_and_everything_below_them_do_not_count():
    changed = {
        **CONFIG,
        "train": {"lr": 1e-4, "log_every": 50, "features": {"batch_size": 64, "dtype": "float16"}},
    }
    assert fingerprint(changed) != fingerprint(CONFIG)
    assert fingerprint(changed, IGNORE) == fingerprint(CONFIG, IGNORE)
    assert diff_keys(CONFIG, changed, IGNORE) == []
    assert output_affecting(CONFIG, IGNORE) == {
        "model": {"lora_r": 8, "targets": ["q_proj", "v_proj"]},
        "train": {"lr": 1e-4},
    }
    # a prefix of a key's name is not its parent: train.lr_x is not below train.lr
    assert diff_keys({"train": {"lr_x": 1}}, {"train": {"lr_x": 2}}, {"train.lr"}) == ["train.lr_x"]


def test_diff_lists_nested_dotted_keys_including_added_and_removed_ones():
    new = {
        "model": {"lora_r": 16, "targets": ("q_proj",), "fusion": "attention"},
        "train": {"lr": 1e-4, "log_every": 1, "features": {"batch_size": 8}},
    }
    assert diff_keys(CONFIG, new) == [
        "model.fusion",
        "model.lora_r",
        "model.targets",
        "train.features.dtype",
    ]


def test_check_resume_names_each_changed_key_with_old_and_new_values():
    new = {**CONFIG, "train": {**CONFIG["train"], "lr": 2e-4, "log_every": 9}}
    check_resume(CONFIG, _reordered(CONFIG), IGNORE, what="run x")  # unchanged: passes
    check_resume(None, new, IGNORE, what="run x")  # nothing saved yet: passes
    with pytest.raises(ResumeMismatch) as err:
        check_resume(CONFIG, new, IGNORE, what="training run runs/train/stage1", fix="use a new run name")
    text = str(err.value)
    assert "cannot resume training run runs/train/stage1" in text
    assert "train.lr: 0.0001 -> 0.0002" in text and "log_every" not in text
    assert text.rstrip().endswith("Fix: use a new run name")
    assert err.value.changes == [("train.lr", 1e-4, 2e-4)]
    assert isinstance(err.value, ValueError)


def test_non_plain_values_are_rejected_with_their_key():
    with pytest.raises(TypeError, match=r"'train\.path'.*plain"):
        fingerprint({"train": {"path": object()}})
