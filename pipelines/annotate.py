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
from core.failures import FATAL_HINT, BlockErrors, FatalStreak, RunFailed, check_failure_budget
from core.fingerprint import ResumeMismatch
from core.fingerprint import changes as fingerprint_changes
from core.metrics import ProgressLine
from core.runtime import runtime_env_for, worker_env
from core.stage import FAILED, map_stages
from pipelines import card, pools, provenance, sink
from pipelines.config import RESUME_IGNORED, AnnotateConfig
from pipelines.inputs import Listing, build_listing
from pipelines.vllm_stage import vllm_stages

log = logging.getLogger(__name__)

CRASH_REASON = (
    "lost with its block, also when retried alone: the worker process died (native crash, out "
    "of memory) or the block raised outside the per-row handling (e.g. the output could not be "
    "written); see the job log"
)
MAX_RAY_ERRORS = 3  # distinct Ray errors quoted in a crash reason (each cut to 600 characters)


@dataclasses.dataclass
class Plan:
    listing: Listing
    state: sink.OutputState
    todo: list[dict[str, Any]]  # input rows to process in this run
    skipped: int  # names already finished
    listing_failed: int = 0  # inputs rejected while listing (unsafe id, link out) recorded by this run


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
    return Plan(listing, state, todo, len(listing.rows) - len(todo), len(fresh))


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


def build_pipeline(cfg: AnnotateConfig, rows: list[dict[str, Any]], output: str, isolate: bool = False):
    """The lazy Dataset over ``rows``: one actor pool per stage group, the sink in the last one.

    ``isolate``: one row per batch and one task in flight per actor, so a crash loses one row.
    """
    import ray

    groups = pools.stage_groups(cfg)
    bounds = pools.pool_sizes(groups)
    env = runtime_env_for(worker_env())  # None where the workers have it (a local Ray inherits it)
    if isolate:  # a few rows re-run one by one: no scaling
        bounds = [(lo, lo) for lo, _ in bounds]
    totals = ray.cluster_resources()
    if pools.is_local_ray() and pools.has_vllm(groups):  # a cluster's autoscaler may add what it
        pools.check_room(groups, bounds, totals)  # lacks (`emer submit` checks it)
    batches = [
        1
        if isolate
        else pools.batch_size_for(
            res.batch_size, len(rows), placement.spread(b, pools.per_actor(res, llm), totals)
        )
        for (_, res, llm), b in zip(groups, bounds)
    ]
    log.info(
        "annotate: actor pools %s",
        ", ".join(f"{stages[0].name}={pools.pool_text(b)}" for (stages, _, _), b in zip(groups, bounds)),
    )
    ds = ray.data.from_items(rows, override_num_blocks=max(1, math.ceil(len(rows) / batches[0])))
    batches[0] = None  # the first pool takes one input block (<= its batch size) per call
    for i, ((stages, res, llm), pool, batch) in enumerate(zip(groups, bounds, batches)):
        chain = [(cls, {}) for cls in stages]
        if pools.is_vllm(llm):  # ray.data.llm processors; then the sink (CPU)
            ds = vllm_stages(ds, stages, cfg, res, env)
            if i < len(groups) - 1:
                continue
            chain, llm, res, pool = [], None, res.replace(resources={}), (1, 1)  # the sink alone
        if i == len(groups) - 1:
            chain.append(sink.writer(cfg, output))
        remote = pools.remote_for(res, llm, isolate)
        ds = map_stages(
            ds,
            chain,
            cfg,
            pool=pool,
            batch_size=batch,
            remote=remote,
            runtime_env=env,
            in_flight=1 if isolate else 2,
        )
    return ds


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
        "listing_failed": plan.listing_failed,
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
        with BlockErrors() as errors:
            done, stopped = _run_rows(cfg, todo, output, isolate=False) if todo else ([], "")
            if stopped:
                return done, [], stopped
            lost = _lost(todo, done)
            if lost and cfg.isolate_crashes:
                log.warning(
                    "annotate: %d rows were in blocks lost to crashed workers; retrying them one by one",
                    len(lost),
                )
                errors.messages.clear()  # the re-run's errors are those of the rows still lost
                again, stopped = _run_rows(cfg, lost, output, isolate=True)
                done += again
                lost = _lost(todo, done)
    finally:
        ctx.max_errored_blocks = saved
    if lost:
        reason = crash_reason(errors.messages, errors.lost_nodes())
        rows = [sink.failure_row(r["name"], "crash", reason, r["clip"]) for r in lost]
        done += sink.write_shard(output, rows, sink.FAILURE_COLUMNS).to_pylist()
    return done, lost, stopped


def crash_reason(ray_errors: list[str], lost_nodes: list[str] = ()) -> str:
    """The reason of a row lost with its block: ``CRASH_REASON`` plus what Ray said about the lost
    blocks and the nodes that died during the run (which rows were in which block, or on which
    node, Ray does not say, so every lost row gets them all)."""
    reason = CRASH_REASON
    if ray_errors:
        more = len(ray_errors) - MAX_RAY_ERRORS
        reason += ". Ray reported: " + " | ".join(ray_errors[:MAX_RAY_ERRORS])
        reason += f" (and {more} more)" if more > 0 else ""
    if lost_nodes:
        reason += ". Nodes lost during the run: " + " | ".join(lost_nodes)
    return reason


def _run_rows(cfg: AnnotateConfig, rows: list[dict[str, Any]], output: str, isolate: bool):
    ds = build_pipeline(cfg, rows, output, isolate=isolate)
    label = "annotate (crash isolation)" if isolate else "annotate"
    return consume(ds, len(rows), cfg.progress_every_s, label, cfg.stop_after_fatal)


def check_outcome(cfg: AnnotateConfig, manifest: dict[str, Any]) -> None:
    """Raise ``RunFailed`` (exit 1, outputs kept) after an early stop, when this run's failed rows
    exceed ``cfg.max_failure_fraction``, when none of its rows gave a sample, or when the output holds
    no sample at all. The inputs rejected while listing (``listing_failed``) count as rows of this
    run that failed."""
    r, c = manifest["this_run"], manifest["counts"]
    if r.get("stopped_early"):
        raise RunFailed(
            f"annotate stopped early: {r['stopped_early']}; {c['pending']} inputs not attempted, the "
            f"{c['ok']} finished samples are kept: {FATAL_HINT}"
        )
    listed = r.get("listing_failed", 0)
    total, failed = r["attempted"] + listed, r["failed"] + listed
    kept = f"the {c['ok']} finished samples are kept"
    check_failure_budget("annotate", failed, total, cfg.max_failure_fraction, kept)
    if total and not r["ok"]:
        raise RunFailed(
            f"annotate: none of the {total} rows processed gave a sample ({r['rejected']} rejected, "
            f"{failed} failed, {listed} of them while listing): see failures/ for the reasons"
        )
    if not c["ok"]:
        raise RunFailed(
            f"annotate: the output holds no samples ({c['inputs']} inputs: {c['rejected']} rejected, "
            f"{c['failed']} failed, {c['pending']} pending): check --input (clips with the suffixes "
            f"{', '.join(cfg.extensions)}) and see failures/ for the reasons"
        )


def _lost(todo: list[dict[str, Any]], done: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen = {r["name"] for r in done}
    return [r for r in todo if r["name"] not in seen]
