"""``emer demo``: the whole method end to end on the embedded default (local Ray, tiny models).

Steps: sample clips -> tiny random-weight models of the real architectures -> annotation
(EMER-Coarse) -> AffectGPT stage 1 and stage 2 -> inference on the test split -> evaluation report.
Everything is written under ``--out``; the demo ends by printing where every output went. Tiny
models produce gibberish text: the demo shows the plumbing at full fidelity, not model quality.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from affect_model.jobs.demo import run_demo_training
from affect_model.model.config import debug_config
from core import storage
from core.llm import LLMRequest, create_backend
from core.llm.labels import parse_ov_labels
from core.llm.prompts import render
from core.runtime import init_ray
from core.schema import DESCRIPTION_EN, OV_LABELS
from emer.runconfig import CONFIG_DIR, load_run_config, save_resolved
from evaluation.runs import epoch_scorer, report_file
from pipelines.annotate import run_annotation
from pipelines.annotate import with_tiny_models as tiny_llms
from pipelines.samples import generate_samples

log = logging.getLogger(__name__)


def run_demo(args: argparse.Namespace) -> int:
    out = str(Path(args.out).absolute())
    cfg = load_run_config(args.config or str(CONFIG_DIR / "demo.yaml"), args.overrides)
    if args.address:
        cfg = cfg.replace(ray=cfg.ray.replace(address=args.address))
    t0 = time.perf_counter()
    outputs: dict[str, str] = {}

    samples = generate_samples(Path(out) / "samples", n=args.clips, seed=args.seed)
    outputs["sample clips"] = str(samples.root / "clips")
    outputs["subtitles"] = str(samples.subtitles)
    _step("samples", t0)

    cfg = with_tiny_models(cfg, Path(out) / "models")
    outputs["config"] = save_resolved(cfg, out)
    init_ray(cfg.ray)

    coarse = storage.join(out, "emer-coarse")
    manifest = run_annotation(
        cfg.annotate, outputs["sample clips"], outputs["subtitles"], coarse, resolved=cfg
    )
    outputs["EMER-Coarse samples"] = storage.join(coarse, "samples")
    outputs["EMER-Coarse failures"] = storage.join(coarse, "failures")
    outputs["EMER-Coarse card"] = storage.join(coarse, "README.md")
    log.info("demo: annotation counts %s", manifest.get("counts"))
    _step("annotate", t0)

    trained = run_demo_training(cfg, outputs["EMER-Coarse samples"], out, scorer=epoch_scorer(cfg.evaluate))
    outputs.update(trained)
    _step("train + infer", t0)

    outputs["evaluation report"] = evaluate_demo(cfg, trained, coarse, storage.join(out, "evaluation"))
    _step("evaluate", t0)

    print(f"\nemer demo finished in {time.perf_counter() - t0:.1f} s. Outputs:")
    for what, where in outputs.items():
        print(f"  {what:<22} {where}")
    return 0


def _step(name: str, t0: float) -> None:
    print(f"[demo] {name} done at {time.perf_counter() - t0:.1f} s", flush=True)


def with_tiny_models(cfg: Any, root: Path) -> Any:
    """Point every model of ``cfg`` at tiny random-weight checkpoints built (once) under ``root``."""

    annotate = tiny_llms(cfg.annotate, str(root), max_new_tokens=cfg.annotate.text.max_new_tokens)
    return cfg.replace(annotate=annotate, model=debug_config(root / "affectgpt"))


def evaluate_demo(cfg: Any, trained: dict[str, str], coarse: str, out_dir: str) -> str:
    """Score the test-split predictions: OV labels extracted with the (tiny) text LLM, the annotation's
    labels as ground truth, and BLEU/METEOR/ROUGE-L against the reference descriptions."""
    import pyarrow as pa

    preds = storage.read_table(trained["predictions (test)"]).to_pylist()
    refs = {r["name"]: r for r in storage.read_table(storage.join(coarse, "samples")).to_pylist()}
    backend = create_backend(cfg.annotate.text, "text")
    try:
        answers = backend.generate([LLMRequest(render("ov_extract", clues=p["description"])) for p in preds])
    finally:
        backend.close()
    pred_rows = {
        "name": [p["name"] for p in preds],
        "description": [p["description"] for p in preds],
        "openset": [str(parse_ov_labels(a.text or "")) for a in answers],
    }
    gt_rows = {
        "name": [p["name"] for p in preds],
        "description": [refs[p["name"]][DESCRIPTION_EN] for p in preds],
        "openset": [str(list(refs[p["name"]][OV_LABELS] or [])) for p in preds],
    }
    pred_uri, gt_uri = storage.join(out_dir, "predictions.csv"), storage.join(out_dir, "ground-truth.csv")
    storage.write_table(pa.table(pred_rows), pred_uri)
    storage.write_table(pa.table(gt_rows), gt_uri)
    result = report_file(gt_uri, pred_uri, cfg.evaluate.replace(grouping="exact"), out_dir)
    return result["report"]
