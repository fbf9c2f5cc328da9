"""Cluster scenarios of the annotation, each run in its own process by ``test_autoscaling.py`` and
``test_node_loss.py`` (never inside pytest's Ray), reporting JSON.

- ``autoscale``: a head with CPUs but no model slot and a real (v1) autoscaler over fake worker
  nodes that carry one (``model_slot``; Ray's ``fake_multinode`` provider, as ``AutoscalingCluster``;
  that class is not used itself because it runs ``ray stop --force``, which would end every Ray on
  this machine, and its example.yaml is not in the wheel). The audio stage asks ``{model_slot: 1}`` and
  starts with no worker node; the report has the most audio actors alive at once, the worker nodes
  seen and how long the idle workers took to go after the run.
- ``node_loss``: ``ray.cluster_utils.Cluster`` with a head and two ``llm`` workers and fast health
  checks; the worker running the audio actor is removed while it works; the report names it.

The model roles use the ``openai`` backend on a local fake server whose ``slow-audio`` model sleeps
``--delay`` seconds per request, so the audio stage's queue builds. The cluster's Ray files live under
``RAY_TMPDIR`` (set by the caller, who also ends the process session of this script); the cluster is
shut down by its handle.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import ray
from llm_fixtures import FakeOpenAI, fake_openai_server
from ray.cluster_utils import Cluster
from ray.core.generated import gcs_pb2

from pipelines.annotate import run_annotation
from pipelines.config import AnnotateConfig

FAST_HEALTH = {
    "health_check_period_ms": 500,
    "health_check_timeout_ms": 500,
    "health_check_failure_threshold": 3,
}
# The model stage here is an endpoint client (backend: openai), which never takes a GPU node's ``llm``
# slot (pipelines.pools.resources_of); a custom resource of its own stands in for the GPU nodes.
SLOT = "model_slot"
WORKER = {"CPU": 1, SLOT: 1}
OBJECT_STORE = 100 * 2**20


class SlowAudio(FakeOpenAI):
    """The fake server, ``delay`` seconds per request of the ``slow-audio`` model."""

    delay = 0.5

    def answer(self, body: dict, auth: str = "") -> tuple[int, dict, bytes, float]:
        status, headers, payload, delay = super().answer(body, auth)
        return status, headers, payload, delay + (self.delay if body.get("model") == "slow-audio" else 0.0)


def annotate_config(url: str, audio_stage: dict) -> AnnotateConfig:
    def llm(model: str) -> dict:
        return {"backend": "openai", "model": model, "base_url": url, "api_key_env": "", "concurrency": 1}

    light = {"num_cpus": 0.25, "actors": 1}
    return AnnotateConfig.from_dict(
        {
            "audio": llm("slow-audio"),
            "video": llm("fast"),
            "text": llm("fast"),
            "decode_timeout_s": 0.0,
            "store_media": False,
            "progress_every_s": 5.0,
            "stages": {
                "decode": {"actors": 1, "num_cpus": 0.5, "batch_size": 2},
                "audio": {"num_cpus": 0.25, "resources": {SLOT: 1}, "batch_size": 2, **audio_stage},
                "video": light,
                "text": light,
            },
        }
    )


def audio_actors(cluster: Cluster) -> list[dict]:
    """The audio stage's Ray Data map workers (the only ones asking ``llm``): node id and state."""
    accessor = cluster.global_state._connect_and_get_accessor()
    out = []
    for raw in accessor.get_actor_table(None, None):
        a = gcs_pb2.ActorTableData.FromString(raw)
        if "MapWorker" in a.class_name and SLOT in a.required_resources:
            state = gcs_pb2.ActorTableData.ActorState.Name(a.state)
            out.append({"node": a.address.node_id.hex(), "state": state})
    return out


def alive_workers(head_id: str) -> set[str]:
    return {n["NodeID"] for n in ray.nodes() if n["Alive"] and n["NodeID"] != head_id}


class Watcher(threading.Thread):
    """Polls the cluster every 0.3 s: the most audio actors alive at once, every worker node seen;
    ``on_poll(alive actors)`` may act (the node-loss scenario removes a node there)."""

    def __init__(self, cluster: Cluster, on_poll=None) -> None:
        super().__init__(daemon=True)
        self.cluster, self.on_poll = cluster, on_poll
        self.max_alive, self.workers_seen, self.stop = 0, set(), threading.Event()

    def run(self) -> None:
        head = self.cluster.head_node.node_id
        while not self.stop.is_set():
            try:
                alive = [a for a in audio_actors(self.cluster) if a["state"] == "ALIVE"]
                self.max_alive = max(self.max_alive, len(alive))
                self.workers_seen |= alive_workers(head)
                if self.on_poll:
                    self.on_poll(alive)
            except Exception as err:  # noqa: BLE001 - a missed poll is no failure; say so and go on
                print(f"watcher: {type(err).__name__}: {err}", file=sys.stderr)
            time.sleep(0.3)


