"""``emer features``: the frozen-encoder feature cache, a Ray Data job.

The vision tower and the audio encoder are frozen during both training stages, so their outputs
are the same every epoch. This job runs them once over a media table (EMER-Coarse layout) on a pool
of actors and writes Parquet rows that keep every text column (``name``, subtitles, description,
labels) and replace ``frames`` / ``audio`` by ``video_embeds`` [T, N, D] + ``frame_mask`` and
``audio_embeds`` [C, M, D] + ``clip_mask``. Training with ``train.use_cached_features`` reads them
instead of running the encoders (AffectGPT is then built without its encoders).

The encoder is a ``core.stage.Stage`` run by ``map_stages`` like every annotation stage. A row whose
media cannot be decoded keeps all-masked features, is recorded as failed with its reason (``outcome``,
``stage``, ``reason``, and ``error`` for the training reader), and is left out of training. Resume: names
already present in the output are skipped on a rerun; ``_features.json``
(written last) records the encoder settings, and a cache made with other settings is refused.
"""

from __future__ import annotations

import json
import logging

import numpy as np

from affect_model.model import encoders
from affect_model.model.config import ModelConfig
from affect_model.model.media import MediaProcessor
from affect_model.train.config import TrainConfig
from affect_model.train.datasets import count_rows, read_parquet
from affect_model.train.task import RAW_COLUMNS, absolute_paths
from core import storage
from core.stage import Stage, fail, map_stages

log = logging.getLogger(__name__)
META_FILE = "_features.json"
ENCODER_KEYS = (
    "vision_model",
    "audio_model",
    "encoder_dtype",
    "frames",
    "video_tokens",
    "audio_clips",
    "clip_seconds",
    "sample_rate",
    "audio_tokens",
    "audio_layers",
    "audio_window",
    "use_video",
    "use_audio",
)


def encoder_settings(cfg: ModelConfig) -> dict:
    """The model settings that determine the cached features (a cache is valid only for these)."""
    return {k: getattr(cfg, k) for k in ENCODER_KEYS}


class FeatureEncoder(Stage):
    """Stage: media rows -> rows with frozen-encoder outputs (one model load per actor).

    ``cfg`` is the ``ModelConfig``; ``dtype`` (kwarg) the stored float type. A row whose media cannot
    be prepared is recorded as failed (``outcome``/``stage``/``reason``, and ``error`` for the
    training reader) and keeps all-masked features, so the table keeps one row per input clip.
    """

    name = "features"
    needs = ("name",)
    produces = ("video_embeds", "frame_mask", "audio_embeds", "clip_mask", "error")
    batch_format = "numpy"

    def setup(self) -> None:
        import torch  # heavy: torch, imported on use (the actor process only)

        cfg = self.cfg
        self.dtype = np.float16 if self.options.get("dtype") == "float16" else np.float32
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        enc_dtype = encoders.torch_dtype(cfg.encoder_dtype)
        self.media = MediaProcessor(cfg)
        self.vision = self.audio = None
        if cfg.use_video:
            self.vision = (
                encoders.VisionEncoder(cfg.vision_model, enc_dtype, cfg.video_tokens).to(self.device).eval()
            )
        if cfg.use_audio:
            self.audio = encoders.AudioEncoder.from_config(cfg, enc_dtype).to(self.device).eval()

    def _inputs(self, row: dict) -> dict:
        """Encoder inputs of one row; a bad row is failed and gets empty (all-masked) inputs."""
        out: dict = {}
        try:
            if self.vision is not None:
                out["pixels"], out["frame_mask"] = self.media.video(list(row.get("frames") or []))
            if self.audio is not None:
                out["audio"], out["clip_mask"] = self.media.audio(row.get("audio"))
            row["error"] = ""
            return out
        except Exception as err:  # noqa: BLE001 - one bad clip must not sink the batch
            fail(row, self.name, f"{type(err).__name__}: {err}"[:300])
            row["error"] = row["reason"]
            if self.vision is not None:
                out["pixels"], out["frame_mask"] = self.media.video([])
            if self.audio is not None:
                out["audio"], out["clip_mask"] = self.media.audio(None)
            return out

    def process(self, rows: list[dict]) -> None:
        import torch  # heavy: torch, imported on use

        prepared = [self._inputs(r) for r in rows]
        with torch.no_grad():
            if self.vision is not None:
                embeds = self.vision(torch.stack([p["pixels"] for p in prepared]).to(self.device))
                self._put(rows, "video_embeds", embeds.float().cpu().numpy().astype(self.dtype))
                self._put(rows, "frame_mask", torch.stack([p["frame_mask"] for p in prepared]).numpy())
            if self.audio is not None:
                embeds = self.audio(torch.stack([p["audio"] for p in prepared]).to(self.device))
                self._put(rows, "audio_embeds", embeds.float().cpu().numpy().astype(self.dtype))
                self._put(rows, "clip_mask", torch.stack([p["clip_mask"] for p in prepared]).numpy())

    @staticmethod
    def _put(rows: list[dict], column: str, values: np.ndarray) -> None:
        for row, value in zip(rows, values):
            row[column] = value

    def output_columns(self, rows: list[dict]) -> list[str]:
        return [c for c in super().output_columns(rows) if c not in RAW_COLUMNS]


