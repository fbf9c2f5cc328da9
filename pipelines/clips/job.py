"""``emer clips``: source videos -> clips, subtitles.csv and a clip table, as one Ray Data job.

``run_clips(cfg, input, output, subtitles)`` lists the videos (local folder or ``s3://`` prefix; the
id is the file stem, checked as ``emer annotate`` checks clip ids), pairs each with the subtitle
file of the same stem (``--subtitles DIR``, else beside the video; none: the VAD path), skips the
videos that have a done marker, and runs ``SegmentStage`` on a CPU actor pool (``clips.stages.decode``)
and, when some video has no subtitle file, ``AsrStage`` on its own pool (``clips.stages.asr``, with
``clips.asr.num_gpus`` GPUs per actor, none for an endpoint). The rows stream back to the driver,
which finishes each video as soon as its rows are in (``outputs.VideoCollector``). A video lost
with a crashed worker gets no marker (a rerun redoes it) and is recorded as failed for this run.
Then ``clips.parquet``, ``subtitles.csv``, ``manifest.json`` (``this_run.step_seconds``: the
seconds each step took over this run's videos, from the markers), ``config.yaml`` and the card.
"""

from __future__ import annotations

import dataclasses
import logging
import posixpath
import time
from typing import Any

from core import storage
from core.failures import BlockErrors, check_failure_budget
from core.metrics import ProgressLine
from core.runtime import runtime_env_for, worker_env
from core.stage import FAILED, map_stages
from pipelines import pools
from pipelines.clips import card, outputs
from pipelines.clips import columns as C
from pipelines.clips.config import ClipsConfig
from pipelines.clips.segment import SUBTITLE_SUFFIXES
from pipelines.clips.stages import AsrStage, SegmentStage
from pipelines.inputs import input_root, link_out_reason, list_clips, unsafe_id_reason

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Plan:
    videos: list[dict[str, Any]]  # every listed video with a safe id: video, source, subtitle_file
    refused: list[dict[str, Any]]  # failure rows of videos refused while listing
    todo: list[dict[str, Any]]
    skipped: int


def subtitle_files(folder: str) -> dict[str, str]:
    """stem -> subtitle file under ``folder`` (SRT before ASS/SSA before VTT for one stem)."""
    found: dict[str, str] = {}
    rank = {s: i for i, s in enumerate(SUBTITLE_SUFFIXES)}
    for uri in storage.list_files(folder, suffixes=SUBTITLE_SUFFIXES):
        stem, ext = posixpath.splitext(posixpath.basename(uri))
        if stem not in found or rank[ext.lower()] < rank[posixpath.splitext(found[stem])[1].lower()]:
            found[stem] = uri
    return found


def list_videos(cfg: ClipsConfig, input_uri: str, subtitles_uri: str = "") -> Plan:
    """Every video under ``input_uri`` with its subtitle file; clear errors for a bad folder."""
    if subtitles_uri and not storage.exists(subtitles_uri):
        raise FileNotFoundError(f"--subtitles {subtitles_uri}: no such folder or prefix")
    videos = list_clips(input_uri, cfg.extensions) if storage.exists(input_uri) else {}
    if not videos:
        raise FileNotFoundError(
            f"--input {input_uri}: no video found (suffixes {', '.join(cfg.extensions)}); pass the "
            "folder or s3:// prefix that holds the source videos"
        )
    subs = {**subtitle_files(input_uri), **(subtitle_files(subtitles_uri) if subtitles_uri else {})}
    root = input_root(input_uri)
    rows, refused = [], []
    for name, uri in videos.items():
        row = {C.VIDEO: name, C.SOURCE: uri, C.SUBTITLE_FILE: subs.get(name, "")}
        reason = unsafe_id_reason(name) or link_out_reason(uri, root)
        if reason:
            refused.append(C.video_failure(row, "list", reason))
        else:
            rows.append(row)
    return Plan(rows, refused, [], 0)


def plan_clips(cfg: ClipsConfig, input_uri: str, subtitles_uri: str, output: str) -> Plan:
    plan = list_videos(cfg, input_uri, subtitles_uri)
    storage.remove_stale_temp_files(output)  # no writer runs yet: a temp file is a crashed write's
    done = outputs.load_markers(output)
    redo = {v for v, m in done.items() if m["outcome"] == FAILED} if cfg.retry_failed else set()
    plan.todo = [r for r in plan.videos if r[C.VIDEO] not in done or r[C.VIDEO] in redo]
    plan.skipped = len(plan.videos) - len(plan.todo)
    return plan


