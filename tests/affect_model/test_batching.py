"""Length-aware batching: the sampler (every index once, seeded), less padding on skewed lengths, the
streamed grouping of the training loop, the same per-sample loss under both batchings (tiny AffectGPT),
and inference that generates in length order but returns rows in input order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from affect_model.train.batching import (
    LengthGroupedSampler,
    describe_in_length_order,
    grouped_batches,
    length_grouped_batches,
    mean_padding,
    naive_batches,
    padding_stats,
    per_sample_loss,
)


def skewed_lengths(n: int, seed: int = 0) -> list[int]:
    """EMER-like answer lengths: log-normal, 30-400 tokens."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(np.log(90), 0.6, n), 30, 400).astype(int).tolist()


def pad_fraction(lengths: list[int], batches: list[list[int]]) -> float:
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    return 1 - sum(lengths[i] for b in batches for i in b) / padded


def test_sampler_yields_every_index_exactly_once_per_epoch():
    lengths = skewed_lengths(1003)
    sampler = LengthGroupedSampler(lengths, batch_size=8, bucket_batches=5, seed=3)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert sorted(i for b in batches for i in b) == list(range(1003))
        assert len(batches) == len(sampler) == 126
        assert sum(len(b) < 8 for b in batches) == 1  # the one short batch (1003 = 125 * 8 + 3)
    dropped = length_grouped_batches(lengths, 8, 5, seed=0, drop_last=True)
    assert len(dropped) == 125 and all(len(b) == 8 for b in dropped)
    assert len({i for b in dropped for i in b}) == 1000


def test_sampler_is_deterministic_for_a_seed_and_epoch():
    lengths = skewed_lengths(400)
    assert length_grouped_batches(lengths, 4, 10, (7, 1)) == length_grouped_batches(lengths, 4, 10, (7, 1))
    assert length_grouped_batches(lengths, 4, 10, (7, 1)) != length_grouped_batches(lengths, 4, 10, (7, 2))
    assert length_grouped_batches(lengths, 4, 10, (7, 1)) != length_grouped_batches(lengths, 4, 10, (8, 1))
    first = length_grouped_batches(lengths, 4, 10, 0)[0]
    assert max(lengths) in [lengths[i] for i in first]  # the longest batch first: OOM shows at step 1


def test_grouping_reduces_padding_on_skewed_lengths():
    lengths = skewed_lengths(600)
    naive = pad_fraction(lengths, naive_batches(600, 8))
    grouped = pad_fraction(lengths, length_grouped_batches(lengths, 8, 50, 0))
    assert naive > 0.35
    assert grouped < 0.05
    assert grouped < naive / 8


def test_grouped_batches_stream_every_row_once_in_full_batches():
    names = np.array([f"r{i}" for i in range(23)], dtype=object)
    lens = np.array(skewed_lengths(23, seed=1))
    chunks = [{"name": names[s : s + 12], "len": lens[s : s + 12]} for s in (0, 12)]  # buffers of 12 rows
    out = list(grouped_batches(chunks, lambda c: c["len"], lambda c: list(c["name"]), 3, 4, seed=5))
    assert [len(b) for b in out] == [3] * 7  # 12 -> 4 batches, 11 -> 3 batches + 2 rows dropped
    assert len({n for b in out for n in b}) == 21
    again = list(grouped_batches(chunks, lambda c: c["len"], lambda c: list(c["name"]), 3, 4, seed=5))
    assert again == out


def test_padding_stats_of_a_batch():
    batch = {
        "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]]),
        "frame_mask": torch.tensor([[True, True], [True, False]]),
        "clip_mask": torch.tensor([[True, True], [True, True]]),
    }
    stats = padding_stats(batch)
    assert stats == pytest.approx({"pad_frac": 0.25, "media_pad_frac": 0.125})
    mean = mean_padding([stats, {"pad_frac": 0.75}])
    assert mean == pytest.approx({"pad_frac": 0.5, "media_pad_frac": 0.0625})
    assert mean_padding([]) == {}


def test_per_sample_loss_is_the_same_under_both_batchings(tiny_cfg, make_rows):
    from affect_model.train.task import AffectGPTTask
    from core.stage import rows_to_numpy

    words = "the person frowns and speaks softly so she may feel sad worried and tired".split()
    rows = make_rows(9)
    for i, row in enumerate(rows):
        row["description_en"] = " ".join(words[j % len(words)] for j in range(2 + (i * 7) % 20))
    cfg = tiny_cfg.replace(max_answer_tokens=64)
    task = AffectGPTTask(cfg)
    torch.manual_seed(0)
    module = task.build().eval()
    columns = rows_to_numpy(rows, list(rows[0]))
    lengths = task.lengths(module, columns)
    assert len(set(lengths)) > 4  # the answers really differ in length

    def losses(batches: list[list[int]]) -> tuple[dict[str, float], float]:
        out, pads = {}, []
        for index in batches:
            batch = task.collate(module, {k: v[index] for k, v in columns.items()})
            names = batch.pop("names")
            pads.append(padding_stats(batch)["pad_frac"])
            labels = batch.pop("labels")
            with torch.no_grad():
                per = per_sample_loss(module(**batch).logits, labels)
            out.update(zip(names, per.tolist()))
        return out, float(np.mean(pads))

    naive, naive_pad = losses(naive_batches(9, 3))
    grouped, grouped_pad = losses(length_grouped_batches(lengths, 3, 3, 0))
    assert sorted(naive) == sorted(grouped) == sorted(r["name"] for r in rows)
    assert abs(sum(naive.values()) - sum(grouped.values())) < 1e-5
    assert max(abs(naive[n] - grouped[n]) for n in naive) < 1e-5
    assert grouped_pad < naive_pad


