"""What the decode timeout costs: ``DecodeStage`` in-process (``decode_timeout_s=0``) against the
child process that a timeout needs (``decode_timeout_s=120``), on the demo's generated sample clips.

Prints one JSON object: per-clip milliseconds of each way (median of ``--repeats`` alternating runs
over the clips), the difference per clip, and the child's one-off start-up (spawn + imports) per actor.

    python benchmarks/decode_timeout.py [--n 8] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def per_clip_ms(stage, rows: list[dict]) -> float:
    batch = [dict(r) for r in rows]
    start = time.perf_counter()
    stage.run_rows(batch)
    elapsed = time.perf_counter() - start
    bad = [r["name"] for r in batch if r["outcome"] != "ok"]
    if bad:
        raise SystemExit(f"clips failed to decode: {bad}")
    return 1000 * elapsed / len(batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8, help="sample clips")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from pipelines.config import AnnotateConfig
    from pipelines.samples import generate_samples
    from pipelines.stages import DecodeStage

    with tempfile.TemporaryDirectory() as tmp:
        s = generate_samples(tmp, n=args.n, seed=0, broken=False)
        rows = [{"name": n, "clip": str(s.root / "clips" / f"{n}.mp4")} for n in s.clips]
        inproc = DecodeStage(AnnotateConfig(decode_timeout_s=0))
        child = DecodeStage(AnnotateConfig(decode_timeout_s=120))
        start = time.perf_counter()
        child.runner.run(len, "warm-up")  # starts the child (spawn, imports) once, as an actor does
        startup_s = time.perf_counter() - start
        per_clip_ms(inproc, rows)  # warm both: first decodes load codecs
        per_clip_ms(child, rows)
        a, b = [], []
        for _ in range(args.repeats):
            a.append(per_clip_ms(inproc, rows))
            b.append(per_clip_ms(child, rows))
        child.runner.close()
    ia, ib = statistics.median(a), statistics.median(b)
    print(
        json.dumps(
            {
                "clips": len(rows),
                "in_process_ms_per_clip": round(ia, 2),
                "child_process_ms_per_clip": round(ib, 2),
                "overhead_ms_per_clip": round(ib - ia, 2),
                "overhead_ratio": round(ib / ia, 3),
                "child_startup_s_per_actor": round(startup_s, 2),
                "in_process_runs_ms": [round(x, 1) for x in a],
                "child_runs_ms": [round(x, 1) for x in b],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
