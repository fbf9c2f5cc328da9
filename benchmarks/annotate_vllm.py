"""The OV step on vLLM: rows/s through ``ray.data.llm`` (the pipeline's shared-engine processor,
``pipelines.vllm_stage.vllm_stages``) against vLLM's own ``LLM.generate`` on the same prompts, in one
run (``annotate_engine.py --engine vllm`` runs it; needs ``.venv-vllm``, see the Makefile).

- loop: ``vllm.LLM`` in this process, the same engine arguments (the role's ``engine_kwargs`` etc.);
  the prompts are the stage's own (``Preprocess(OVLabelStage).messages`` rendered with the model's
  chat template, as the engine stage renders them); one ``generate`` over all rows after a warm-up.
- pipeline: the rows through ``vllm_stages([OVLabelStage])``: one engine actor, ``batch_size`` rows a
  call, batches overlapped. Its steady cost is ``run(rows) - run(rows / 2)`` (both runs pay the
  engine start: the difference cancels it), the loop's the generate time of all rows times
  ``(rows - rows / 2) / rows``; ``ratio = loop_steady / pipeline_steady`` (target >= 0.9).

Greedy, so both sides should give the same texts: ``texts_equal`` compares them.

Measured (2026-12-07, 32 rows, 1 repeat, 2 idle cores, load 2.7; ``benchmarks/results/
annotate-vllm-idle.json``): LLM.generate 1.52 rows/s after a 52.7 s engine start; the pipeline
1.38 rows/s steady (run(16) 81.7 s, run(32) 93.3 s, start-up 70.2 s): **ratio 0.912**; texts_equal
48/48. The earlier 0/48 was a real defect this benchmark found: a group of ONE text step (here the
OV step alone) runs on the shared engine, whose answers are written into the row, but
``Postprocess`` took one stage for a per-stage processor and overwrote them with its empty
``generated_text`` (fixed: ``Postprocess(..., shared=True)``; test
``test_after_a_shared_engine_the_answers_in_the_row_stay``).
"""

from __future__ import annotations

import copy
import gc
import os
import time