def build_pipeline(cfg: ClipsConfig, rows: list[dict[str, Any]], output: str):
    """The lazy Dataset: SegmentStage on the decode pool, then AsrStage where a video needs ASR."""
    import ray

    env = runtime_env_for(worker_env())  # the driver's S3 endpoint etc., unless the workers have them
    dec = cfg.stages.decode
    ds = ray.data.from_items(rows, override_num_blocks=max(1, len(rows)))
    ds = map_stages(
        ds,
        [(SegmentStage, {"output": output})],
        cfg,
        pool=capped(dec.bounds(), len(rows)),
        batch_size=None,
        remote=pools.remote_for(dec, None),
        runtime_env=env,
    )
    if cfg.transcribe and any(not r[C.SUBTITLE_FILE] for r in rows):
        res, asr = cfg.stages.asr, cfg.asr
        ds = map_stages(
            ds,
            [(AsrStage, {})],
            cfg,
            pool=res.bounds(),
            batch_size=res.batch_size,
            remote=pools.remote_for(res, asr),
            runtime_env=env,
        )
    return ds


def capped(bounds: tuple[int, int | None], rows: int) -> tuple[int, int]:
    """A pool's (min, max) actors, no more than there are videos (one video a task)."""
    hi = min(bounds[1] or rows, rows)
    return min(bounds[0], hi), hi


def _execute(cfg: ClipsConfig, plan: Plan, output: str) -> tuple[outputs.VideoCollector, list[dict]]:
    """Run the videos to do; returns the collector and the failure rows of videos lost to crashes."""
    import ray.data

    collector = outputs.VideoCollector(output)
    if not plan.todo:
        return collector, []
    ctx = ray.data.DataContext.get_current()
    saved, ctx.max_errored_blocks = ctx.max_errored_blocks, len(plan.todo)
    progress = ProgressLine("clips", total=len(plan.todo), unit="videos", every=cfg.progress_every_s)
    try:
        with BlockErrors() as errors:
            ds = build_pipeline(cfg, plan.todo, output)
            for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
                before = len(collector.markers)
                collector.add(batch.to_pylist())
                progress.update(len(collector.markers) - before)
    finally:
        ctx.max_errored_blocks = saved
        progress.close()
    lost = [r for r in plan.todo if r[C.VIDEO] not in collector.markers]
    why = "lost with its block (a worker crashed or ran out of memory); a rerun retries it"
    if errors.messages:
        why += ". Ray reported: " + " | ".join(errors.messages[:3])
    return collector, [C.video_failure(r, "crash", why) for r in lost]


def run_clips(
    cfg: ClipsConfig, input_uri: str, output: str, subtitles_uri: str = "", resolved: Any = None
) -> dict[str, Any]:
    """Cut the videos of ``input_uri`` into clips under ``output``, resuming; returns the manifest."""
    start = time.perf_counter()
    plan = plan_clips(cfg, input_uri, subtitles_uri, output)
    log.info("clips: %d videos to process, %d already finished", len(plan.todo), plan.skipped)
    collector, lost = _execute(cfg, plan, output)
    for row in plan.refused:  # refused while listing: recorded, never opened, not marked done
        outputs.write_failure(output, row)
    markers = outputs.load_markers(output)
    tables = outputs.write_tables(output, list(markers))
    now = list(collector.markers.values())
    run = {
        "attempted": len(plan.todo),
        "skipped_finished": plan.skipped,
        "listing_failed": len(plan.refused),
        "lost_to_crashes": [r[C.REASON] for r in lost],
        "ok": sum(1 for m in now if m["outcome"] != FAILED),
        "failed": sum(1 for m in now if m["outcome"] == FAILED) + len(lost),
        "seconds": round(time.perf_counter() - start, 2),
        "step_seconds": step_totals(now),  # summed over the workers: may exceed the wall seconds
    }
    listed = [r[C.VIDEO] for r in plan.videos] + [r[C.VIDEO] for r in plan.refused]
    where = {"input": input_uri, "subtitles": subtitles_uri, "output": output}
    return card.write_manifest_and_card(cfg, where, listed, markers, tables, run, resolved)


def step_totals(markers: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds per step (VAD, speakers, faces, cut, ASR, source) over the videos of this run."""
    total: dict[str, float] = {}
    for m in markers:
        for step, s in m.get("seconds", {}).items():
            total[step] = round(total.get(step, 0.0) + s, 3)
    return total


def check_outcome(cfg: ClipsConfig, manifest: dict[str, Any]) -> None:
    """``RunFailed`` (exit 1, outputs kept) when this run's failed videos pass the failure budget
    (every video failing always does)."""
    r = manifest["this_run"]
    total, failed = r["attempted"] + r["listing_failed"], r["failed"] + r["listing_failed"]
    kept = f"the {manifest['counts']['clips']} clips written are kept"
    check_failure_budget("clips", failed, total, cfg.max_failure_fraction, kept, unit="videos")
