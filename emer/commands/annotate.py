"""``emer annotate`` (clips -> EMER-Coarse on Ray Data) and ``emer samples`` (generated sample clips,
and the long episodes ``emer clips`` starts from)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from core.runtime import init_ray
from emer.commands import flags
from emer.commands.flags import Parents, config_flag
from emer.runconfig import require_models
from pipelines.annotate import ON_CHANGE, check_outcome, run_annotation
from pipelines.episodes import write_episodes
from pipelines.samples import generate_samples
from pipelines.speech import find_espeak

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction, parents: Parents) -> None:
    p = sub.add_parser(
        "annotate",
        parents=parents.ray,
        help="annotate video clips into EMER-Coarse (Ray Data pipeline)",
        description="Decode and filter clips, get audio and video emotion clues from MLLMs, merge them with "
        "the subtitle into a bilingual description, extract open-vocabulary labels and write "
        "Parquet shards, failures, manifest.json and a dataset card under --output. Rerunning "
        "the same command resumes: finished samples are skipped. Exits 1 (finished rows kept) when "
        "more than --max-failure-fraction of the rows failed, when none gave a sample, or after an "
        "early stop on annotate.stop_after_fatal rows in a row failing with HTTP 401/403/404 (a "
        "wrong key or model). Settings live in the "
        "'annotate' section of the run config (e.g. --annotate.frames=8).",
    )
    p.add_argument(
        "--input",
        required=True,
        metavar="URI",
        help="folder or s3:// prefix of clips (.mp4 .avi .mkv .webm); sample id = file stem",
    )
    p.add_argument(
        "--subtitles",
        required=True,
        metavar="URI",
        help="subtitle CSV in the MER layout: name,chinese,english (name = clip file stem)",
    )
    p.add_argument("--output", required=True, metavar="URI", help="output folder or s3:// prefix")
    config_flag(
        p,
        "--retry-failed",
        key="annotate.retry_failed",
        action="store_true",
        help="re-attempt only the samples recorded in OUTPUT/failures/ (sets annotate.retry_failed)",
    )
    config_flag(
        p,
        "--max-failure-fraction",
        key="annotate.max_failure_fraction",
        type=float,
        metavar="F",
        help="exit non-zero when more than this share of the rows processed failed (default "
        "annotate.max_failure_fraction, 0.5); finished rows are kept either way",
    )
    p.add_argument(
        "--on-config-change",
        choices=ON_CHANGE,
        default="refuse",
        help="when OUTPUT was started under other output-affecting settings (config keys, default "
        "prompts, model revisions): refuse (default; lists the changes), new (write to a sibling "
        "folder OUTPUT-<fingerprint>) or accept (resume and mix; each row keeps its "
        "config_fingerprint)",
    )
    p.set_defaults(func=_annotate)

    s = sub.add_parser(
        "samples",
        parents=parents.plain,
        help="generate MER-style sample clips, broken inputs, subtitles and reference labels",
        description="Write N real mp4 clips (a moving face-like drawing; audio: the subtitle spoken by "
        "espeak-ng where it is installed, else speech-like syllables), a set of broken inputs (empty, "
        "truncated, random bytes, no audio, too short, too long), subtitles.csv and "
        "reference-openset.csv (name, openset) into DIR, and DIR/episodes/: long videos with scripted "
        "lines in two espeak-ng voices over real face photos, one with an .srt, and episodes.json "
        "(their script); deterministic for a given seed.",
    )
    s.add_argument("dir", metavar="DIR", help="folder to write clips/ and subtitles.csv into")
    s.add_argument("--n", type=int, default=8, help="number of good clips (default 8)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument(
        "--no-episodes",
        action="store_true",
        help="skip the long episodes (DIR/episodes/: raw videos with scripted speech and real face "
        "photos, the input of `emer clips`; they need espeak-ng)",
    )
    s.set_defaults(func=_samples)


def _annotate(args: argparse.Namespace) -> int:
    run = flags.load(args)
    require_models(run, "annotate")
    cfg = run.annotate
    init_ray(run.ray)
    manifest = run_annotation(
        cfg, args.input, args.subtitles, args.output, resolved=run, on_change=args.on_config_change
    )
    c, r = manifest["counts"], manifest["this_run"]
    print(
        f"annotate: {c['inputs']} inputs -> {c['ok']} samples, {c['rejected']} rejected, "
        f"{c['failed']} failed"
        f" ({r['attempted']} processed now, {r['skipped_finished']} already done, {r['seconds']} s); "
        f"dataset card: {manifest['output'].rstrip('/')}/README.md",
        flush=True,
    )
    check_outcome(cfg, manifest)
    return 0


def _samples(args: argparse.Namespace) -> int:
    if args.n < 0:
        raise ValueError(f"--n {args.n}: must be >= 0")
    s = generate_samples(args.dir, n=args.n, seed=args.seed)
    print(
        f"samples: {len(s.clips)} clips and {len(s.broken)} broken inputs in {s.root / 'clips'}; "
        f"subtitles: {s.subtitles}; reference: {s.reference}; audio: {s.audio_source}",
        flush=True,
    )
    if args.no_episodes:
        return 0
    if find_espeak() is None:
        print("samples: no episodes: they need espeak-ng (apt-get install -y espeak-ng)", file=sys.stderr)
        return 0
    episodes = write_episodes(Path(args.dir) / "episodes", seed=args.seed)
    lines = sum(len(e.utterances) for e in episodes)
    print(
        f"samples: {len(episodes)} episodes ({lines} scripted lines, "
        f"{sum(e.duration_s for e in episodes):.1f} s) in {Path(args.dir) / 'episodes'}; "
        "script: episodes.json",
        flush=True,
    )
    return 0