def test_describe_in_length_order_restores_the_input_order():
    rows = [{"name": f"n{i}", "len": n} for i, n in enumerate([5, 50, 7, 48, 6, 49, 30])]
    seen: list[list[int]] = []

    def describe(batch: list[dict]) -> list[str]:
        seen.append([r["len"] for r in batch])
        return [f"about {r['name']}" for r in batch]

    out = describe_in_length_order(rows, [r["len"] for r in rows], 2, describe)
    assert out == [f"about n{i}" for i in range(7)]
    assert seen == [[50, 49], [48, 30], [7, 6], [5]]


def test_describer_generates_by_prompt_length_and_keeps_row_order():
    from affect_model.jobs.infer import Describer

    class StubTask:
        def lengths(self, module, columns, with_answer=True):
            return [len(s) for s in columns["subtitle_en"]]

    class Recording(Describer):
        def setup(self) -> None:  # no model: a stub task measures prompts, _describe echoes them
            self.task, self.model, self.calls = StubTask(), None, []

        def _describe(self, rows: list[dict]) -> list[str]:
            self.calls.append([r["name"] for r in rows])
            if any(r["name"] == "bad" for r in rows):
                raise RuntimeError("cannot decode")
            return [r["subtitle_en"].upper() for r in rows]

    stage = Recording(None, group=2)
    subtitles = ["a", "a much longer line", "bb", "a long line", "ccc"]
    rows = [{"name": f"r{i}", "subtitle_en": s, "outcome": "ok"} for i, s in enumerate(subtitles)]
    rows.append({"name": "bad", "subtitle_en": "a much, much longer line", "outcome": "ok"})
    stage.process(rows)
    assert [r["description"] for r in rows[:5]] == [s.upper() for s in subtitles]
    assert rows[5]["description"] == "" and rows[5]["error"]
    assert all(r["error"] == "" for r in rows[:5])
    assert stage.calls[:3] == [["bad", "r1"], ["bad"], ["r1"]]  # the failing batch, then row by row
    assert stage.calls[3:] == [["r3", "r4"], ["r2", "r0"]]


def test_length_bucket_size_is_validated():
    from affect_model.train.config import InferConfig, TrainConfig
    from core.config import ConfigError

    with pytest.raises(ConfigError, match=r"train\.length_bucket_size = 0"):
        TrainConfig(length_bucket_size=0)
    with pytest.raises(ConfigError, match=r"train\.infer\.length_bucket_size = 0"):
        InferConfig(length_bucket_size=0)
    assert TrainConfig().group_by_length and TrainConfig().length_bucket_size == 50


def test_step_line_shows_the_padding_fraction():
    from affect_model.train.report import step_line

    rec = {"step": 3, "epoch": 0, "loss": 1.0, "lr": 1e-4, "samples_per_s": 2.0, "mem_gb": 1.0}
    assert "pad" not in step_line(rec, 10)
    assert " pad 12.5% " in step_line({**rec, "pad_frac": 0.125}, 10)


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_ray_training_steps_are_length_grouped_and_log_padding(ray_local, tiny_cfg, tmp_path):
    """Rows alternate a short and a long answer: data-order batches of 2 would each pad the short one;
    grouped within buffers of 4 rows every batch holds two equal lengths, so no step pads."""
    from train_helpers import history, rows, run_config

    from affect_model.train.data import write_coarse
    from affect_model.train.loop import run_training

    data, long = rows(8), "He frowns, raises his voice and clenches his fists: angry."
    for i, row in enumerate(data):
        row["subtitle_en"] = "The same line."
        row["description_en"] = "Sad." if i % 2 else long
    uri = str(tmp_path / "coarse.parquet")
    write_coarse(data, uri)
    cfg = run_config(tiny_cfg, coarse_uri=uri, storage_path=str(tmp_path / "runs"), length_bucket_size=2)
    res = run_training(cfg)
    steps = history(res["run_uri"])["steps"]
    assert len(steps) == 4
    assert [s["pad_frac"] for s in steps] == [0.0] * 4
    assert all(0 <= s["media_pad_frac"] < 1 for s in steps)