ENGINE_ENV = {"VLLM_CPU_CI_ENV": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind"}


def vllm_config(preset: str, role: str, stage: str, cpus: int):
    """The demo preset's text role on vLLM, CPU-placed: ``cpus`` CPUs for the engine's bundle."""
    from emer.runconfig import load_run_config

    extra = [
        f"annotate.{role}.backend=vllm",
        f"annotate.{role}.concurrency=1",
        f"annotate.{role}.max_model_len=2048",
    ]
    extra += [
        f"annotate.{role}.engine_kwargs={{enforce_eager: true}}",
        f"annotate.stages.{stage}.num_cpus={cpus}",
    ]
    return load_run_config(preset, extra).annotate


def prompts(cfg, stage_class, data: list[dict]) -> list[str]:
    from transformers import AutoTokenizer

    from pipelines.vllm_stage import Preprocess

    pre = Preprocess(stage_class, cfg)
    tok = AutoTokenizer.from_pretrained(pre.stage.llm_cfg.model)
    rows = copy.deepcopy(data)
    return [
        tok.apply_chat_template(pre.messages(r), tokenize=False, add_generation_prompt=True) for r in rows
    ]


def run_loop(cfg, stage_class, data: list[dict]) -> dict:
    """``vllm.LLM.generate`` on the stage's prompts, in this process."""
    import vllm

    from pipelines.vllm_stage import Preprocess, engine_kwargs

    pre = Preprocess(stage_class, cfg)
    llm_cfg = pre.stage.llm_cfg
    texts = prompts(cfg, stage_class, data)
    start = time.perf_counter()
    llm = vllm.LLM(model=llm_cfg.model, **engine_kwargs(llm_cfg, {}))
    load = time.perf_counter() - start
    params = vllm.SamplingParams(**pre.sampling)
    llm.generate(texts[:2], params, use_tqdm=False)  # warm-up
    start = time.perf_counter()
    outs = llm.generate(texts, params, use_tqdm=False)
    seconds = time.perf_counter() - start
    answers = {r["name"]: o.outputs[0].text.strip() for r, o in zip(data, outs)}
    del llm
    gc.collect()
    return {"load_s": load, "generate_s": seconds, "texts": answers}


def run_pipeline(ray, cfg, stage_class, stage: str, data: list[dict]) -> dict:
    from pipelines.vllm_stage import vllm_stages

    start = time.perf_counter()
    ds = vllm_stages(ray.data.from_items(copy.deepcopy(data)), [stage_class], cfg, cfg.stages.of(stage))
    out = {r["name"]: r for r in ds.take_all()}
    texts = {
        n: (r.get("ov_raw") or "") if r["outcome"] == "ok" else f"ERROR {r.get('reason')}"
        for n, r in out.items()
    }
    return {"wall_s": time.perf_counter() - start, "texts": texts}


def bench(preset: str, role: str, stage: str, stage_class, data: list[dict], cpus: int, repeats: int) -> dict:
    import ray

    os.environ.update(ENGINE_ENV)
    cfg = vllm_config(preset, role, stage, cpus)
    # Ray first (as annotate_engine.py does): the loop runs beside the same idle Ray processes
    ray.init(
        num_cpus=max(4, cpus + 2),
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": dict(ENGINE_ENV)},
    )
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        loop = run_loop(cfg, stage_class, data)
        half = len(data) // 2
        pairs = [
            (
                run_pipeline(ray, cfg, stage_class, stage, data[:half]),
                run_pipeline(ray, cfg, stage_class, stage, data),
            )
            for _ in range(repeats)
        ]
    finally:
        ray.shutdown()
    return summary(cfg.llm(role), loop, pairs, data, cpus)


def summary(llm, loop: dict, pairs: list, data: list[dict], cpus: int) -> dict:
    import statistics

    n, half = len(data), len(data) // 2
    loop_more = loop["generate_s"] * (n - half) / n
    mores = [full["wall_s"] - small["wall_s"] for small, full in pairs]
    pipe_more = statistics.median(mores)
    runs = [run for pair in pairs for run in pair]
    same = sum(loop["texts"].get(k) == v for run in runs for k, v in run["texts"].items())
    differ = [(k, loop["texts"].get(k), v) for run in runs for k, v in run["texts"].items()]
    differ = [d for d in differ if d[1] != d[2]]
    total = sum(len(run["texts"]) for run in runs)
    errors = sum(v.startswith("ERROR") for run in runs for v in run["texts"].values())
    return {
        "benchmark": "OV step: ray.data.llm (vllm_stages, one engine actor) vs vLLM's LLM.generate",
        "model": llm.model,
        "rows": n,
        "batch_size": llm.batch_size,
        "max_new_tokens": llm.max_new_tokens,
        "cpus": cpus,
        "loop_engine_start_s": round(loop["load_s"], 2),
        "loop_generate_s": round(loop["generate_s"], 2),
        "loop_rows_per_s": round(n / loop["generate_s"], 4),
        "pipeline_s": {r: [round(p[i]["wall_s"], 2) for p in pairs] for i, r in enumerate((half, n))},
        "pipeline_steady_rows_per_s": round((n - half) / pipe_more, 4),
        "pipeline_start_up_s": round(statistics.median(s["wall_s"] for s, _ in pairs) - pipe_more, 2),
        "ratio_pipeline_vs_loop": round(loop_more / pipe_more, 3),
        "ratio_per_repeat": [round(loop_more / m, 3) for m in mores],
        "target_ratio": 0.9,
        "texts_equal": f"{same}/{total}",
        "errors": errors,
        "sample_text": next(iter(loop["texts"].values())),
        "first_difference": {"name": differ[0][0], "loop": differ[0][1], "pipeline": differ[0][2]}
        if differ
        else None,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
