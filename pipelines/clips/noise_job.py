"""``emer noise``: MER-NOISE over a folder of clips as a Ray Data job (one clip a row, CPU actors).

``run_noise(cfg, input, output, noise_dir, subtitles)`` lists the clips (``pipelines.inputs``
rules: sample id = file stem, unsafe ids refused) and the noise files, then ``NoiseStage`` draws
each clip's corruption (``pipelines.clips.noise``), mixes and blurs it (``noise_media``) and writes

- ``OUTPUT/clips/<name>.mp4``: the noisy clip (H.264/AAC; the audio at the clip's own rate);
- ``OUTPUT/params/<name>.json``: what was drawn and measured, written after the clip: the marker
  of a finished clip, so a rerun skips it (and a half-written one is redone);
- ``OUTPUT/noise.csv``: one row per noisy clip (clip, noise file, offset, SNR drawn and measured,
  gain, blur factor, seeds); ``OUTPUT/failures.csv``: the clips that failed now, with reasons;
- ``OUTPUT/subtitles.csv``: the subtitle CSV copied unchanged, so ``emer annotate --input
  OUTPUT/clips --subtitles OUTPUT/subtitles.csv`` reads the noisy folder as it read the clean one;
- ``OUTPUT/settings.json`` (the settings every clip depends on: a rerun under other settings is
  refused rather than mixed in), ``manifest.json`` and ``config.yaml``.
"""

from __future__ import annotations

import collections
import csv
import io
import json
import logging
import time
from typing import Any

from core import storage
from core.config import Config, dump_yaml, to_plain
from core.failures import BlockErrors
from core.schema import FAILURE_COLUMNS, OK
from core.stage import Stage, fail, map_stages
from pipelines.clips.noise import NoiseConfig, draw, mix_at_snr, noise_window, relative_name
from pipelines.clips.noise_media import decode_audio, decode_noise, probe, write_noisy
from pipelines.fetch import local_clip
from pipelines.inputs import list_clips, unsafe_id_reason
from pipelines.media import MediaError

log = logging.getLogger(__name__)

CLIPS, PARAMS = "clips", "params"
TABLE_COLUMNS = (
    "name",
    "clip",
    "noise_file",
    "noise_offset_s",
    "snr_db",
    "measured_snr_db",
    "gain",
    "blur_factor",
    "clip_seed",
    "run_seed",
    "sample_rate",
    "channels",
    "width",
    "height",
    "output",
)
SETTING_KEYS = (
    "seed",
    "snr_db",
    "blur_factors",
    "video_codec",
    "crf",
    "preset",
    "audio_codec",
    "audio_bitrate",
)


class NoiseStage(Stage):
    """One clip -> its noisy clip and its params (the marker); a bad clip becomes a failure row."""

    name = "noise"
    needs = ("name", "clip")
    produces = ("name", "outcome", "stage", "reason")

    def setup(self) -> None:
        self.noise_files: list[str] = self.options["noise_files"]
        self.noise_dir: str = self.options["noise_dir"]
        self.output: str = self.options["output"]
        self.cache: collections.OrderedDict[tuple[str, int], Any] = collections.OrderedDict()

    def noise(self, uri: str, rate: int):
        """A noise file decoded at ``rate`` (mono float32), kept for the next clips of this actor."""
        key = (uri, rate)
        if key not in self.cache:
            self.cache[key] = decode_noise(uri, rate, self.cfg.ffmpeg_timeout_s)
            while len(self.cache) > self.cfg.noise_cache:
                self.cache.popitem(last=False)
        self.cache.move_to_end(key)
        return self.cache[key]

    def process_row(self, row: dict[str, Any]) -> None:
        try:
            params = self.corrupt(row["name"], row["clip"])
        except MediaError as err:
            fail(row, self.name, str(err), code="noise_media")
            return
        storage.write_text(params_uri(self.output, row["name"]), json.dumps(params, sort_keys=True))

    def corrupt(self, name: str, clip: str) -> dict[str, Any]:
        cfg = self.cfg
        d = draw(cfg, name, self.noise_files)
        with local_clip(clip, cfg.max_clip_bytes, key="noise.max_clip_bytes") as path:
            info = probe(path)
            audio = decode_audio(path, info, cfg.ffmpeg_timeout_s)
            noise = self.noise(d.noise_file, info.rate)
            window, start = noise_window(noise, audio.shape[0], d.offset)
            try:
                mixed, measured, gain = mix_at_snr(audio, window, d.snr_db)
            except ValueError as err:
                raise MediaError(
                    f"{err} (noise file {d.noise_file}, from {start / info.rate:.3f} s)"
                ) from err
            out = clip_uri(self.output, name)
            write_noisy(path, mixed, info, d.blur_factor, out, cfg)
        return {
            "name": name,
            "clip": clip,
            "noise_file": relative_name(d.noise_file, self.noise_dir),
            "noise_offset_s": round(start / info.rate, 6),
            "snr_db": d.snr_db,
            "measured_snr_db": measured,
            "gain": gain,
            "blur_factor": d.blur_factor,
            "clip_seed": d.clip_seed,
            "run_seed": cfg.seed,
            "sample_rate": info.rate,
            "channels": info.channels,
            "width": info.width,
            "height": info.height,
            "output": out,
        }


