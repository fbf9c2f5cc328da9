"""Scoring speed of the OV metric on a synthetic EMER-Coarse-sized set (115,595 samples), one core.

Prints one JSON object: seconds and samples/s of ``exact``, ``groups`` and ``wheel`` scoring
(labels already parsed), of list-literal parsing, and of an end-to-end ``exact`` run from CSV files.
Target: the whole set in under 10 s for ``exact`` and ``wheel``.

    .venv/bin/python benchmarks/evaluate.py [--samples 115595] [--wheel-dir ../shared/data/emotion-wheel]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def synthetic(n: int, vocab: list[str], seed: int = 0):
    rng = random.Random(seed)
    oov = [f"feeling{i}" for i in range(300)]
    words = vocab + oov

    def labels(lo: int, hi: int) -> list[str]:
        return rng.sample(words, rng.randint(lo, hi))

    gt = [labels(1, 6) for _ in range(n)]
    pred = [labels(0, 5) for _ in range(n)]
    groups = []
    for g, p in zip(gt, pred):
        union = sorted(set(g) | set(p))
        rng.shuffle(union)
        cut = sorted(rng.sample(range(1, len(union)), min(len(union) - 1, 2))) if len(union) > 1 else []
        groups.append([union[a:b] for a, b in zip([0, *cut], [*cut, len(union)])])
    return gt, pred, groups


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=115_595, help="synthetic set size (EMER-Coarse: 115,595)")
    ap.add_argument(
        "--wheel-dir",
        default=str(ROOT.parent / "shared" / "data" / "emotion-wheel"),
        help="emotion-wheel folder (wheel_mapping.json)",
    )
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core

    from evaluation.grouping import encode_groups, encode_wheel
    from evaluation.ov import encode, score
    from evaluation.tables import parse_literal_list
    from evaluation.wheel import load_wheel

    load_s, wheel = timed(lambda: load_wheel(args.wheel_dir))
    vocab = sorted(wheel.format_mapping)
    gt, pred, groups = synthetic(args.samples, vocab)
    n = args.samples
    out: dict = {
        "samples": n,
        "labels_per_sample_gt": sum(map(len, gt)) / n,
        "labels_per_sample_pred": sum(map(len, pred)) / n,
        "cores": 1,
        "wheel_load_s": load_s,
    }

    exact_s, s = timed(lambda: score(encode(gt, pred)))
    out["exact"] = {"seconds": exact_s, "samples_per_s": n / exact_s, "avg": s.avg}
    groups_s, s = timed(lambda: score(encode_groups(gt, pred, groups)[0]))
    out["groups"] = {"seconds": groups_s, "samples_per_s": n / groups_s, "avg": s.avg}
    wheel_s, views = timed(lambda: {k: score(e) for k, e in encode_wheel(wheel, gt, pred).items()})
    out["wheel"] = {
        "seconds": wheel_s,
        "samples_per_s": n / wheel_s,
        "views": len(views),
        "level1_f": sum(v.f for k, v in views.items() if k.endswith("level1")) / 5,
    }

    texts = [repr(x) for x in gt + pred]
    parse_s, _ = timed(lambda: [parse_literal_list(t) for t in texts])
    out["parse_list_literals"] = {"seconds": parse_s, "strings_per_s": len(texts) / parse_s}

    from evaluation.config import EvaluateConfig
    from evaluation.scoring import load_ov_inputs, score_ov

    with tempfile.TemporaryDirectory() as tmp:
        for name, data in (("gt.csv", gt), ("pred.csv", pred)):
            with open(Path(tmp, name), "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["name", "openset"])
                w.writerows((f"sample_{i:08d}", repr(x)) for i, x in enumerate(data))
        cfg = EvaluateConfig(grouping="exact")
        e2e_s, (summary, _) = timed(
            lambda: score_ov(load_ov_inputs(f"{tmp}/gt.csv", f"{tmp}/pred.csv", cfg), cfg)
        )
    out["exact_from_csv"] = {"seconds": e2e_s, "samples_per_s": n / e2e_s, "avg": summary["avg"]}
    out["target_met"] = exact_s < 10 and wheel_s < 10
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
