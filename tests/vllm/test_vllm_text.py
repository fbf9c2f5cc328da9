"""The demo's three text steps through ``vllm_stages`` on a real vLLM engine (SmolLM2-135M-Instruct
from the models cache, CPU), beside the transformers backend on the same rows: the same columns,
answers from both; ONE engine for the three steps (finding 2); a prompt over ``max_model_len`` fails
its row with the engine's error while the others finish. One engine run serves every test here."""

from __future__ import annotations

import copy
import csv
import time

import pytest

from core.stage import FAILED, OK, StageChain
from emer.runconfig import load_run_config
from pipelines import pools
from pipelines.vllm_stage import vllm_stages

pytestmark = pytest.mark.vllm

MAX_MODEL_LEN = 1024
TEXT_COLUMNS = ("description_en", "description_zh", "ov_raw")


def demo_cfg(backend: str):
    """The demo preset's text role on ``backend`` (vLLM: CPU engine settings from the config)."""
    extra = [f"annotate.text.backend={backend}", "annotate.text.concurrency=1"]
    if backend == "vllm":
        extra += [
            f"annotate.text.max_model_len={MAX_MODEL_LEN}",
            "annotate.text.engine_kwargs={enforce_eager: true}",
        ]
    return load_run_config("demo", extra).annotate


def demo_rows(sample_clips, n: int = 4) -> list[dict]:
    """Rows as the text steps get them in the demo: the clip's subtitle and its measured clues."""
    with open(sample_clips.subtitles, newline="", encoding="utf-8") as f:
        subs = {r["name"]: r["english"] for r in csv.DictReader(f)}
    names = [c for c in sample_clips.clips if c in subs][:n]
    clues = ("the voice is loud and fast", "she smiles and raises her eyebrows")
    return [
        {"name": c, "subtitle": subs[c], "audio_clue": clues[0], "video_clue": clues[1], "outcome": OK}
        for c in names
    ]


@pytest.fixture(scope="module")
def runs(ray_local, sample_clips, smollm2):
    rows = demo_rows(sample_clips)
    long = {**rows[0], "name": "too_long", "subtitle": " ".join(["word"] * 3 * MAX_MODEL_LEN)}
    cfg = demo_cfg("vllm")
    [(stages, res, _)] = [g for g in pools.stage_groups(cfg) if g[2] is not None and g[2].backend == "vllm"]
    start = time.perf_counter()
    ds = vllm_stages(ray_local.data.from_items(copy.deepcopy([*rows, long])), stages, cfg, res)
    out = {r["name"]: r for r in ds.take_all()}
    seconds, stats = time.perf_counter() - start, ds.stats()
    local = copy.deepcopy(rows)
    for stage in StageChain([(cls, {}) for cls in stages], demo_cfg("transformers")).stages:
        stage.run_rows(local)
    for r in local:  # the columns a map_stages pool's table has for every row (rows_to_table)
        for c in (*(c for cls in stages for c in cls.produces), "stage", "reason"):
            r.setdefault(c, None)
    hf = {r["name"]: r for r in local}
    return {"stages": stages, "vllm": out, "transformers": hf, "s": seconds, "stats": stats}


@pytest.mark.timeout(600)  # the module's engine run: ~2 min on 2 idle cores, under load much more
def test_the_text_steps_answer_on_vllm_as_on_transformers(runs):
    assert [c.name for c in runs["stages"]] == ["disambiguate", "translate", "ov_labels"]
    vllm, hf = runs["vllm"], runs["transformers"]
    assert set(vllm) == {*hf, "too_long"}
    columns = {frozenset(r) for r in vllm.values()}
    assert columns == {frozenset(r) for r in hf.values()}, [sorted(c) for c in columns]  # same columns
    for name, want in hf.items():
        got = vllm[name]
        assert got["outcome"] == want["outcome"] == OK, (got.get("reason"), want.get("reason"))
        for col in TEXT_COLUMNS:
            assert isinstance(got[col], str) and got[col].strip(), (name, col, got[col])
            assert isinstance(want[col], str) and want[col].strip(), (name, col, want[col])
        assert isinstance(got["ov_labels"], list)
    print(f"vllm: {len(vllm)} rows x 3 steps in {runs['s']:.1f} s (engine start included)")


@pytest.mark.timeout(60)
def test_a_prompt_over_max_model_len_fails_its_row_alone(runs):
    bad = runs["vllm"]["too_long"]
    assert (bad["outcome"], bad["stage"]) == (FAILED, "disambiguate")
    assert bad["reason"].startswith("disambiguate LLM (vllm:") and ": vllm: " in bad["reason"]
    assert str(MAX_MODEL_LEN) in bad["reason"]  # vLLM's own message names the limit
    assert bad["description_en"] is None and bad["ov_labels"] is None
    assert all(r["outcome"] == OK for n, r in runs["vllm"].items() if n != "too_long")


@pytest.mark.timeout(60)
def test_the_three_steps_ran_on_one_engine(runs):
    """Finding 2: one engine stage (a pool of ``concurrency`` = 1 actor) served the three steps,
    where one processor per step ran three engine stages and twelve CPU-stage actors."""
    stats = runs["stats"]
    assert stats.count("MapBatches(StepsEngineUDF)") >= 1 and "vLLMEngineStageUDF" not in stats
    assert not any(s in stats for s in ("ChatTemplateUDF", "TokenizeUDF", "DetokenizeUDF")), stats
