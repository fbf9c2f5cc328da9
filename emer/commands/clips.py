"""``emer clips``: source videos (movies, episodes) -> clips and subtitles.csv for ``emer annotate``."""

from __future__ import annotations

import argparse
import logging

from core.runtime import init_ray
from emer.commands import flags
from emer.commands.flags import Parents, config_flag
from emer.runconfig import require_models
from pipelines.clips.job import check_outcome, list_videos, run_clips

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction, parents: Parents) -> None:
    p = sub.add_parser(
        "clips",
        parents=parents.ray,
        help="cut source videos into clips and subtitles.csv (Ray Data job; the step before annotate)",
        description="Segment each source video by its subtitle file's timestamps (SRT, ASS, VTT; same "
        "stem, in --subtitles or beside the video) or, without one, by Silero VAD with speaker "
        "merging; keep segments of 2-16 s in which most sampled frames show one face of one person; "
        "cut them with ffmpeg into OUTPUT/clips/<video>_<start_ms>_<end_ms>.mp4; transcribe the "
        "clips without a subtitle line (clips.asr); write subtitles.csv (name,chinese,english: what "
        "`emer annotate --subtitles` reads), clips.parquet (every segment with its numbers and, if "
        "removed, the reason), failures/, manifest.json and a card. Rerunning the same command "
        "resumes: finished videos are skipped. Exits 1 (outputs kept) when more than "
        "--max-failure-fraction of the videos failed, or all of them. Settings live in the 'clips' "
        "section of the run config (e.g. --clips.max_duration_s=12).",
    )
    p.add_argument(
        "--input",
        required=True,
        metavar="URI",
        help="folder or s3:// prefix of source videos (id = file stem)",
    )
    p.add_argument("--output", required=True, metavar="URI", help="output folder or s3:// prefix")
    p.add_argument(
        "--subtitles",
        default="",
        metavar="URI",
        help="folder or s3:// prefix of subtitle files named like their videos (<stem>.srt/.ass/.vtt); "
        "default: beside the videos; a video without one takes the VAD path",
    )
    config_flag(
        p,
        "--retry-failed",
        key="clips.retry_failed",
        action="store_true",
        help="also redo the videos recorded as failed (sets clips.retry_failed)",
    )
    config_flag(
        p,
        "--max-failure-fraction",
        key="clips.max_failure_fraction",
        type=float,
        metavar="F",
        help="exit non-zero when more than this share of the videos failed (sets "
        "clips.max_failure_fraction, default 0.5); finished videos are kept either way",
    )
    config_flag(
        p,
        "--stream-copy",
        key="clips.cut.copy",
        action="store_true",
        help="copy the streams instead of re-encoding to H.264/AAC (fast; cuts snap to keyframes; sets "
        "clips.cut.copy)",
    )
    p.set_defaults(func=_clips)


def _clips(args: argparse.Namespace) -> int:
    run = flags.load(args)
    list_videos(run.clips, args.input, args.subtitles)  # a wrong --input fails before Ray starts
    require_models(run, "clips")
    init_ray(run.ray)
    m = run_clips(run.clips, args.input, args.output, args.subtitles, resolved=run)
    c, r = m["counts"], m["this_run"]
    removed = ", ".join(f"{k} {v}" for k, v in c["removed_by_stage"].items()) or "none"
    print(
        f"clips: {c['videos']} videos -> {c['clips']} clips of {c['segments']} segments (removed: "
        f"{removed}), {c['failed']} videos failed ({r['attempted']} processed now, "
        f"{r['skipped_finished']} already done, {r['seconds']} s); card: {args.output.rstrip('/')}/README.md",
        flush=True,
    )
    check_outcome(run.clips, m)
    return 0
