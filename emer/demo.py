"""``emer demo``: the whole method end to end on the embedded default (configs/demo.yaml), offline.

Phases: the models cache (``emer models prepare``) -> sample clips with a reference (``name,
openset``), broken inputs and two long episodes -> the clips job (``emer clips``) cutting the episodes
into clips, with what each filter removed (``emer.demo_clips``) -> annotation of the sample clips and
the episode clips into EMER-Coarse (text roles on SmolLM2-135M-Instruct, audio/video clues measured)
-> AffectGPT stage 1 and stage 2 (``demo.stage2_max_steps``) with SmolLM2 as the frozen LLM ->
inference on the test split -> evaluation of the annotation's OV labels and of the trained model's
descriptions against the reference (emotion-wheel grouping; the episode clips have no reference,
so they are not scored). One line per phase; a final table of outputs. A finished demo writes
``summary.json`` last: a rerun with the same config prints that summary again without starting Ray.
The numbers are a smoke figure of a 135 M model on a few clips.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from affect_model.jobs.demo import run_demo_training
from affect_model.train.integrity import ensure_key_file
from core import storage
from core.config import dump_yaml
from core.runtime import init_ray
from emer import models
from emer.commands import flags
from emer.demo_clips import NO_ESPEAK, annotation_input, run_clips_phase, write_demo_episodes
from emer.demo_eval import EvaluationLLM, evaluate_demo, loss_curve
from emer.runconfig import CONFIG_DIR, require_models, save_resolved
from pipelines.annotate import check_outcome, run_annotation
from pipelines.samples import generate_samples

log = logging.getLogger(__name__)
SUMMARY = "summary.json"
DEMO_KEY_FILE = "checkpoint.key"  # under <out>/.state: the demo's checkpoint key (never in <out>/train)


def run_demo(args: argparse.Namespace) -> int:
    out = str(Path(args.out).absolute())
    t0 = time.perf_counter()
    prepared = models.prepare()
    cfg = demo_config(args)
    digest = demo_digest(cfg, args)
    done = _finished(out, digest)
    if done is not None:
        print(f"[demo] finished before (config {digest}); {SUMMARY} says:", flush=True)
        print_summary(done)
        return 0
    require_models(cfg, "clips", "annotate", "model", "evaluate")
    cfg = with_checkpoint_key(cfg, out)
    phases: list[dict[str, Any]] = []
    _phase(phases, "models", t0, f"{len(prepared['models'])} models in {prepared['dir']}")

    samples = generate_samples(Path(out) / "samples", n=args.clips, seed=args.seed)
    episodes = write_demo_episodes(samples.root / "episodes", seed=args.seed)
    outputs = {
        "sample clips": str(samples.root / "clips"),
        "subtitles": str(samples.subtitles),
        "reference": str(samples.reference),
        "episodes": str(samples.root / "episodes"),
    }
    what = f"{len(samples.clips)} clips, {len(samples.broken)} broken inputs, {len(episodes)} episodes"
    _phase(phases, "samples", t0, what)

    outputs["config"] = save_resolved(cfg, out)
    init_ray(cfg.ray)
    inputs, cut = [(outputs["sample clips"], outputs["subtitles"])], set()
    if episodes:
        clips = run_clips_phase(cfg, outputs["episodes"], storage.join(out, "clips"))
        outputs.update(clips["outputs"])
        inputs.append((clips["outputs"]["clips"], clips["subtitles"]))
        cut = set(clips["names"])
    _phase(phases, "clips", t0, clips["line"] if episodes else NO_ESPEAK)

    clips_dir, subtitles = annotation_input(storage.join(out, "annotate-input"), inputs)
    outputs["annotation input"] = clips_dir
    coarse = storage.join(out, "emer-coarse")
    manifest = run_annotation(cfg.annotate, clips_dir, subtitles, coarse, resolved=cfg)
    check_outcome(cfg.annotate, manifest)
    outputs["EMER-Coarse samples"] = storage.join(coarse, "samples")
    outputs["EMER-Coarse card"] = storage.join(coarse, "README.md")
    _phase(phases, "annotate", t0, annotate_line(manifest["counts"], outputs["EMER-Coarse samples"], cut))

    llm = EvaluationLLM(cfg.evaluate.llm)  # loads while the demo trains (the driver only waits then)
    trained = run_demo_training(
        cfg, outputs["EMER-Coarse samples"], out, stage2_max_steps=cfg.demo.stage2_max_steps
    )
    outputs.update(trained)
    curve = loss_curve(trained["stage 1 run"])
    _phase(phases, "train", t0, f"stage 1 loss {_curve_text(curve)}")

    scores = evaluate_demo(cfg, samples.reference, coarse, trained, storage.join(out, "evaluation"), llm)
    outputs["evaluation report"] = scores["report"]
    _phase(phases, "evaluate", t0, scores["line"])

    summary = {
        "config_digest": digest,
        "seconds": round(time.perf_counter() - t0, 1),
        "phases": phases,
        "stage1_loss": curve,
        "scores": scores["scores"],
        "outputs": outputs,
    }
    storage.write_text(storage.join(out, SUMMARY), json.dumps(summary, indent=2) + "\n")
    print_summary(summary)
    return 0


def annotate_line(counts: dict[str, int], coarse_samples: str, episode_clips: set[str]) -> str:
    """The annotate phase's line, saying how many samples are clips cut from the episodes."""
    names = storage.read_table(coarse_samples, columns=["name"]).column("name").to_pylist()
    cut = sum(1 for n in names if n in episode_clips)
    c = counts
    return f"{c['ok']} samples ({cut} cut from the episodes), {c['rejected']} rejected, {c['failed']} failed"


