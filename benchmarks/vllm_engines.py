"""Memory and time of the demo's three text steps on vLLM: one engine per step (the old
``vllm_stages``: one ``ray.data.llm`` processor per step, each with its own engine and CPU stages)
against ONE shared engine (``pipelines.vllm_engine``), on the same rows, each in a fresh local Ray.

Peak memory: the largest sum of the resident memory (RSS) of this process and its process tree (Ray's
raylet and GCS, every worker and actor the raylet starts, the engine processes they spawn), sampled
every 0.5 s; other users' processes on the machine are not counted. Needs ``.venv-vllm`` (see the Makefile):

    .venv-vllm/bin/python benchmarks/vllm_engines.py [--rows 3] [--modes shared,per_step]

Prints one JSON object.

Measured (2026-12-07, 2 idle cores, load 5.7 at the end; ``benchmarks/results/
vllm-engines-idle.json``), 3 rows, the demo's three text steps (SmolLM2-135M, max_new_tokens 48):
shared engine 93.1 s and peak RSS 6.32 GiB; one engine per step 263.8 s and 18.83 GiB (2.8x the
time, 3.0x the memory). An earlier run under load 20-64 (with an RSS method that missed Ray's
renamed actor processes) gave 124.8 vs 817.2 s. The issue's trial: 5 rows, 240 s and +13.5 GB.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
ENGINE_ENV = {"VLLM_CPU_CI_ENV": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
os.environ.update(ENGINE_ENV)


class PeakRSS:
    """Samples the summed RSS of this process and all its descendants."""

    def __init__(self, every: float = 0.5) -> None:
        self.every, self.peak, self._stop = every, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:  # gone meanwhile
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(self.every)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def config():
    from emer.runconfig import load_run_config

    extra = ["annotate.text.backend=vllm", "annotate.text.concurrency=1", "annotate.text.max_model_len=2048"]
    extra += ["annotate.text.engine_kwargs={enforce_eager: true}", "annotate.text.max_new_tokens=24"]
    return load_run_config("demo", extra).annotate


def rows(n: int) -> list[dict]:
    return [
        {"name": f"r{i}", "subtitle": f"I waited {i + 2} hours and nobody came!", "outcome": "ok"}
        | {"audio_clue": "the voice is loud", "video_clue": "he frowns"}
        for i in range(n)
    ]


def run(mode: str, data: list[dict]) -> dict:
    import ray

    from pipelines import pools
    from pipelines.vllm_stage import build_stage_processor, vllm_stages

    cfg = config()
    [(stages, res, _)] = [g for g in pools.stage_groups(cfg) if g[2] is not None and g[2].backend == "vllm"]
    ray.init(num_cpus=16, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": ENGINE_ENV})
    ray.data.DataContext.get_current().enable_progress_bars = False
    build = build_stage_processor if mode == "per_step" else None
    try:
        with PeakRSS() as rss:
            start = time.perf_counter()
            ds = vllm_stages(ray.data.from_items(copy.deepcopy(data)), stages, cfg, res, build=build)
            out = ds.take_all()
            seconds = time.perf_counter() - start
    finally:
        ray.shutdown()
    ok = sum(r["outcome"] == "ok" for r in out)
    return {"seconds": round(seconds, 1), "peak_rss_gib": round(rss.peak / 2**30, 2), "rows_ok": ok}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=3, help="rows through the three text steps")
    ap.add_argument("--modes", default="shared,per_step", help="comma list of: shared, per_step")
    args = ap.parse_args()
    import importlib.util

    if importlib.util.find_spec("vllm") is None:  # `make bench` runs every benchmark in .venv
        print(json.dumps({"skipped": "no vllm in this venv: run it with .venv-vllm/bin/python"}))
        return
    data = rows(args.rows)
    out = {
        "benchmark": "three text steps on vLLM: one shared engine vs one engine per step",
        "rows": args.rows,
    }
    for mode in args.modes.split(","):
        out[mode] = run(mode, data)
        time.sleep(5)  # the engines' processes exit
    out["load_average_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
