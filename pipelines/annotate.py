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
from core.fingerprint import ResumeMismatch
from core.fingerprint import changes as fingerprint_changes
from core.llm import tiny
from core.metrics import ProgressLine
from core.runtime import worker_env
from core.stage import FAILED, map_stages
from pipelines import card, provenance, sink
from pipelines.config import KIND, RESUME_IGNORED, AnnotateConfig, StageConfig
from pipelines.inputs import Listing, build_listing
from pipelines.stages import (
    CheckStage,
    DecodeStage,
    DisambiguateStage,
    OVLabelStage,
    TranslateStage,
    llm_stage_classes,
)

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

    ``output`` is already checked against its manifest (``check_unchanged``)."""
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


ON_CHANGE = ("refuse", "accept", "new")


def check_unchanged(cfg: AnnotateConfig, output: str, on_change: str = "refuse") -> str:
    """The output folder to write: ``output`` unless it holds a run made under other output-affecting
    settings (its manifest's config, its steps' prompts and model revisions). Then ``on_change``:
    refuse (raise ``ResumeMismatch`` listing each change), accept (resume and mix; every row keeps
    its ``config_fingerprint``) or new (a sibling folder named by the new settings' fingerprint).
    Operational keys (``RESUME_IGNORED``: resources, retries, batch sizes) may always change."""
    uri = storage.join(output, "manifest.json")
    if not storage.exists(uri):
        return output
    saved = json.loads(storage.read_text(uri))
    changes = fingerprint_changes(saved.get("config"), to_plain(cfg), RESUME_IGNORED)
    changes += provenance.changes(saved.get("provenance"), provenance.steps(cfg))
    if not changes or on_change == "accept":
        if changes:
            log.warning("annotate: resuming %s under %d changed setting(s) (accepted)", output, len(changes))
        return output
    if on_change == "new":
        fresh = f"{output.rstrip('/')}-{provenance.run_fingerprint(cfg, RESUME_IGNORED)[:8]}"
        log.warning("annotate: %s was made under other settings; writing to %s instead", output, fresh)
        return check_unchanged(cfg, fresh, "refuse")
    fix = (
        f"restore the old values (in {storage.join(output, 'config.yaml')}) to resume, give another "
        "--output, or pass --on-config-change=new (a new sibling output) or =accept (mix, rows keep "
        "their config_fingerprint)"
    )
    raise ResumeMismatch(f"the annotation in {output}", changes, fix)


def stage_groups(cfg: AnnotateConfig) -> list[tuple[list, StageConfig, Any]]:
    """Stages grouped by the actor pool they run in: (stage classes, resources, LLM config or None).

    Each model role gets its own pool, except that consecutive text steps with the same model config
    and the same resources share one pool and one loaded model (as the demo's three text steps do).
    """
    groups: list[tuple[list, StageConfig, Any]] = [([DecodeStage, CheckStage], cfg.stages.decode, None)]
    for cls in llm_stage_classes(cfg):
        role = cls.role_for(cfg)
        llm, res = cfg.llm(role), cfg.stages.of(role)
        last = groups[-1]
        if last[2] is not None and KIND.get(role) == "text" and (last[2], last[1]) == (llm, res):
            if last[0][-1] in TEXT_STAGES:
                last[0].append(cls)
                continue
        groups.append(([cls], res, llm))
    return groups


TEXT_STAGES = (DisambiguateStage, TranslateStage, OVLabelStage)


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
    gpus = _gpus(llm)
    if res.actors:
        return res.actors, res.actors
    if _resources(res, llm) or gpus:
        per_actor = {"CPU": res.num_cpus, "GPU": gpus, **_resources(res, llm)}
        return placement.pool_bounds(0, per_actor, res.max_actors, totals)
    return (1, 1) if llm is not None else None


def _gpus(llm) -> float:
    """GPUs per actor of a model stage: the role's ``num_gpus``; none for an endpoint role (openai),
    whose actors only send requests, whatever a placement preset asks."""
    return 0.0 if llm is None or llm.backend == "openai" else llm.num_gpus


def stage_asks(cfg: AnnotateConfig) -> dict[str, dict[str, Any]]:
    """What one actor of each pool asks, by role ("decode" for the CPU pool): its GPUs and custom
    resources as they reach Ray (an endpoint role asks no GPU and no ``llm`` slot)."""
    out: dict[str, dict[str, Any]] = {}
    for stages, res, llm in stage_groups(cfg):
        roles = ["decode"] if llm is None else [cls.role_for(cfg) for cls in stages]
        for role in roles:
            out[role] = {"gpus": _gpus(llm), "resources": _resources(res, llm)}
    return out


def _resources(res: StageConfig, llm) -> dict[str, float]:
    """Custom resources per actor: the stage's, less the GPU-node ``llm`` slot for an endpoint role."""
    if llm is not None and llm.backend == "openai":
        return {k: float(v) for k, v in res.resources.items() if k != placement.LLM}
    return {k: float(v) for k, v in res.resources.items()}


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
        if i == len(groups) - 1:
            chain.append((sink.WriteStage, {"output": output}))
        remote = placement.remote_args(
            _resources(res, llm),
            num_cpus=res.num_cpus,
            num_gpus=_gpus(llm) or None,
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
    cfg: AnnotateConfig,
    input_uri: str,
    subtitles_uri: str,
    output: str,
    resolved: Any = None,
    on_change: str = "refuse",
) -> dict[str, Any]:
    """Annotate, resuming from what ``output`` holds; returns the manifest (also written to OUTPUT;
    ``manifest["output"]`` is the folder written, another one with ``on_change="new"``).

    ``resolved``: the whole run config to save as ``OUTPUT/config.yaml`` (default: ``cfg``).
    An output started under other output-affecting settings is handled by ``on_change`` (see
    ``check_unchanged``) before anything is written.
    """
    start = time.perf_counter()
    output = check_unchanged(cfg, output, on_change)
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
    once under ``models_dir`` (the offline demo; the text they generate is gibberish). The text steps
    use ``text``'s; the omni role has no in-process class, so the clues stay separate."""

    def tiny_role(role: str) -> Any:
        return getattr(cfg, role).replace(
            backend="transformers",
            model=tiny.BUILDERS[role](f"{models_dir}/{role}"),
            model_class="",
            max_new_tokens=max_new_tokens,
            min_new_tokens=min(4, max_new_tokens),
            num_gpus=0.0,
        )

    steps = dict.fromkeys(("disambiguate", "translate_en_zh", "translate_zh_en", "ov"))
    roles = {role: tiny_role(role) for role in ("audio", "video", "text")}
    return cfg.replace(clues="separate", **roles, **steps)


def _lost(todo: list[dict[str, Any]], done: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen = {r["name"] for r in done}
    return [r for r in todo if r["name"] not in seen]
