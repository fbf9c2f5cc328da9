"""Smoke tests of the #14 benchmarks' parts that need no Ray: the stub model server and the config
keys the benchmarks set (a renamed role or stage key fails here, not in a long benchmark run)."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import annotate_engine  # noqa: E402
import annotate_scaling  # noqa: E402
from openai_stub import stub_server  # noqa: E402

from core.llm import LLMConfig, LLMRequest, create_backend  # noqa: E402


def test_stub_answers_concurrently_after_its_service_time():
    with stub_server(150) as stub:
        cfg = LLMConfig(backend="openai", model="stub", base_url=stub.url, api_key_env="", concurrency=4)
        backend = create_backend(cfg, "text")
        results = backend.generate([LLMRequest(prompt=f"row {i}") for i in range(4)])
        backend.close()
        stats = stub.stats()
        stub.reset()
        after = stub.stats()
    assert [r.text for r in results] == ["stub: images=0 audio=0"] * 4
    assert stats["requests"] == 4 and stats["max_inflight"] == 4
    assert 0.15 <= stats["span_s"] < 0.15 * 4  # all four in one service time, not one after another
    assert after == {"requests": 0, "span_s": 0.0, "max_inflight": 0}


def test_scaling_config_sets_the_model_stage_pool():
    cfg = annotate_scaling.annotate_config("http://127.0.0.1:9/v1", actors=8, concurrency=2, batch=8)
    llm, res = getattr(cfg, annotate_scaling.ROLE), getattr(cfg.stages, annotate_scaling.STAGE)
    assert (llm.backend, llm.base_url, llm.concurrency, llm.api_key_env) == (
        "openai",
        "http://127.0.0.1:9/v1",
        2,
        "",
    )
    assert (res.actors, res.num_cpus, res.batch_size) == (8, 0.1, 8)
    assert annotate_scaling.stage_class().role == annotate_scaling.ROLE


def test_engine_config_is_the_demo_text_model_on_one_actor():
    cfg = annotate_engine.annotate_config(2)
    llm, res = cfg.llm(annotate_engine.ROLE), cfg.stages.of(annotate_engine.STAGE)
    assert llm.backend == "transformers" and llm.model.endswith("smollm2-135m-instruct")
    assert llm.temperature == 0 and llm.max_new_tokens == 48
    assert (res.actors, res.num_cpus) == (1, 2)
    assert annotate_engine.stage_class().role == annotate_engine.ROLE
    rows = annotate_engine.rows(32)
    assert len({r["description_en"] for r in rows}) == 32


def test_engine_summary_cancels_start_up_and_compares_texts():
    cfg = annotate_engine.annotate_config(2)
    data = annotate_engine.rows(4)
    texts = {r["name"]: f"t{i}" for i, r in enumerate(data)}
    loop = {"load_s": 5.0, "batch_s": [3.0, 2.0, 2.0, 2.0], "texts": texts}  # batches of one row

    def run(names, wall):
        return {"wall_s": wall, "arrivals": [], "texts": {k: texts[k] for k in names}}

    half, full = list(texts)[:2], list(texts)
    pairs = [(run(half, 12.0), run(full, 16.0)), (run(half, 10.0), run(full, 15.0))]
    pairs[1][1]["texts"][full[3]] = "ERROR boom"
    out = annotate_engine.summary(loop, pairs, data, 1, cfg, 2)
    # the loop's last two rows take 4 s; the pipeline's two extra rows 4 s and 5 s (median 4.5)
    assert out["ratio_per_repeat"] == [1.0, 0.8] and out["ratio_pipeline_vs_loop"] == 0.889
    assert out["pipeline_s"] == {2: [12.0, 10.0], 4: [16.0, 15.0]}
    assert out["ratio_with_start_up"] == round(14.0 / 15.5, 3) and out["pipeline_start_up_s"] == 6.5
    assert (out["texts_equal"], out["errors"], out["texts_match"]) == ("11/12", 1, False)


def test_vllm_engine_config_and_summary():
    import annotate_vllm

    cfg = annotate_vllm.vllm_config(annotate_engine.PRESET, annotate_engine.ROLE, annotate_engine.STAGE, 2)
    llm = cfg.llm(annotate_engine.ROLE)
    assert (llm.backend, llm.concurrency, llm.engine_kwargs) == ("vllm", 1, {"enforce_eager": True})
    assert cfg.stages.of(annotate_engine.STAGE).num_cpus == 2  # the engine's CPU bundle
    data = annotate_engine.rows(4)
    texts = {r["name"]: "['sad']" for r in data}
    loop = {"load_s": 9.0, "generate_s": 4.0, "texts": texts}
    half = {"wall_s": 20.0, "texts": dict(list(texts.items())[:2])}
    pairs = [(half, {"wall_s": 22.5, "texts": texts})]
    out = annotate_vllm.summary(llm, loop, pairs, data, 2)
    assert out["loop_rows_per_s"] == 1.0 and out["pipeline_steady_rows_per_s"] == 0.8
    assert out["ratio_pipeline_vs_loop"] == 0.8 and out["pipeline_start_up_s"] == 17.5
    assert out["texts_equal"] == "6/6" and out["errors"] == 0
