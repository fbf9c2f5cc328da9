"""The training part of ``emer demo``: stage 1, stage 2 from stage 1, then ``emer infer`` on the test split.

The demo has no human-checked EMER-Fine set, so its stand-in is made from the demo's own EMER-Coarse
descriptions (``name, english``), clearly named ``fine-standin.csv``; the split, the training and the
inference then run exactly as on the real EMER-Fine. Needs a connected Ray.
"""

from __future__ import annotations

import logging

import pyarrow as pa

from affect_model.train.config import Scorer, TrainRun
from core import storage
from core.schema import DESCRIPTION_EN

log = logging.getLogger(__name__)


def write_fine_standin(coarse_uri: str, out_uri: str) -> str:
    """``name, english`` from an EMER-Coarse table's ``description_en`` (rows with a description)."""
    table = storage.read_table(coarse_uri, columns=["name", DESCRIPTION_EN]).to_pylist()
    rows = [r for r in table if (r[DESCRIPTION_EN] or "").strip()]
    if len(rows) < 3:
        raise ValueError(f"{coarse_uri}: {len(rows)} described samples; the demo needs at least 3")
    storage.write_table(
        pa.table({"name": [r["name"] for r in rows], "english": [r[DESCRIPTION_EN] for r in rows]}), out_uri
    )
    return out_uri


def run_demo_training(
    run_cfg: TrainRun,
    coarse_uri: str,
    out_dir: str,
    scorer: Scorer | None = None,
    stage2_max_steps: int = 0,
) -> dict[str, str]:
    """Stage 1 on ``coarse_uri``, stage 2 on the stand-in EMER-Fine split, inference on its test split.
    Step counts, batch size etc. come from ``run_cfg.train`` (configs/demo.yaml keeps them tiny);
    ``stage2_max_steps`` > 0 caps stage 2 alone (``demo.stage2_max_steps``: the demo's stage 2 only
    shows the EMER-Fine loop); ``scorer`` scores stage 2's per-epoch evaluation (see ``run_training``)."""
    from affect_model.jobs.infer import run_inference  # heavy: torch, imported on use
    from affect_model.train.loop import run_training  # heavy: torch, imported on use

    runs = storage.join(out_dir, "train")
    fine = write_fine_standin(coarse_uri, storage.join(out_dir, "fine-standin.csv"))
    base = run_cfg.train.replace(coarse_uri=coarse_uri, fine_uri=fine, storage_path=runs, init_from="")
    stage1 = run_training(run_cfg.replace(train=base.replace(stage=1)))
    steps2 = stage2_max_steps or base.max_steps
    stage2 = run_training(
        run_cfg.replace(train=base.replace(stage=2, init_from=stage1["run_uri"], max_steps=steps2)),
        scorer=scorer,
    )
    infer_cfg = base.infer.replace(
        checkpoint=stage2["run_uri"], split="test", output_uri=storage.join(out_dir, "infer", "test.parquet")
    )
    infer = run_inference(run_cfg.replace(train=base.replace(stage=2, infer=infer_cfg)))
    return {
        "stage 1 run": stage1["run_uri"],
        "stage 2 run": stage2["run_uri"],
        "stage 2 curves": storage.join(stage2["run_uri"], "curves"),
        "predictions (test)": infer["output"],
        "references (test)": infer["output"][: -len(".parquet")] + ".references.parquet",
    }