def autoscaling_config(gcs_address: str, head: dict, max_workers: int, idle_minutes: float) -> str:
    """A cluster config for the fake multi-node provider (Ray's fake_multi_node/example.yaml, with
    our node types); returns the path of the JSON file."""
    worker = {**WORKER, "object_store_memory": OBJECT_STORE}
    config = {
        "cluster_name": "emer-autoscale-test",
        "max_workers": max_workers,
        "provider": {
            "type": "fake_multinode",
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
            "gcs_address": gcs_address,
        },
        "available_node_types": {
            "ray.head.default": {"resources": head, "node_config": {}, "max_workers": 0},
            "llm_worker": {
                "resources": worker,
                "node_config": {},
                "min_workers": 0,
                "max_workers": max_workers,
            },
        },
        "head_node_type": "ray.head.default",
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": idle_minutes,
        **{k: {} for k in ("auth", "docker", "file_mounts")},
        **{k: [] for k in ("initialization_commands", "setup_commands", "head_setup_commands")},
        **{k: [] for k in ("worker_setup_commands", "head_start_ray_commands", "worker_start_ray_commands")},
        **{k: [] for k in ("cluster_synced_files", "rsync_exclude", "rsync_filter")},
        "file_mounts_sync_continuously": False,
    }
    path = Path(tempfile.mkstemp(suffix=".json")[1])
    path.write_text(json.dumps(config))
    return str(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def head_args(**extra) -> dict:
    # every fixed default port (6379, 52365, …) may belong to another Ray on this machine
    return {
        "num_cpus": 2,
        "include_dashboard": False,
        "dashboard_agent_listen_port": free_port(),
        "object_store_memory": 2 * OBJECT_STORE,
        **extra,
    }


def annotate(cluster: Cluster, fake: SlowAudio, args, audio_stage: dict, **extra) -> dict:
    """Run the annotation on ``cluster`` (driver here); the report's part about the run."""
    cfg = annotate_config(fake.url, audio_stage).replace(**extra)
    start = time.monotonic()
    manifest = run_annotation(cfg, args.input, args.subtitles, args.output)
    return {
        "run_s": round(time.monotonic() - start, 1),
        "counts": manifest["counts"],
        "this_run": manifest["this_run"],
        "audio_requests": len([c for c in fake.calls if c["body"].get("model") == "slow-audio"]),
    }


def autoscale(args) -> dict:
    port = free_port()
    gcs = f"{ray._private.services.get_node_ip_address()}:{port}"
    config = autoscaling_config(gcs, {"CPU": 2}, args.max_workers, args.idle_minutes)
    cluster = Cluster(
        initialize_head=True, head_node_args=head_args(autoscaling_config=config, gcs_server_port=port)
    )
    try:
        ray.init(address=cluster.address)
        head = cluster.head_node.node_id
        report = {"workers_at_start": len(alive_workers(head))}
        watcher = Watcher(cluster)
        watcher.start()
        with fake_openai_server(SlowAudio()) as fake:
            report |= annotate(cluster, fake, args, audio_stage={"max_actors": args.max_actors})
        ended = time.monotonic()
        watcher.stop.set()
        watcher.join()
        while alive_workers(head) and time.monotonic() - ended < args.scale_down_timeout:
            time.sleep(0.5)
        report |= {
            "max_audio_actors_alive": watcher.max_alive,
            "workers_seen": len(watcher.workers_seen),
            "workers_left": len(alive_workers(head)),
            "scale_down_s": round(time.monotonic() - ended, 1),
        }
        return report
    finally:
        ray.shutdown()
        cluster.shutdown()


def node_loss(args) -> dict:
    cluster = Cluster(initialize_head=True, head_node_args=head_args(_system_config=FAST_HEALTH))
    try:
        workers = {
            n.node_id: n
            for n in (
                cluster.add_node(
                    num_cpus=WORKER["CPU"], resources={SLOT: 1}, object_store_memory=OBJECT_STORE
                )
                for _ in range(2)
            )
        }
        ray.init(address=cluster.address)
        report: dict = {"workers": sorted(workers), "removed": None}
        with fake_openai_server(SlowAudio()) as fake:
            start = time.monotonic()

            def remove_busy_node(alive: list[dict]) -> None:
                served = len([c for c in fake.calls if c["body"].get("model") == "slow-audio"])
                if report["removed"] is None and alive and served >= args.remove_after:
                    victim = alive[0]["node"]
                    at = round(time.monotonic() - start, 1)
                    report["removed"] = {"node": victim, "at_s": at, "audio_requests_before": served}
                    cluster.remove_node(workers[victim], allow_graceful=False)

            watcher = Watcher(cluster, on_poll=remove_busy_node)
            watcher.start()
            report |= annotate(cluster, fake, args, {"actors": 1}, isolate_crashes=args.isolate)
            watcher.stop.set()
            watcher.join()
        return report
    finally:
        ray.shutdown()
        cluster.shutdown()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("scenario", choices=["autoscale", "node_loss"])
    p.add_argument("--input", required=True)
    p.add_argument("--subtitles", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--report", required=True)
    p.add_argument("--delay", type=float, default=0.5, help="seconds per slow-audio request")
    p.add_argument("--max-workers", type=int, default=3)
    p.add_argument("--max-actors", type=int, default=0, help="audio stage max_actors (0: unbounded)")
    p.add_argument("--idle-minutes", type=float, default=0.1)
    p.add_argument("--scale-down-timeout", type=float, default=90)
    p.add_argument("--remove-after", type=int, default=4, help="audio requests served before the removal")
    p.add_argument("--isolate", action="store_true", help="isolate_crashes (re-run lost rows one by one)")
    args = p.parse_args()
    SlowAudio.delay = args.delay
    t0 = time.monotonic()
    report = autoscale(args) if args.scenario == "autoscale" else node_loss(args)
    report["total_s"] = round(time.monotonic() - t0, 1)
    Path(args.report).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
