"""Multi-node scenario run in its own process by ``test_multinode.py`` (never inside pytest's Ray).

Starts a ``ray.cluster_utils.Cluster`` — a head with no custom resources and two worker nodes that
carry both custom resources of ``ray_cluster.yaml`` (``decode`` of the CPU type, ``llm`` of the GPU
type), so either one can finish the job alone — with fast health checks, runs ``emer annotate
--address <cluster>`` with the stages asking for those resources, removes the worker holding the
most stage actors once decoding runs, waits for the command to end and writes a JSON
report: exit code, where each stage's actors were placed, what was removed and when. All Ray files
live under ``RAY_TMPDIR`` (set by the caller); the cluster is shut down by its handle.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import ray
from ray.cluster_utils import Cluster
from ray.core.generated import gcs_pb2

FAST_HEALTH = {
    "health_check_period_ms": 500,
    "health_check_timeout_ms": 500,
    "health_check_failure_threshold": 3,
    "metrics_report_interval_ms": 1000,
}
WORKER = {"decode": 2, "llm": 3}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def actors(cluster: Cluster) -> list[dict]:
    """Stage actors (Ray Data map workers): node id, state, restarts, required custom resources."""
    accessor = cluster.global_state._connect_and_get_accessor()
    out = []
    for raw in accessor.get_actor_table(None, None):
        a = gcs_pb2.ActorTableData.FromString(raw)
        if "MapWorker" not in a.class_name:
            continue
        out.append(
            {
                "node": a.address.node_id.hex(),
                "state": gcs_pb2.ActorTableData.ActorState.Name(a.state),
                "restarts": a.num_restarts,
                "resources": {k: v for k, v in a.required_resources.items() if k in ("decode", "llm")},
            }
        )
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--report", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--timeout", type=float, default=240)
    p.add_argument("annotate", nargs=argparse.REMAINDER, help="-- emer annotate arguments")
    args = p.parse_args()
    report: dict = {"removed": None}
    t0 = time.monotonic()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "include_dashboard": False,
            "_system_config": FAST_HEALTH,
            "dashboard_agent_listen_port": free_port(),
        },
    )  # the default 52365 may belong to another Ray
    try:
        workers = {n.node_id: n for n in (cluster.add_node(num_cpus=4, resources=WORKER) for _ in range(2))}
        report["nodes"] = {"head": cluster.head_node.node_id, "workers": sorted(workers)}
        report["cluster_start_s"] = round(time.monotonic() - t0, 1)
        cmd = [
            str(Path(sys.executable).parent / "emer"),
            "annotate",
            "--address",
            cluster.address,
            *[a for a in args.annotate if a != "--"],
        ]
        with open(args.log, "w") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
            start = time.monotonic()
            seen: set[str] = set()  # "node:resource" of every stage actor seen alive
            while proc.poll() is None and time.monotonic() - start < args.timeout:
                placed = [a for a in actors(cluster) if a["state"] == "ALIVE"]
                seen.update(f"{a['node']}:{k}" for a in placed for k in (a["resources"] or ["none"]))
                if report["removed"] is None and any(a["resources"].get("decode") for a in placed):
                    # decoding runs: remove the worker that holds the most stage actors
                    time.sleep(1.0)
                    placed = [a for a in actors(cluster) if a["state"] == "ALIVE"] or placed
                    victim = max(workers, key=lambda n: sum(a["node"] == n for a in placed))
                    on_victim = sum(a["node"] == victim for a in placed)
                    report["removed"] = {
                        "node": victim,
                        "actors_on_it": on_victim,
                        "at_s": round(time.monotonic() - start, 1),
                    }
                    cluster.remove_node(workers[victim], allow_graceful=False)
                time.sleep(0.5)
            if proc.poll() is None:
                proc.kill()
                report["timed_out"] = True
            report["returncode"] = proc.wait()
            report["placement"] = sorted(seen)
            report["restarted_actors"] = sum(a["restarts"] > 0 for a in actors(cluster))
            report["run_s"] = round(time.monotonic() - start, 1)
    finally:
        cluster.shutdown()
        ray.shutdown()
    Path(args.report).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