def demo_config(args: argparse.Namespace) -> Any:
    """The run config of this demo: the preset (or --config), overrides, --address, quiet Ray."""
    quiet = getattr(args, "log_level", None) is None  # one line per phase; --log-level INFO shows all
    ray = ["ray.progress_bars=false", f"ray.worker_logs={str(not quiet).lower()}"]
    return flags.load(args, extra=ray, default=[str(CONFIG_DIR / "demo.yaml")])


def with_checkpoint_key(cfg: Any, out: str) -> Any:
    """The demo trains offline out of the box: unless a key of the user's is set (the variable
    ``train.checkpoint_key_env`` names, or ``train.checkpoint_key_file``), checkpoints are sealed with
    a random key made once in ``<out>/.state/checkpoint.key``, outside the checkpoints (``<out>/train``),
    and reused by a rerun that resumes."""
    train = cfg.train
    path = os.path.join(out, ".state", DEMO_KEY_FILE)
    if train.checkpoint_key_file or (os.environ.get(train.checkpoint_key_env) and not os.path.exists(path)):
        return cfg
    return cfg.replace(train=train.replace(checkpoint_key_file=ensure_key_file(path)))


def demo_digest(cfg: Any, args: argparse.Namespace) -> str:
    """What decides the demo's outputs (config, clips, seed), hashed: a finished demo is reused only
    for the same digest."""
    return hashlib.sha256(f"{dump_yaml(cfg)}{args.clips}:{args.seed}".encode()).hexdigest()[:16]


def _finished(out: str, digest: str) -> dict | None:
    uri = storage.join(out, SUMMARY)
    if not storage.exists(uri):
        return None
    summary = json.loads(storage.read_text(uri))
    return summary if summary.get("config_digest") == digest else None


def _phase(phases: list[dict[str, Any]], name: str, t0: float, what: str) -> None:
    at = round(time.perf_counter() - t0, 1)
    took = round(at - (phases[-1]["at_s"] if phases else 0.0), 1)
    phases.append({"phase": name, "what": what, "seconds": took, "at_s": at})
    print(f"[demo] {name:<9} {what} ({took:.1f} s)", flush=True)


def _curve_text(curve: list[float]) -> str:
    if not curve:
        return "(no steps logged)"
    shown = curve if len(curve) <= 8 else [*curve[:4], *curve[-4:]]
    text = " ".join(f"{v:.2f}" for v in shown)
    return f"{curve[0]:.3f} -> {curve[-1]:.3f} over {len(curve)} steps [{text}]"


def print_summary(summary: dict) -> None:
    """The demo's closing table: time per phase, the scores and where every output went."""
    print(f"\nemer demo finished in {summary['seconds']:.1f} s", flush=True)
    for p in summary["phases"]:
        print(f"  {p['phase']:<9} {p['seconds']:>7.1f} s  {p['what']}")
    print(
        "Scores (a smoke figure: a 135 M LLM, measured audio/video clues and random-weight AffectGPT "
        "encoders on a few clips):"
    )
    for who, s in summary["scores"].items():
        nums = "  ".join(f"{k}={v:.3f}" for k, v in s.items() if isinstance(v, float))
        print(f"  {who:<20} {s.get('scored', 0)} scored  {nums}")
    print("Outputs:")
    for what, where in summary["outputs"].items():
        print(f"  {what:<22} {where}")
