"""A real model stage's speed of light: the demo's text model through the pipeline vs the same backend
in a plain loop, on the same requests.

The model is the demo preset's text role (``configs/demo.yaml``: SmolLM2-135M-Instruct from
``$EMER_MODELS/smollm2-135m-instruct``, float32, its few-shot prompt variant, ``max_new_tokens`` 48,
greedy, LLM batch size 8) on the transformers backend. The requests are the OV-extraction requests
of ``--rows`` generated descriptions (``OVLabelStage``, the real stage class).

- loop: one ``TransformersBackend`` in this process; the stage's own requests (``OVLabelStage.request``)
  go to ``backend.generate`` in batches of the stage's batch size, one after another.
- pipeline: the same rows through the real stage on a one-actor pool made like
  ``pipelines.annotate.build_pipeline`` makes it (``pipelines.pools.remote_for``, ``core.stage.map_stages``,
  2 batches in flight), the actor given as many CPUs as this process has (so torch gets as many
  threads in both: Ray sets ``OMP_NUM_THREADS`` from the actor's CPUs).

Input blocks are exactly one stage batch each, so both sides generate the same batches (same padding)
and, greedy, the same texts: ``texts_match`` checks it (the loop's texts against every pipeline run).
Ray is started first, so the loop runs next to the same idle Ray processes as the pipeline.

The ratio is the steady throughput, start-up cancelled on both sides: the loop's cost of the second
half of the rows is the time of its batches after the first half (model load and first batches
excluded); the pipeline's is ``run(rows) - run(rows / 2)``, runs of fresh one-actor pools in one Ray
session, so each pays the actor start, the model load and the slow first ``generate`` once; the
median over ``--repeats`` pairs. ``ratio_with_start_up`` charges the pipeline with its start-up as
well (the whole ``run(rows)`` against the loop's model load + batches), and ``pipeline_start_up_s``
is what that start-up costs. One run takes about 5 minutes on 2 idle cores.

    python benchmarks/annotate_engine.py [--rows 64] [--repeats 2] [--cpus 2]
    .venv-vllm/bin/python benchmarks/annotate_engine.py --engine vllm [--rows 64] [--repeats 1]

``--engine vllm`` (``benchmarks/annotate_vllm.py``): the same role and rows on vLLM's CPU engine,
rows/s through ``ray.data.llm`` (``vllm_stages``) against vLLM's own ``LLM.generate`` on the same
prompts, the engine start cancelled as above.

Target: pipeline >= 0.9x the loop's steady throughput. Prints one JSON object.

Measured (2026-12-04, 2 idle cores, load average ~2 from the benchmark itself), 64 rows, 2 repeats,
texts equal 192/192: loop batches 14.56 / 13.88 / 14.30 / 14.16 s (load 4.0 s); pipeline run(32)
38.82 / 37.43 s, run(64) 66.21 / 64.63 s: steady 1.124 (loop) vs 1.172 (pipeline) rows/s, ratio
1.043 (1.039 / 1.047 per repeat); with start-up 0.931; the pipeline's start-up (actor process,
imports, model load, first ``generate``) 10.8 s. Single pairs before Ray was started first for the
loop varied from 0.857 to 1.032 on the same idle machine: one pair is not enough. On a machine shared
with other jobs the numbers move with their load (2026-12-03, 32 rows, start-up included: 0.86 at
load ~9, 1.79 as the load fell from ~14 to ~1).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

# ---- every config key the benchmark uses, in one place (the role / stage names may change) ----
PRESET = "demo"
ROLE = "ov"  # the LLM role (annotate.<ROLE>, inheriting annotate.text) of the OV-extraction stage
STAGE = "ov"  # its actor pool (annotate.stages.<STAGE>)


def stage_class():
    from pipelines.stages import OVLabelStage

    return OVLabelStage


def annotate_config(cpus: int):
    from emer.runconfig import load_run_config

    extra = [f"annotate.stages.{STAGE}.actors=1", f"annotate.stages.{STAGE}.num_cpus={cpus}"]
    return load_run_config(PRESET, extra).annotate


# ------------------------------------------------------------------------------------------------

EMOTIONS = ["angry", "happy", "sad", "worried", "surprised", "calm", "tired", "excited"]
REASONS = [
    "the bus left without waiting",
    "a letter arrived from an old friend",
    "the test results came back",
    "the neighbours were loud all night",
]


def rows(n: int) -> list[dict]:
    """``n`` rows with distinct English descriptions (what the disambiguation step writes)."""
    out = []
    for i in range(n):
        emotion, reason = EMOTIONS[i % len(EMOTIONS)], REASONS[(i // len(EMOTIONS)) % len(REASONS)]
        text = f"The person is {emotion}, because {reason} (scene {i})."
        out.append({"name": f"d{i:04d}", "description_en": text, "description_zh": None, "outcome": "ok"})
    return out


def run_loop(cfg, data: list[dict], batch: int) -> dict:
    """The backend in a plain loop: load it, then one ``generate`` per stage batch."""
    from core.llm import create_backend
    from pipelines.steps import kind_of

    llm = cfg.llm(ROLE)
    start = time.perf_counter()
    backend = create_backend(llm, kind_of(ROLE))
    load = time.perf_counter() - start
    # the stage builds the requests and reuses the loaded backend
    stage = stage_class()(cfg, shared=[("llm", (kind_of(ROLE), llm), backend)])
    requests = [stage.request(r) for r in data]
    texts, times = [], []
    for i in range(0, len(requests), batch):
        t = time.perf_counter()
        texts += [r.text if r.ok else f"ERROR {r.error}" for r in backend.generate(requests[i : i + batch])]
        times.append(time.perf_counter() - t)
    del stage, backend
    gc.collect()
    return {"load_s": load, "batch_s": times, "texts": dict(zip((r["name"] for r in data), texts))}


def run_pipeline(cfg, data: list[dict], batch: int) -> dict:
    """The same rows through the real stage on a one-actor pool; times of every output batch."""
    import ray

    from core.stage import map_stages
    from pipelines import pools

    res, llm = cfg.stages.of(STAGE), cfg.llm(ROLE)
    ds = ray.data.from_items(data, override_num_blocks=math.ceil(len(data) / batch))
    remote = pools.remote_for(res, llm)  # what build_pipeline gives a pool
    ds = map_stages(ds, [(stage_class(), {})], cfg, pool=(1, 1), batch_size=batch, remote=remote)
    texts, arrivals = {}, []
    start = time.perf_counter()
    for out in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        arrivals.append((time.perf_counter() - start, out.num_rows))
        for r in out.to_pylist():
            texts[r["name"]] = r.get("ov_raw") if r["outcome"] == "ok" else f"ERROR {r.get('reason')}"
    return {"wall_s": time.perf_counter() - start, "arrivals": arrivals, "texts": texts}


def summary(loop: dict, pairs: list[tuple[dict, dict]], data: list[dict], batch: int, cfg, cpus: int) -> dict:
    """Medians over the ``(run(rows / 2), run(rows))`` pairs; texts compared on every run."""
    n, half, llm = len(data), len(data) // 2, cfg.llm(ROLE)
    loop_total = loop["load_s"] + sum(loop["batch_s"])
    loop_more = sum(loop["batch_s"][half // batch :])  # the loop's cost of the second half of the rows
    mores = [full["wall_s"] - small["wall_s"] for small, full in pairs]  # the start-up cancels
    pipe_more = statistics.median(mores)
    small_s = statistics.median(small["wall_s"] for small, _ in pairs)
    full_s = statistics.median(full["wall_s"] for _, full in pairs)
    runs = [run for pair in pairs for run in pair]
    same = sum(loop["texts"][k] == v for run in runs for k, v in run["texts"].items())
    texts = [*loop["texts"].values(), *(t for run in runs for t in run["texts"].values())]
    errors = sum(str(t).startswith("ERROR") for t in texts)
    expected = len(pairs) * (n + half)
    return {
        "benchmark": "annotate model stage vs plain loop (transformers backend)",
        "model": llm.model,
        "stage": stage_class().__name__,
        "rows": n,
        "stage_batch_size": batch,
        "llm_batch_size": llm.batch_size,
        "max_new_tokens": llm.max_new_tokens,
        "greedy": llm.temperature == 0,
        "cpus": cpus,
        "loop_model_load_s": round(loop["load_s"], 2),
        "loop_batch_s": [round(t, 2) for t in loop["batch_s"]],
        "loop_s": round(loop_total, 2),
        "pipeline_s": {r: [round(p[i]["wall_s"], 2) for p in pairs] for i, r in enumerate((half, n))},
        "pipeline_output_batches_at_s": [[round(t, 2), k] for t, k in pairs[-1][1]["arrivals"]],
        "steady": f"the cost of rows {half + 1}-{n}: loop = their batches; pipeline = run({n}) - run({half})",
        "loop_steady_rows_per_s": round((n - half) / loop_more, 4),
        "pipeline_steady_rows_per_s": round((n - half) / pipe_more, 4),
        "ratio_pipeline_vs_loop": round(loop_more / pipe_more, 3),
        "ratio_per_repeat": [round(loop_more / m, 3) for m in mores],
        "target_ratio": 0.9,
        "with_start_up": f"{n} rows, loop = model load + batches; pipeline = the whole run({n})",
        "ratio_with_start_up": round(loop_total / full_s, 3),
        "pipeline_start_up_s": round(small_s - pipe_more, 2),
        "texts_match": same == expected and errors == 0,
        "texts_equal": f"{same}/{expected}",
        "errors": errors,
        "sample_text": loop["texts"][data[0]["name"]],
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--rows", type=int, default=64, help="rows (OV requests); the pipeline runs them, then half"
    )
    ap.add_argument("--repeats", type=int, default=2, help="pipeline (half, all) run pairs; medians")
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="CPUs of Ray and the actor")
    ap.add_argument(
        "--engine",
        choices=("transformers", "vllm"),
        default="transformers",
        help="the role's backend: transformers (stage vs plain loop) or vllm (ray.data.llm vs LLM.generate)",
    )
    args = ap.parse_args()
    if args.engine == "vllm":
        import annotate_vllm

        out = annotate_vllm.bench(
            PRESET, ROLE, STAGE, stage_class(), rows(args.rows), args.cpus, args.repeats
        )
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return
    import ray
    import ray.data

    if args.rows < 2 or args.repeats < 1:
        ap.error("--rows must be >= 2 and --repeats >= 1")
    cfg = annotate_config(args.cpus)
    batch = min(getattr(cfg.stages, STAGE).batch_size, args.rows // 2)
    if args.rows % (2 * batch):
        ap.error(f"--rows must be a multiple of {2 * batch} (twice the stage batch size)")
    data = rows(args.rows)
    # Ray is up on both sides, so the loop runs next to the same idle Ray processes as the pipeline
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        loop = run_loop(cfg, data, batch)
        pairs = [
            (run_pipeline(cfg, data[: args.rows // 2], batch), run_pipeline(cfg, data, batch))
            for _ in range(args.repeats)
        ]
    finally:
        ray.shutdown()
    out = summary(loop, pairs, data, batch, cfg, args.cpus)
    print(json.dumps(out, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