def _capped_retries() -> dict:
    """A crashing actor must not hang the job (stack notes): restart it a bounded number of times."""
    return {"max_restarts": 2, "max_task_retries": 2}


class _Skip:
    """Drop the rows whose names are already cached (an Arrow filter, picklable)."""

    def __init__(self, names: set[str]) -> None:
        self.names = sorted(names)

    def __call__(self, table):
        import pyarrow as pa
        import pyarrow.compute as pc

        return table.filter(pc.invert(pc.is_in(table.column("name"), value_set=pa.array(self.names))))


def done_names(out_uri: str) -> set[str]:
    """Names already in the cache; unreadable (partly written) files are removed."""
    import pyarrow.parquet as pq

    names: set[str] = set()
    for uri in storage.list_files(out_uri, [".parquet"]):
        fs, path = storage.filesystem(uri)
        try:
            names.update(pq.read_table(path, filesystem=fs, columns=["name"]).column("name").to_pylist())
        except Exception as err:  # a file cut short by a crash: redo its rows
            log.warning("%s: unreadable (%s); its rows will be encoded again", uri, err)
            storage.delete(uri)
    return names


def _check_meta(out_uri: str, settings: dict) -> None:
    meta_uri = storage.join(out_uri, META_FILE)
    if not storage.exists(meta_uri):
        return
    old = json.loads(storage.read_text(meta_uri)).get("encoders", {})
    changed = sorted(k for k in settings if old.get(k) != settings[k])
    if changed:
        raise ValueError(
            f"{out_uri}: cached features were made with other encoder settings "
            f"({', '.join(changed)}); delete that folder or set train.features_uri to a new one"
        )


def build_features(model_cfg: ModelConfig, cfg: TrainConfig) -> dict:
    """Run the feature job; returns counts and the output URI. Needs a connected Ray."""

    model_cfg, cfg = absolute_paths(model_cfg, cfg)
    source = cfg.features.source_uri or cfg.coarse_uri
    out_uri = cfg.features_uri
    if not out_uri:
        raise ValueError("train.features_uri = '': name the folder for the cached features")
    settings = encoder_settings(model_cfg)
    _check_meta(out_uri, settings)
    done = done_names(out_uri)
    key = "train.features.source_uri" if cfg.features.source_uri else "train.coarse_uri"
    ds = read_parquet(source, key)
    total = count_rows(source, key)
    if done:
        ds = ds.map_batches(_Skip(done), batch_format="pyarrow", batch_size=None)
    fc = cfg.features
    remote = fc.pool.remote_args(**_capped_retries())
    encoded = map_stages(
        ds,
        [(FeatureEncoder, {"dtype": fc.dtype})],
        model_cfg,
        pool=fc.pool.bounds(),
        batch_size=fc.batch_size,
        remote=remote,
    )
    fs, path = storage.filesystem(out_uri)
    storage.makedirs(out_uri)
    todo = total - len(done)
    if todo > 0:
        encoded.write_parquet(path, filesystem=fs)
    failed = _count_failed(out_uri)
    meta = {
        "source": source,
        "rows": total,
        "encoded_now": todo,
        "skipped_done": len(done),
        "failed": failed,
        "encoders": settings,
        "dtype": fc.dtype,
    }
    storage.write_text(storage.join(out_uri, META_FILE), json.dumps(meta, indent=2))
    log.info(
        "features: %d rows in %s (%d new, %d already cached, %d failed)",
        total,
        out_uri,
        todo,
        len(done),
        failed,
    )
    return {"output": out_uri, **meta}


def _count_failed(out_uri: str) -> int:
    table = storage.read_table(out_uri, columns=["error"])
    return sum(1 for e in table.column("error").to_pylist() if e)
