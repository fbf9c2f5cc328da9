"""Driver of the metrics-export test, run as its own process with its own local Ray.

``python metrics_driver.py PORT ENDPOINT CLIPS SUBTITLES OUTPUT TINY_TEXT RESULT.json`` starts Ray
on 127.0.0.1 with the Prometheus export on PORT and a 500 ms metrics report interval, then:

1. a real annotation run of CLIPS with every LLM role on the openai backend at ENDPOINT (the test's
   scripted server), which records the decode / stage / sink metrics and the LLM ones;
2. a Ray task that runs the transformers backend on the tiny text checkpoint TINY_TEXT (two batches);
3. a Ray task that records the trainer's, the evaluation's and the S3 client's metrics through the
   same ``core.metrics`` calls those code paths make (their jobs are too heavy for this test).

A thread scrapes ``http://127.0.0.1:PORT/metrics`` every 0.5 s throughout (values of finished
workers may leave the endpoint) and keeps, per series, the largest value seen; RESULT.json gets
those series, the manifest counts and the LLM roles the run used.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
import time
import urllib.request

import ray

from core import metrics
from core.llm import LLMConfig, LLMRequest, create_backend
from pipelines.annotate import run_annotation
from pipelines.config import AnnotateConfig
from pipelines.pools import stage_groups

PORT, ENDPOINT, CLIPS, SUBS, OUTPUT, TINY_TEXT, RESULT = sys.argv[1:8]
seen: dict[str, float] = {}
stop = threading.Event()


def scrape() -> None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return
    for line in text.splitlines():
        if line.startswith("ray_emer_"):
            series, _, value = line.rpartition(" ")
            seen[series] = max(seen.get(series, float("-inf")), float(value))


def scraper() -> None:
    while not stop.wait(0.5):
        scrape()


def openai_annotate_config() -> AnnotateConfig:
    """Every LLM role of ``AnnotateConfig`` (whatever roles it has) on the scripted endpoint."""
    llm = dict(backend="openai", model="fake-mllm", base_url=ENDPOINT, api_key_env="", timeout_s=2.0)
    llm |= dict(max_retries=2, retry_backoff_s=0.01, concurrency=2, max_new_tokens=64)
    roles = {f.name: llm for f in dataclasses.fields(AnnotateConfig) if isinstance(f.default, LLMConfig)}
    stage_names = [f.name for f in dataclasses.fields(AnnotateConfig().stages)]
    stages = {s: {"num_cpus": 0.5} for s in stage_names} | {"decode": {"actors": 1}}
    return AnnotateConfig.from_dict({**roles, "stages": stages})


@ray.remote(num_cpus=0.5)
def tiny_transformers() -> list[dict]:
    be = create_backend(LLMConfig(model=TINY_TEXT, max_new_tokens=4, min_new_tokens=2, batch_size=2), "text")
    results = be.generate([LLMRequest(prompt=f"say something {k}") for k in range(3)])  # batches 2 + 1
    return [dataclasses.asdict(r) for r in results]


@ray.remote(num_cpus=0.5)
def other_paths() -> None:
    tags = {"run": "metrics-test"}
    metrics.gauge("emer_train_loss").set(1.5, {**tags, "split": "train"})
    metrics.gauge("emer_train_samples_per_second").set(12.0, tags)
    metrics.gauge("emer_train_step").set(3, tags)
    metrics.gauge("emer_train_learning_rate").set(1e-4, tags)
    metrics.counter("emer_eval_samples").inc(4, {"task": "ov"})
    metrics.counter("emer_s3_retries").inc(1, {"op": "boto3"})
    time.sleep(3)  # stay alive for a few report intervals


def main() -> None:
    ray.init(
        num_cpus=4,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        _metrics_export_port=int(PORT),
        _system_config={"metrics_report_interval_ms": 500},
        log_to_driver=False,
    )
    thread = threading.Thread(target=scraper, daemon=True)
    thread.start()
    cfg = openai_annotate_config()
    t0 = time.perf_counter()
    manifest = run_annotation(cfg, CLIPS, SUBS, OUTPUT)
    t1 = time.perf_counter()
    tiny = ray.get(tiny_transformers.remote())
    ray.get(other_paths.remote())
    t2 = time.perf_counter()
    time.sleep(3)  # the last report interval
    stop.set()
    thread.join()
    scrape()
    groups = stage_groups(cfg)  # steps sharing one pool share one model: their tag joins their roles
    roles = sorted({"+".join(c.role_for(cfg) for c in classes) for classes, _, llm in groups if llm})
    result = {
        "counts": manifest["counts"],
        "roles": roles,
        "tiny": tiny,
        "series": seen,
        "seconds": {"annotate": round(t1 - t0, 1), "tasks": round(t2 - t1, 1)},
    }
    with open(RESULT, "w") as f:
        json.dump(result, f)
    ray.shutdown()


if __name__ == "__main__":
    main()
