"""``emer noise``: MER-NOISE (MER2024 §2.2) — a noisy copy of a folder of clips, on Ray Data.

Settings live in the ``noise`` section of the run config (preset ``configs/mer-noise.yaml``).
"""

from __future__ import annotations

import argparse
import logging

from core.failures import check_failure_budget
from core.runtime import init_ray
from emer.commands import flags
from emer.commands.flags import Parents, config_flag
from pipelines.clips.noise_job import list_noise, run_noise

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction, parents: Parents) -> None:
    p = sub.add_parser(
        "noise",
        parents=parents.ray,
        help="MER-NOISE: add speech noise at a random SNR and a random blur to every clip (Ray Data)",
        description="For each clip, from a seed of its own (the run seed and the clip name): add a noise "
        "file from --noise-dir at an SNR drawn in noise.snr_db (default 5-10 dB; the clip's audio rate is "
        "kept) and blur the frames by a factor drawn from noise.blur_factors (down-sample, then "
        "up-sample; default 1, 2, 4). Writes OUTPUT/clips/<name>.mp4 (H.264/AAC), OUTPUT/noise.csv (per "
        "clip: noise file, offset, SNR drawn and measured, blur factor, seeds), OUTPUT/failures.csv and, "
        "with --subtitles, OUTPUT/subtitles.csv, so `emer annotate --input OUTPUT/clips --subtitles "
        "OUTPUT/subtitles.csv` reads the noisy copy as it reads the clean one. A rerun skips finished "
        "clips and writes the same files. Exits 1 (finished clips kept) when more than "
        "--max-failure-fraction of the clips processed failed.",
    )
    p.add_argument(
        "--input",
        required=True,
        metavar="URI",
        help="folder or s3:// prefix of clips (.mp4 .avi .mkv .webm; noise.extensions); name = file stem",
    )
    p.add_argument("--output", required=True, metavar="URI", help="output folder or s3:// prefix")
    p.add_argument(
        "--noise-dir",
        required=True,
        metavar="URI",
        help="folder or s3:// prefix of noise files (.wav .flac .ogg .mp3; the paper: MUSAN's speech subset)",
    )
    p.add_argument(
        "--subtitles",
        default=None,
        metavar="URI",
        help="subtitle CSV of the clips (MER layout: name,chinese,english), copied to OUTPUT/subtitles.csv",
    )
    config_flag(
        p,
        "--seed",
        key="noise.seed",
        type=int,
        help="run seed; each clip's draw derives from it (noise.seed)",
    )
    config_flag(
        p,
        "--max-failure-fraction",
        key="noise.max_failure_fraction",
        type=float,
        metavar="F",
        help="exit non-zero when more than this share of the clips processed failed (default "
        "noise.max_failure_fraction, 0.5); finished clips are kept either way",
    )
    p.set_defaults(func=_noise)


def _noise(args: argparse.Namespace) -> int:
    run = flags.load(args)
    cfg = run.noise
    list_noise(cfg, args.noise_dir)  # a missing or empty noise folder stops here, before Ray starts
    init_ray(run.ray)
    m = run_noise(cfg, args.input, args.output, args.noise_dir, args.subtitles, resolved=run)
    c, r = m["counts"], m["this_run"]
    print(
        f"noise: {c['inputs']} clips -> {c['noisy']} noisy, {c['failed']} failed "
        f"({r['attempted']} processed now, {r['skipped_finished']} already done, {r['seconds']} s); "
        f"table: {m['output'].rstrip('/')}/noise.csv",
        flush=True,
    )
    kept = f"the {c['noisy']} noisy clips are kept"
    check_failure_budget(
        "noise", c["failed"], r["attempted"] + c["listing_failed"], cfg.max_failure_fraction, kept, "clips"
    )
    return 0