def clip_uri(output: str, name: str) -> str:
    return storage.join(output, CLIPS, f"{name}.mp4")


def params_uri(output: str, name: str) -> str:
    return storage.join(output, PARAMS, f"{name}.json")


def list_noise(cfg: NoiseConfig, noise_dir: str) -> list[str]:
    """The noise files under ``noise_dir``, sorted; an error naming --noise-dir when there are none."""
    if not storage.exists(noise_dir):
        raise FileNotFoundError(
            f"--noise-dir {noise_dir}: no such folder or prefix; pass a folder of WAV files"
        )
    files = storage.list_files(noise_dir, suffixes=cfg.noise_extensions)
    if not files:
        raise ValueError(
            f"--noise-dir {noise_dir}: no noise files ({', '.join(cfg.noise_extensions)}) in it; MER-NOISE "
            "draws its additive noise from this folder (the paper: MUSAN's speech subset)"
        )
    return files


def settings(cfg: NoiseConfig, noise_dir: str, noise_files: list[str]) -> dict[str, Any]:
    """What every finished clip depends on besides its input (compared on a rerun)."""
    return {
        **{k: getattr(cfg, k) for k in SETTING_KEYS},
        "noise_files": [relative_name(f, noise_dir) for f in noise_files],
    }


def check_settings(output: str, wanted: dict[str, Any]) -> None:
    """Write ``settings.json`` on the first run; on a rerun, refuse other settings (naming them)."""
    uri = storage.join(output, "settings.json")
    if not storage.exists(uri):
        storage.write_text(uri, json.dumps(wanted, indent=2, sort_keys=True))
        return
    before = json.loads(storage.read_text(uri))
    changed = sorted(k for k in {*before, *wanted} if before.get(k) != wanted.get(k))
    if changed:
        raise ValueError(
            f"--output {output} holds noisy clips made with other settings ({', '.join(changed)} differ; "
            "see its settings.json): pass a new --output, or the settings that made it"
        )


def plan(cfg: NoiseConfig, input_uri: str, output: str) -> tuple[list[dict], list[dict], list[str]]:
    """(rows to do, clips refused while listing, names already finished)."""
    todo, refused, done = [], [], []
    finished = _stems(storage.join(output, PARAMS), ".json") & _stems(storage.join(output, CLIPS), ".mp4")
    for name, uri in list_clips(input_uri, cfg.extensions).items():
        reason = unsafe_id_reason(name)
        if reason:
            refused.append(
                {"name": name, "stage": "list", "reason": reason, "outcome": "failed", "clip": uri}
            )
        elif name in finished:
            done.append(name)
        else:
            todo.append({"name": name, "clip": uri})
    return todo, refused, done


def _stems(folder: str, suffix: str) -> set[str]:
    """File names without ``suffix`` in ``folder`` (one listing; temp files left out)."""
    files = storage.list_files(folder, [suffix], recursive=False, skip_temp=True)
    return {f.replace("\\", "/").rsplit("/", 1)[-1].removesuffix(suffix) for f in files}


