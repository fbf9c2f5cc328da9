"""Scale-out: the annotation on a head + two worker nodes (``ray.cluster_utils.Cluster``) with the
custom resources of ``ray_cluster.yaml``; decode actors ask for ``decode``, model actors for ``llm``;
a worker node is removed mid-run and the job still finishes with every sample exactly once.

The cluster runs in a child process (``multinode_run.py``) with its own ``RAY_TMPDIR``, so it never
meets the session's ``ray_local`` and never touches another Ray on this machine.

Two scenarios: the default one runs decode + checks + write (``stop_after=check``) over 3 copies of
the sample set (~1 min on 2 cores); ``EMER_TEST_FULL_MULTINODE=1`` adds the three tiny-model stages on
``llm`` resources (2-4 min on a loaded 2-core box, too slow for every run).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from clip_copies import copies, original
from cluster_helpers import subprocess_env, tiny_llm_overrides

from core import storage

HERE = Path(__file__).resolve().parent
pytestmark = [pytest.mark.slow, pytest.mark.timeout(480)]


def _names(output: str, folder: str) -> list[str]:
    files = storage.list_files(storage.join(output, folder), suffixes=[".parquet"])
    return [n for f in files for n in storage.read_table(f, columns=["name"]).column("name").to_pylist()]


def _copies(sample_clips, dest: Path, n: int) -> tuple[str, str, set[str], set[str]]:
    """``n`` copies of the sample set: clips, subtitles csv, the good names, the broken names."""
    clips, subtitles, names = copies(sample_clips, dest, n)
    good = {x for x in names if original(x) in sample_clips.clips}
    return clips, subtitles, good, {x for x in names if original(x) in sample_clips.broken}


def _run(tmp_path: Path, args: list[str]) -> dict:
    report_path, log_path = tmp_path / "report.json", tmp_path / "annotate.log"
    ray_tmp = tempfile.mkdtemp(prefix="emmn", dir="/tmp")  # short: unix socket paths < 108 chars
    cmd = [
        sys.executable,
        str(HERE / "multinode_run.py"),
        "--report",
        str(report_path),
        "--log",
        str(log_path),
        "--timeout",
        "360",
        "--",
        *args,
    ]
    try:
        proc = subprocess.run(
            cmd, env=subprocess_env(RAY_TMPDIR=ray_tmp), capture_output=True, text=True, timeout=450
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    log = log_path.read_text() if log_path.exists() else ""
    assert proc.returncode == 0 and report_path.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(report_path.read_text())
    print(json.dumps(report, indent=1))
    assert report["returncode"] == 0 and not report.get("timed_out"), (report, log[-5000:])
    return report


def _check_recovery_and_output(report: dict, output: str, good: set[str], broken: set[str]) -> None:
    workers = set(report["nodes"]["workers"])
    placed = [p.split(":") for p in report["placement"]]
    assert placed and {node for node, _ in placed} <= workers  # stage actors only on the workers
    removed = report["removed"]
    assert removed and removed["node"] in workers and removed["actors_on_it"] >= 1, report
    assert removed["at_s"] < report["run_s"]
    assert report["restarted_actors"] >= 1, report  # its actors came back on the other worker
    samples, failures = Counter(_names(output, "samples")), Counter(_names(output, "failures"))
    assert set(samples) == good and set(failures) == broken, (samples, failures)
    assert set(samples.values()) == {1} and set(failures.values()) == {1}  # each exactly once
    manifest = json.loads(storage.read_text(storage.join(output, "manifest.json")))
    assert manifest["counts"]["ok"] == len(good) and manifest["counts"]["pending"] == 0


def test_annotation_survives_a_lost_worker_node(sample_clips, tmp_path):
    clips, subtitles, good, broken = _copies(sample_clips, tmp_path / "input", n=3)
    output = str(tmp_path / "out")
    report = _run(
        tmp_path,
        [
            "--input",
            clips,
            "--subtitles",
            subtitles,
            "--output",
            output,
            "--annotate.stop_after=check",
            "--annotate.stages.decode.actors=2",
            "--annotate.stages.decode.batch_size=2",
            "--annotate.stages.decode.resources={decode: 1}",
        ],
    )
    assert {p.split(":")[1] for p in report["placement"]} == {"decode"}
    _check_recovery_and_output(report, output, good, broken)


@pytest.mark.skipif(
    os.environ.get("EMER_TEST_FULL_MULTINODE") != "1",
    reason="set EMER_TEST_FULL_MULTINODE=1 (tiny-model stages on 2 nodes: 2-4 min, 2 cores)",
)
def test_full_annotation_with_models_on_llm_nodes_survives_a_lost_worker(sample_clips, tiny_llms, tmp_path):
    output = str(tmp_path / "out")
    report = _run(
        tmp_path,
        [
            "--input",
            str(sample_clips.root / "clips"),
            "--subtitles",
            str(sample_clips.subtitles),
            "--output",
            output,
            "--annotate.stages.decode.resources={decode: 1}",
            *tiny_llm_overrides(tiny_llms, resources="{llm: 1}"),
        ],
    )
    assert {p.split(":")[1] for p in report["placement"]} == {"decode", "llm"}
    _check_recovery_and_output(report, output, set(sample_clips.clips), set(sample_clips.broken))
    table = storage.read_table(storage.join(output, "samples"), columns=["name", "audio_clue"])
    assert all(table.column("audio_clue").to_pylist())  # the model stages really ran
