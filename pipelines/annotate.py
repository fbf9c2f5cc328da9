"""The annotation job: clips -> decode/check -> audio and video clues -> disambiguated bilingual
description -> OV labels -> EMER-Coarse shards, as one lazy Ray Data pipeline.

``run_annotation(cfg, input, subtitles, output)`` lists the input, skips what the output already holds
(completion markers), builds the lazy Dataset (consuming it writes the shards from inside the
pipeline and yields only small summary rows), re-runs the rows of blocks lost to crashed workers one
by one (so only the culprit fails), records what is still lost as failures, and writes the manifest
and dataset card.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from typing import Any

from core import placement, storage
from core.config import to_plain
from core.failures import FATAL_HINT, FatalStreak, RunFailed, check_failure_budget
from core.fingerprint import check_resume
from core.llm import tiny
from core.metrics import ProgressLine
from core.runtime import worker_env
from core.stage import FAILED, map_stages
from pipelines import card, sink
from pipelines.config import RESUME_IGNORED, AnnotateConfig, StageConfig
from pipelines.inputs import Listing, build_listing
from pipelines.stages import (
    AudioClueStage,
    CheckStage,
    DecodeStage,
    DisambiguateStage,
    OVLabelStage,
    TranslateStage,
    VideoClueStage,
)
from pipelines.vllm_stage import vllm_stages

log = logging.getLogger(__name__)

CRASH_REASON = (
    "lost with its block, also when retried alone: the worker process died (native crash, out "
    "of memory) or the block raised outside the per-row handling (e.g. the output could not be "
    "written); see the job log"
)


@dataclasses.dataclass
class Plan:
    listing: Listing
    state: sink.OutputState
    todo: list[dict[str, Any]]  # input rows to process in this run
    skipped: int  # names already finished


def plan_annotation(cfg: AnnotateConfig, input_uri: str, subtitles_uri: str, output: str) -> Plan:
    """List and key the input, reconcile the output, choose the rows to (re)process.

    An output started under other output-affecting settings is refused before anything is written."""
    check_unchanged(cfg, output)
    listing = build_listing(input_uri, subtitles_uri, cfg)
    state = sink.reconcile(output, temp_age_s=0)  # no writer runs yet: every temp file is stale
    if cfg.retry_failed:
        redo = state.names(sink.REJECTED, FAILED)
        todo = [r for r in listing.rows if r["name"] in redo]
    else:
        todo = [r for r in listing.rows if r["name"] not in state.outcome]
    fresh = [r for r in listing.rejected if r["name"] not in state.outcome or cfg.retry_failed]
    if fresh:
        sink.write_shard(output, fresh, sink.FAILURE_COLUMNS)
    return Plan(listing, state, todo, len(listing.rows) - len(todo))


def check_unchanged(cfg: AnnotateConfig, output: str) -> None:
    """Raise ``ResumeMismatch`` listing each changed key when ``output`` holds a run made under other
    output-affecting settings (its manifest's config); operational keys (``RESUME_IGNORED``) may change."""
    uri = storage.join(output, "manifest.json")
    if not storage.exists(uri):
        return
    saved = json.loads(storage.read_text(uri)).get("config")
    fix = (
        f"restore the old values (in {storage.join(output, 'config.yaml')}) to resume, or give another "
        "--output to annotate afresh under the new settings"
    )
    check_resume(saved, to_plain(cfg), RESUME_IGNORED, f"the annotation in {output}", fix)


def stage_groups(cfg: AnnotateConfig) -> list[tuple[list, StageConfig, Any]]:
    """Stages grouped by the actor pool they run in: (stage classes, resources, LLM config or None)."""
    groups: list[tuple[list, StageConfig, Any]] = [([DecodeStage, CheckStage], cfg.stages.decode, None)]
    if cfg.llm_stages:
        groups += [
            ([AudioClueStage], cfg.stages.audio, cfg.audio),
            ([VideoClueStage], cfg.stages.video, cfg.video),
            ([DisambiguateStage, TranslateStage, OVLabelStage], cfg.stages.text, cfg.text),
        ]
    return groups


def pool_bounds(cfg: AnnotateConfig, groups) -> list[tuple[int, int]]:
    """(min, max) actors per group: configured; else auto (see ``StageConfig``)."""
    import ray

    totals = ray.cluster_resources()
    bounds = [_auto_bounds(res, llm, totals) for _, res, llm in groups]
    used = sum(b[1] * res.num_cpus for b, (_, res, _) in zip(bounds, groups) if b is not None)
    free = float(totals.get("CPU", 1)) - used
    out = []
    for b, (_, res, _) in zip(bounds, groups):
        if b is None:  # decode, auto, no custom resources: the CPUs the other pools leave free
            n = max(1, int(free // max(res.num_cpus, 1e-3)))
            b = (n, n)
        out.append(b)
    return out


def _auto_bounds(res: StageConfig, llm, totals: dict) -> tuple[int, int] | None:
    gpus = llm.num_gpus if llm is not None else 0.0
    if res.actors:
        return res.actors, res.actors
    if res.resources or gpus:
        per_actor = {"CPU": res.num_cpus, "GPU": gpus, **res.resources}
        return placement.pool_bounds(0, per_actor, res.max_actors, totals)
    return (1, 1) if llm is not None else None


def build_pipeline(cfg: AnnotateConfig, rows: list[dict[str, Any]], output: str, isolate: bool = False):
    """The lazy Dataset over ``rows``: one actor pool per stage group, the sink in the last one.

    ``isolate``: one row per batch and one task in flight per actor, so a crash loses one row.
    """
    import ray

    groups = stage_groups(cfg)
    bounds = pool_bounds(cfg, groups)
    env = _runtime_env(worker_env())
    batches = [
        1 if isolate else _batch_size(res.batch_size, len(rows), hi)
        for (_, res, _), (_, hi) in zip(groups, bounds)
    ]
    ds = ray.data.from_items(rows, override_num_blocks=max(1, math.ceil(len(rows) / batches[0])))
    batches[0] = None  # the first pool takes one input block (<= its batch size) per call
    for i, ((stages, res, llm), (lo, hi), batch) in enumerate(zip(groups, bounds, batches)):
        chain = [(cls, {}) for cls in stages]
        if llm is not None and llm.backend == "vllm":  # ray.data.llm processors; then the sink (CPU)
            ds = vllm_stages(ds, stages, cfg, res.resources, env)
            if i < len(groups) - 1:
                continue
            chain, llm, res, lo, hi = [], None, res.replace(resources={}), 1, max(1, hi)
        if i == len(groups) - 1:
            chain.append((sink.WriteStage, {"output": output}))
        remote = placement.remote_args(
            res.resources,
            num_cpus=res.num_cpus,
            num_gpus=llm.num_gpus if llm is not None else None,
            max_restarts=res.max_restarts,
            max_task_retries=0 if isolate else res.max_task_retries,
        )
        ds = map_stages(
            ds,
            chain,
            cfg,
            pool=(lo, hi),
            batch_size=batch,
            remote=remote,
            runtime_env=env,
            in_flight=1 if isolate else 2,
        )
    return ds


def _runtime_env(wanted: dict[str, str]) -> dict | None:
    """The driver's non-secret env (S3 endpoint...) for the workers, unless the job already gives them it.

    A runtime env of its own makes Ray start fresh worker processes for the pool (slower start).
    """
    import ray

    job = (ray.get_runtime_context().runtime_env or {}).get("env_vars") or {}
    missing = {k: v for k, v in wanted.items() if job.get(k) != v}
    return {"env_vars": {**job, **missing}} if missing else None


def _batch_size(configured: int, rows: int, actors: int) -> int:
    """The configured batch, smaller when there are too few rows to keep every actor busy."""
    return max(1, min(configured, math.ceil(rows / max(1, actors))))


def consume(
    ds, total: int, every: float = 10.0, label: str = "annotate", stop_after_fatal: int = 0
) -> tuple[list[dict[str, Any]], str]:
    """Stream the summary rows to the driver (small rows only); one progress line every ``every`` s.

    Returns (rows, why it stopped early or ''): ``stop_after_fatal`` rows in a row that failed on an
    error every later row would repeat (HTTP 401/403/404) end the run; rows not reached stay pending.
    """
    out: list[dict[str, Any]] = []
    progress = ProgressLine(label, total=total, unit="clips", every=every)
    streak, stopped = FatalStreak(stop_after_fatal), ""
    batches = iter(ds.iter_batches(batch_size=None, batch_format="pyarrow"))
    try:
        for batch in batches:
            rows = batch.to_pylist()
            out += rows
            progress.update(
                len(rows), **{o: sum(1 for r in rows if r["outcome"] == o) for o in sink.OUTCOMES}
            )
            for r in rows:
                stopped = stopped or streak.observe(r["outcome"] == FAILED, r.get("reason")) or ""
            if stopped:
                log.error("%s: stopping early: %s; %s", label, stopped, FATAL_HINT)
                break
    finally:
        close = getattr(batches, "close", None)
        if close:
            close()  # stops the streaming executor (and its actors) when we stopped early
    progress.close()
    return out, stopped


def run_annotation(
    cfg: AnnotateConfig, input_uri: str, subtitles_uri: str, output: str, resolved: Any = None
) -> dict[str, Any]:
    """Annotate, resuming from what ``output`` holds; returns the manifest (also written to OUTPUT).

    ``resolved``: the whole run config to save as ``OUTPUT/config.yaml`` (default: ``cfg``).
    """
    start = time.perf_counter()
    plan = plan_annotation(cfg, input_uri, subtitles_uri, output)
    log.info(
        "annotate: %d to process, %d already finished%s",
        len(plan.todo),
        plan.skipped,
        " (retrying failures)" if cfg.retry_failed else "",
    )
    done, lost, stopped = _execute(cfg, plan.todo, output)
    state = sink.reconcile(output)
    stats = {
        "attempted": len(plan.todo),
        "skipped_finished": plan.skipped,
        "lost_to_crashes": len(lost),
        "orphans_removed": plan.state.orphans_removed,
        "temp_files_removed": plan.state.temps_removed + state.temps_removed,
        "superseded": state.superseded,
        "seconds": round(time.perf_counter() - start, 2),
        "stopped_early": stopped,
        **{o: sum(1 for r in done if r["outcome"] == o) for o in sink.OUTCOMES},
    }
    manifest = card.write_manifest_and_card(
        cfg, plan.listing, state, stats, input_uri, subtitles_uri, output, resolved
    )
    log.info("annotate: this run %s; output %s", stats, manifest["counts"])
    return manifest


def _execute(cfg: AnnotateConfig, todo: list[dict[str, Any]], output: str) -> tuple[list, list, str]:
    """Run the rows; re-run those of lost blocks one by one; record the rest as failures.

    Returns (summary rows, rows lost to crashes, why the run stopped early or ''); after an early
    stop the rows not reached are neither retried nor recorded: they stay pending for the resume.
    """
    import ray.data

    ctx = ray.data.DataContext.get_current()
    saved, ctx.max_errored_blocks = ctx.max_errored_blocks, cfg.max_errored_blocks
    try:
        done, stopped = _run_rows(cfg, todo, output, isolate=False) if todo else ([], "")
        if stopped:
            return done, [], stopped
        lost = _lost(todo, done)
        if lost and cfg.isolate_crashes:
            log.warning(
                "annotate: %d rows were in blocks lost to crashed workers; retrying them one by one",
                len(lost),
            )
            again, stopped = _run_rows(cfg, lost, output, isolate=True)
            done += again
            lost = _lost(todo, done)
    finally:
        ctx.max_errored_blocks = saved
    if lost:
        rows = [sink.failure_row(r["name"], "crash", CRASH_REASON, r["clip"]) for r in lost]
        done += sink.write_shard(output, rows, sink.FAILURE_COLUMNS).to_pylist()
    return done, lost, stopped


def _run_rows(cfg: AnnotateConfig, rows: list[dict[str, Any]], output: str, isolate: bool):
    ds = build_pipeline(cfg, rows, output, isolate=isolate)
    label = "annotate (crash isolation)" if isolate else "annotate"
    return consume(ds, len(rows), cfg.progress_every_s, label, cfg.stop_after_fatal)


def check_outcome(cfg: AnnotateConfig, manifest: dict[str, Any]) -> None:
    """Raise ``RunFailed`` (exit 1, outputs kept) after an early stop, or when this run's failed rows
    exceed ``cfg.max_failure_fraction``, or when none of its rows gave a sample."""
    r, c = manifest["this_run"], manifest["counts"]
    if r.get("stopped_early"):
        raise RunFailed(
            f"annotate stopped early: {r['stopped_early']}; {c['pending']} inputs not attempted, the "
            f"{c['ok']} finished samples are kept: {FATAL_HINT}"
        )
    attempted = r["attempted"]
    kept = f"the {c['ok']} finished samples are kept"
    check_failure_budget("annotate", r["failed"], attempted, cfg.max_failure_fraction, kept)
    if attempted and not r["ok"]:
        raise RunFailed(
            f"annotate: none of the {attempted} rows processed gave a sample ({r['rejected']} rejected, "
            f"{r['failed']} failed): see failures/ for the reasons"
        )


def with_tiny_models(cfg: AnnotateConfig, models_dir: str, max_new_tokens: int = 24) -> AnnotateConfig:
    """``cfg`` with every LLM role on a tiny random-weight checkpoint of the real model class, built
    once under ``models_dir`` (the offline demo; the text they generate is gibberish)."""

    roles = {
        role: getattr(cfg, role).replace(
            backend="transformers",
            model=tiny.BUILDERS[role](f"{models_dir}/{role}"),
            model_class="",
            max_new_tokens=max_new_tokens,
            min_new_tokens=min(4, max_new_tokens),
            num_gpus=0.0,
        )
        for role in ("audio", "video", "text")
    }
    return cfg.replace(**roles)


def _lost(todo: list[dict[str, Any]], done: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen = {r["name"] for r in done}
    return [r for r in todo if r["name"] not in seen]
