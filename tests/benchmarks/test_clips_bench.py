"""Smoke test of ``benchmarks/clips.py`` on its smallest input (one SRT episode, two sampled frames
per segment): both paths run the real stages, give the same clips, and the JSON has its keys and a
positive ratio (no timing is asserted: the machine is shared); the loop ran in its own process."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "clips.py"
KEYS = {
    "loop_s",
    "ray_s",
    "ratio_loop_vs_ray",
    "loop_clips_per_s",
    "ray_clips_per_s",
    "clips",
    "segments",
    "same_clips",
    "step_seconds",
    "load_average_1m",
}


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_clips", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_clips_benchmark_compares_the_same_work_on_both_paths(ray_local, episodes, tmp_path):
    bench = load_bench()
    overrides = ["clips.faces.frames=2", "clips.transcribe=false"]
    cfg = bench.clips_config(overrides, tmp_path)
    videos = bench.source_videos(tmp_path, copies=1, only=["episode_srt"], written=episodes)
    assert [p.name for p in sorted(videos.iterdir())] == ["episode_srt_c0.mp4", "episode_srt_c0.srt"]
    out = bench.summary(cfg, bench.measure(cfg, overrides, videos, tmp_path), videos=1, cpus=2)
    assert KEYS <= set(out)
    assert out["clips"]["loop"] == out["clips"]["ray"] > 0 and out["same_clips"]
    assert out["segments"]["loop"] == out["segments"]["ray"] > out["clips"]["ray"]  # some removed
    assert out["ratio_loop_vs_ray"] > 0 and out["ray_clips_per_s"] > 0
    assert 0 < out["loop_inner_s"][0] < out["loop_s"][0]  # timed inside its process, and around it
    for side in ("loop", "ray"):
        steps = out["step_seconds"][side]
        assert steps["faces"] > 0 and steps["cut"] > 0 and steps["vad"] == steps["asr"] == 0  # SRT path
