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
