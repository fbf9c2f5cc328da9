"""Decode + check + write: the Ray Data pipeline against a plain sequential loop, and its memory.

Prints one JSON object. Throughput: the same clips (420 generated MER-style clips by default),
the same stage code (``DecodeStage``, ``CheckStage``, ``WriteStage``) and the same output format,
once as a sequential loop in this process and once through ``build_pipeline`` on a fresh local Ray
(``--cpus`` CPUs), alternating ``--repeats`` times. Not timed: starting Ray, and Ray Data's
cluster-wide service actors (stats, actor-location tracker, autoscaling coordinator: detached, made
once per cluster by its first Ray Data job; here by a one-row job from another driver, so this job's
own workers stay cold). Timed: everything the job does, its workers' imports and stage set-up included.
``first_output_s`` shows how much of a pipeline run is start-up (actors spawning, importing).
Memory: peak PSS of the whole process tree (driver + every Ray process) during a pipeline run
over 1x and ``--scale``x the clips (the extra clips are hard links under new names).

    python benchmarks/annotate_decode.py [--n 420] [--scale 10] [--repeats 3] [--cpus 2]

Targets on a 2-core machine: pipeline >= 0.9x the loop; peak memory growth < 25 % from 1x to 10x.
A job pays a fixed start-up (on 2 cores 3-4 s: its worker processes start and import Ray Data,
pandas and the decoders) that the in-process loop does not; ``pipeline_first_output_s`` shows it and
``pipeline_after_first_output_clips_per_s`` the rate after it. Hence the default of 420 clips: at
210 the start-up is a third of the run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def bench_config():
    from pipelines.config import AnnotateConfig

    return AnnotateConfig(stop_after="check")


def clip_rows(clips_dir: Path, subtitles: Path) -> list[dict]:
    from pipelines.inputs import build_listing

    return build_listing(str(clips_dir), str(subtitles), bench_config()).rows


def ensure_clips(cache: Path, n: int) -> tuple[Path, Path]:
    """``n`` generated clips (cached between runs) and their subtitles."""
    from pipelines.samples import generate_samples

    s = generate_samples(cache / f"clips_{n}", n=n, seed=1, broken=False)
    return s.root / "clips", s.subtitles


def scaled_copy(clips_dir: Path, subtitles: Path, scale: int, dest: Path) -> tuple[Path, Path]:
    """``scale`` x the clips as hard links named ``<stem>_r<k>``, with a subtitle row each."""
    out = dest / "clips"
    out.mkdir(parents=True, exist_ok=True)
    lines = ["name,chinese,english"]
    for clip in sorted(clips_dir.glob("*.mp4")):
        for k in range(scale):
            target = out / f"{clip.stem}_r{k}.mp4"
            if not target.exists():
                os.link(clip, target)
            lines.append(f"{target.stem},字幕,subtitle")
    (dest / "subtitles.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out, dest / "subtitles.csv"


def run_loop(rows: list[dict], out: str) -> float:
    """The same stages in a plain loop, batch by batch like the pipeline; returns clips/s."""
    import importlib

    from core.stage import StageChain, rows_to_table
    from pipelines.sink import writer
    from pipelines.stages import CheckStage, DecodeStage

    for lib in ("av", "decord", "PIL.Image", "soundfile"):  # imported before the clock, like ray.data
        importlib.import_module(lib)

    cfg = bench_config()
    chain = StageChain([(DecodeStage, {}), (CheckStage, {}), writer(cfg, out)], cfg)
    batch = cfg.stages.decode.batch_size
    start = time.perf_counter()
    done = 0
    for i in range(0, len(rows), batch):
        done += chain(rows_to_table(rows[i : i + batch])).num_rows
    assert done == len(rows), (done, len(rows))
    return len(rows) / (time.perf_counter() - start)


class PeakMemory:
    """Samples the PSS of this process and all its descendants (the local Ray) every ``every`` s."""

    def __init__(self, every: float = 0.5) -> None:
        import psutil

        self.proc, self.every = psutil.Process(), every
        self.peak_total = self.peak_driver = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        import psutil

        total = 0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                pss = p.memory_full_info().pss
            except (psutil.Error, OSError):
                continue
            total += pss
            if p.pid == self.proc.pid:
                self.peak_driver = max(self.peak_driver, pss)
        self.peak_total = max(self.peak_total, total)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._sample()

    def __enter__(self) -> PeakMemory:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def pipeline_worker(args: argparse.Namespace) -> None:
    """One pipeline run on a fresh local Ray; writes {clips_per_s, peaks} to args.result."""
    import ray
    import ray.data  # noqa: F401 - imported before the clock, like the loop's libraries

    from pipelines.annotate import build_pipeline

    rows = clip_rows(Path(args.clips), Path(args.subtitles))
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    warm_cluster_services(ray.get_runtime_context().gcs_address)
    done, first, first_rows = 0, None, 0
    try:
        with PeakMemory() as mem:
            start = time.perf_counter()
            for batch in build_pipeline(bench_config(), rows, args.out).iter_batches(batch_size=None):
                if first is None:
                    first, first_rows = time.perf_counter(), len(batch["name"])
                done += len(batch["name"])
            seconds = time.perf_counter() - start
    finally:
        ray.shutdown()
    assert done == len(rows), (done, len(rows))
    result = {
        "clips": len(rows),
        "clips_per_s": len(rows) / seconds,
        "seconds": seconds,
        "first_output_s": first - start,
        "peak_pss_mb": mem.peak_total / 2**20,
        "after_first_clips_per_s": (len(rows) - first_rows) / max(start + seconds - first, 1e-9),
        "driver_peak_pss_mb": mem.peak_driver / 2**20,
    }
    Path(args.result).write_text(json.dumps(result))


def warm_cluster_services(address: str) -> None:
    """Run a one-row Ray Data job from another driver: creates Ray Data's detached service actors,
    as any earlier job on a real cluster has, without warming this job's worker processes."""
    code = "import ray, ray.data; ray.init(address=%r, log_to_driver=False); ray.data.range(1).materialize()"
    subprocess.run(
        [sys.executable, "-c", code % address],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def run_pipeline(clips: Path, subtitles: Path, cpus: int, tmp: Path) -> dict:
    out, result = tempfile.mkdtemp(dir=tmp), tmp / "result.json"
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        "--clips",
        str(clips),
        "--subtitles",
        str(subtitles),
        "--out",
        out,
        "--result",
        str(result),
        "--cpus",
        str(cpus),
    ]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shutil.rmtree(out, ignore_errors=True)
    return json.loads(result.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=420, help="clips to generate (cached under .cache/bench)")
    ap.add_argument("--scale", type=int, default=10, help="memory run: this many times the clips")
    ap.add_argument("--repeats", type=int, default=3, help="loop/pipeline pairs to run")
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="CPUs of the local Ray")
    ap.add_argument("--cache", default=str(ROOT / ".cache" / "bench"), help="where generated clips are kept")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for name in ("--clips", "--subtitles", "--out", "--result"):
        ap.add_argument(name, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return pipeline_worker(args)
    clips, subtitles = ensure_clips(Path(args.cache), args.n)
    rows = clip_rows(clips, subtitles)
    loop, pipe = [], []
    with tempfile.TemporaryDirectory(prefix="emer-bench-") as tmp:
        for _ in range(args.repeats):
            out = tempfile.mkdtemp(dir=tmp)
            loop.append(run_loop(rows, out))
            shutil.rmtree(out)
            pipe.append(run_pipeline(clips, subtitles, args.cpus, Path(tmp)))
        big = scaled_copy(clips, subtitles, args.scale, Path(tmp) / "scaled")
        mem10 = run_pipeline(*big, args.cpus, Path(tmp))
    mem1 = min(pipe, key=lambda r: r["peak_pss_mb"])
    loop_rate, pipe_rate = statistics.median(loop), statistics.median(r["clips_per_s"] for r in pipe)
    print(
        json.dumps(
            {
                "benchmark": "annotate decode + check + write",
                "clips": len(rows),
                "cpus": args.cpus,
                "ray_data_services_started_before_timing": True,
                "frames": bench_config().frames,
                "frame_size": bench_config().frame_size,
                "loop_clips_per_s": [round(x, 2) for x in loop],
                "pipeline_clips_per_s": [round(r["clips_per_s"], 2) for r in pipe],
                "pipeline_first_output_s": [round(r["first_output_s"], 2) for r in pipe],
                "pipeline_after_first_output_clips_per_s": [
                    round(r["after_first_clips_per_s"], 2) for r in pipe
                ],
                "ratio_pipeline_vs_loop": round(pipe_rate / loop_rate, 3),
                "target_ratio": 0.9,
                "memory_1x": {k: round(v, 1) for k, v in mem1.items()},
                "memory_scaled": {"scale": args.scale, **{k: round(v, 1) for k, v in mem10.items()}},
                "peak_memory_growth": round(mem10["peak_pss_mb"] / mem1["peak_pss_mb"] - 1, 3),
                "target_growth": 0.25,
                "load_average_1m": round(os.getloadavg()[0], 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
