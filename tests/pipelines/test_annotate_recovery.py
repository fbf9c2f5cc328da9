"""Reliability: a decode actor killed by a signal does not hang the job; a run whose driver is killed
halfway resumes into exactly the rows of an uninterrupted run, each sample once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from annotate_helpers import all_inputs, check_every_name_once, read_rows

from core.config import dump_yaml
from pipelines.annotate import run_annotation
from pipelines.config import AnnotateConfig


def linked_input(sample_clips, dest: Path, extra: dict[str, str]) -> str:
    """The sample clips as hard links in ``dest``, plus ``extra`` {new name: existing clip name}."""
    dest.mkdir(parents=True)
    for clip in (sample_clips.root / "clips").glob("*.mp4"):
        os.link(clip, dest / clip.name)
    for new, old in extra.items():
        os.link(sample_clips.root / "clips" / f"{old}.mp4", dest / f"{new}.mp4")
    return str(dest)


@pytest.mark.timeout(300)
def test_killed_decode_actor_does_not_hang_the_job(s3, ray_local, sample_clips, tmp_path, monkeypatch):
    victim = sample_clips.clips[2]
    monkeypatch.setenv("EMER_DEBUG_CRASH_ON", victim)  # reaches the workers as a pass-through variable
    clips = linked_input(sample_clips, tmp_path / "clips", {"bad id!": sample_clips.clips[0]})
    cfg = AnnotateConfig.from_dict(
        {
            "stop_after": "check",
            "stages": {"decode": {"actors": 2, "batch_size": 4}},
        }
    )
    start = time.perf_counter()
    manifest = run_annotation(cfg, clips, str(sample_clips.subtitles), str(tmp_path / "out"))
    assert time.perf_counter() - start < 240
    samples, failures = check_every_name_once(str(tmp_path / "out"), all_inputs(sample_clips) + ["bad id!"])
    assert failures[victim]["stage"] == "crash" and "worker process died" in failures[victim]["reason"]
    assert failures["bad id!"]["stage"] == "list" and "unsafe sample id" in failures["bad id!"]["reason"]
    assert set(samples) == set(sample_clips.clips) - {victim}  # its batch-mates were re-run alone
    assert manifest["this_run"]["lost_to_crashes"] == 1
    assert manifest["counts"] == {"inputs": 15, "ok": 7, "rejected": 3, "failed": 5, "pending": 0}


KILLED_DRIVER = textwrap.dedent("""
    import sys, yaml, ray
    from pipelines.annotate import run_annotation
    from pipelines.config import AnnotateConfig
    cfg = AnnotateConfig.from_dict(yaml.safe_load(open(sys.argv[1])))
    ray.init(address=sys.argv[2], log_to_driver=False)
    run_annotation(cfg, *sys.argv[3:6])
""")


def markers(out: Path) -> int:
    return len(list((out / "_markers").glob("*.json"))) if (out / "_markers").exists() else 0


def wait_until_quiet(out: Path, quiet: float = 3.0, timeout: float = 60.0) -> None:
    """Wait until nothing under ``out`` changed for ``quiet`` s (the killed job's actors are gone)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        newest = max((p.stat().st_mtime for p in out.rglob("*")), default=0.0)
        if time.time() - newest >= quiet:
            return
        time.sleep(0.5)
    raise AssertionError(f"{out} still changing {timeout} s after the driver was killed")


@pytest.mark.timeout(300)
def test_resume_after_a_killed_run_gives_the_same_rows(s3, ray_local, sample_clips, tmp_path):
    import ray

    copies = {f"{name}_copy{k}": name for name in sample_clips.clips for k in range(4)}
    clips, subs = linked_input(sample_clips, tmp_path / "clips", copies), str(sample_clips.subtitles)
    names = all_inputs(sample_clips) + sorted(copies)
    cfg = AnnotateConfig.from_dict(
        {"stop_after": "check", "stages": {"decode": {"actors": 1, "batch_size": 2}}}
    )
    ref = tmp_path / "uninterrupted"
    run_annotation(cfg, clips, subs, str(ref))

    out = tmp_path / "resumed"
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(dump_yaml(cfg))
    address = ray.get_runtime_context().gcs_address
    cmd = [sys.executable, "-c", KILLED_DRIVER, str(cfg_file), address, clips, subs, str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 200
    while markers(out) < 5 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the driver finished before it could be killed halfway"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    wait_until_quiet(out)
    done_at_kill = markers(out)
    assert 0 < done_at_kill < len(names) // 2

    resumed = run_annotation(cfg, clips, subs, str(out))
    assert resumed["this_run"]["skipped_finished"] >= 2 * done_at_kill - 1  # two names a marker
    assert resumed["this_run"]["attempted"] + resumed["this_run"]["skipped_finished"] == len(names)
    check_every_name_once(str(out), names)
    for kind in ("samples", "failures"):
        got = sorted(read_rows(str(out), kind), key=lambda r: r["name"])
        want = sorted(read_rows(str(ref), kind), key=lambda r: r["name"])
        assert got == want  # frames, audio, metadata: the same rows, each once
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]  # no half-written file left behind


def test_crash_injection_is_not_a_config_key():
    """Before: ``annotate.debug_crash_on`` could be set from any config (a preset could kill workers).
    Now fault injection is the EMER_DEBUG_CRASH_ON variable of the crash tests only."""
    from core.config import ConfigError

    with pytest.raises(ConfigError, match="debug_crash_on: unknown key"):
        AnnotateConfig.from_dict({"debug_crash_on": ["sample_1"]})