def run_noise(
    cfg: NoiseConfig,
    input_uri: str,
    output: str,
    noise_dir: str,
    subtitles: str | None = None,
    resolved: Config | None = None,
) -> dict[str, Any]:
    """Make the noisy copy of every clip under ``input_uri`` not finished yet; returns the manifest."""
    start = time.monotonic()
    noise_files = list_noise(cfg, noise_dir)
    todo, refused, done = plan(cfg, input_uri, output)
    if not (todo or refused or done):
        raise ValueError(f"--input {input_uri}: no clips ({', '.join(cfg.extensions)}) in it")
    check_settings(output, settings(cfg, noise_dir, noise_files))
    storage.remove_stale_temp_files(storage.join(output, CLIPS))
    results = execute(cfg, todo, output, noise_files, noise_dir) if todo else []
    by_name = {r["name"]: r.get("clip", "") for r in todo}
    failures = refused + [{**r, "clip": by_name.get(r["name"], "")} for r in results if r["outcome"] != OK]
    rows = write_outputs(output, failures, subtitles)
    manifest = {
        "input": input_uri,
        "output": output,
        "noise_dir": noise_dir,
        "noise_files": len(noise_files),
        "counts": {
            "inputs": len(todo) + len(refused) + len(done),
            "noisy": rows,
            "failed": len(failures),
            "listing_failed": len(refused),
        },
        "this_run": {
            "attempted": len(todo),
            "skipped_finished": len(done),
            "seconds": round(time.monotonic() - start, 2),
        },
        "config": to_plain(cfg),
    }
    storage.write_text(storage.join(output, "manifest.json"), json.dumps(manifest, indent=2))
    storage.write_text(storage.join(output, "config.yaml"), dump_yaml(resolved or cfg))
    return manifest


def execute(
    cfg: NoiseConfig, todo: list[dict], output: str, noise_files: list[str], noise_dir: str
) -> list[dict[str, Any]]:
    """Run ``NoiseStage`` over ``todo`` (one clip a block); the rows of blocks lost to a crashed
    worker come back as failures with what Ray said, the other clips finish."""
    import ray.data  # heavy: ray, imported on use

    ctx = ray.data.DataContext.get_current()
    saved, ctx.max_errored_blocks = ctx.max_errored_blocks, cfg.max_errored_blocks
    try:
        with BlockErrors() as errors:
            ds = ray.data.from_items(todo, override_num_blocks=len(todo))
            chain = [(NoiseStage, {"noise_files": noise_files, "noise_dir": noise_dir, "output": output})]
            remote = cfg.pool.remote_args(max_restarts=1, max_task_retries=1)
            ds = map_stages(ds, chain, cfg, pool=cfg.pool.bounds(), batch_size=cfg.batch_size, remote=remote)
            rows = [
                r for b in ds.iter_batches(batch_size=None, batch_format="pyarrow") for r in b.to_pylist()
            ]
    finally:
        ctx.max_errored_blocks = saved
    seen = {r["name"] for r in rows}
    said = " | ".join(errors.messages[:3]) or "no error reported"
    reason = f"lost with a crashed worker (native crash or killed); Ray reported: {said}"
    return rows + [
        {**r, "outcome": "failed", "stage": "crash", "reason": reason} for r in todo if r["name"] not in seen
    ]


def write_outputs(output: str, failures: list[dict[str, Any]], subtitles: str | None) -> int:
    """``noise.csv`` from every clip's params, ``failures.csv`` and the copied subtitles; returns the
    number of noisy clips in the table."""
    clips = _stems(storage.join(output, CLIPS), ".mp4")
    markers = storage.list_files(storage.join(output, PARAMS), [".json"], recursive=False, skip_temp=True)
    params = [p for p in (json.loads(storage.read_text(u)) for u in markers) if p["name"] in clips]
    storage.write_text(storage.join(output, "noise.csv"), _csv(TABLE_COLUMNS, params))
    storage.write_text(storage.join(output, "failures.csv"), _csv(FAILURE_COLUMNS, failures))
    if subtitles:
        storage.write_bytes(storage.join(output, "subtitles.csv"), storage.read_bytes(subtitles))
    return len(params)


def _csv(columns: tuple[str, ...], rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(sorted(rows, key=lambda r: r["name"]))
    return buf.getvalue()
