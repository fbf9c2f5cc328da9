"""``emer features``: the frozen-encoder feature cache, a Ray Data job.

The vision tower and the audio encoder are frozen during both training stages, so their outputs
are the same every epoch. This job runs them once over a media table (EMER-Coarse layout) on a pool
of actors and writes Parquet rows that keep every text column (``name``, subtitles, description,
labels) and replace ``frames`` / ``audio`` by ``video_embeds`` [T, N, D] + ``frame_mask`` and
``audio_embeds`` [C, M, D] + ``clip_mask``. Training with ``train.use_cached_features`` reads them
instead of running the encoders (AffectGPT is then built without its encoders).

A row whose media cannot be decoded keeps all-masked features and an ``error`` reason, and is left
out of training. Resume: names already present in the output are skipped on a rerun; ``_features.json``
(written last) records the encoder settings, and a cache made with other settings is refused.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np

from affect_model.config import ModelConfig
from affect_model.train_config import TrainConfig
from affect_model.train_task import RAW_COLUMNS, absolute_paths, batch_rows
from cluster import storage

log = logging.getLogger(__name__)
META_FILE = "_features.json"
ENCODER_KEYS = ("vision_model", "audio_model", "encoder_dtype", "frames", "video_tokens", "audio_clips",
                "clip_seconds", "sample_rate", "audio_tokens", "use_video", "use_audio")


def encoder_settings(cfg: ModelConfig) -> dict:
    """The model settings that determine the cached features (a cache is valid only for these)."""
    return {k: getattr(cfg, k) for k in ENCODER_KEYS}


class FeatureEncoder:
    """Ray Data actor: media rows -> rows with frozen-encoder outputs (one model load per actor)."""

    def __init__(self, model_cfg: ModelConfig, dtype: str = "float32") -> None:
        import torch

        from affect_model import encoders
        from affect_model.media import MediaProcessor

        self.cfg = model_cfg
        self.dtype = np.float16 if dtype == "float16" else np.float32
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        enc_dtype = encoders.torch_dtype(model_cfg.encoder_dtype)
        self.media = MediaProcessor(model_cfg)
        self.vision = self.audio = None
        if model_cfg.use_video:
            self.vision = encoders.VisionEncoder(model_cfg.vision_model, enc_dtype,
                                                 model_cfg.video_tokens).to(self.device).eval()
        if model_cfg.use_audio:
            self.audio = encoders.AudioEncoder(model_cfg.audio_model, enc_dtype, model_cfg.audio_tokens,
                                               model_cfg.clip_seconds).to(self.device).eval()

    def _inputs(self, row: dict) -> tuple[dict, str]:
        """Encoder inputs of one row; a bad row gets empty (all-masked) inputs and a reason."""
        out: dict = {}
        try:
            if self.vision is not None:
                out["pixels"], out["frame_mask"] = self.media.video(list(row.get("frames") or []))
            if self.audio is not None:
                out["audio"], out["clip_mask"] = self.media.audio(row.get("audio"))
            return out, ""
        except Exception as err:  # one bad clip must not sink the batch
            reason = f"{type(err).__name__}: {err}"[:300]
            if self.vision is not None:
                out["pixels"], out["frame_mask"] = self.media.video([])
            if self.audio is not None:
                out["audio"], out["clip_mask"] = self.media.audio(None)
            return out, reason

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        import torch

        rows = batch_rows(batch)
        prepared = [self._inputs(r) for r in rows]
        out: dict[str, Any] = {k: _arrow_friendly(v) for k, v in batch.items()
                               if k not in RAW_COLUMNS and k != "error"}
        out["error"] = np.array([reason for _, reason in prepared], dtype=object)
        with torch.no_grad():
            if self.vision is not None:
                pixels = torch.stack([p["pixels"] for p, _ in prepared]).to(self.device)
                out["video_embeds"] = self.vision(pixels).float().cpu().numpy().astype(self.dtype)
                out["frame_mask"] = torch.stack([p["frame_mask"] for p, _ in prepared]).numpy()
            if self.audio is not None:
                audio = torch.stack([p["audio"] for p, _ in prepared]).to(self.device)
                out["audio_embeds"] = self.audio(audio).float().cpu().numpy().astype(self.dtype)
                out["clip_mask"] = torch.stack([p["clip_mask"] for p, _ in prepared]).numpy()
        return out


def _arrow_friendly(column: np.ndarray) -> np.ndarray:
    """List columns (labels) come in as object arrays of numpy arrays, which Arrow would pickle:
    hand them back as object arrays of Python lists."""
    if column.dtype != object:
        return column
    out = np.empty(len(column), dtype=object)
    for i, value in enumerate(column):
        out[i] = value.tolist() if isinstance(value, np.ndarray) else value
    return out


def _capped_retries() -> dict:
    # a crashing actor must not hang the job (stack notes): restart it a bounded number of times
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
        raise ValueError(f"{out_uri}: cached features were made with other encoder settings "
                         f"({', '.join(changed)}); delete that folder or set train.features_uri to a new one")


def build_features(model_cfg: ModelConfig, cfg: TrainConfig) -> dict:
    """Run the feature job; returns counts and the output URI. Needs a connected Ray."""
    import ray

    from affect_model.train_data import count_rows, read_parquet

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
    encoded = ds.map_batches(
        FeatureEncoder, fn_constructor_args=(model_cfg, fc.dtype), batch_size=fc.batch_size,
        compute=ray.data.ActorPoolStrategy(size=fc.actors), num_cpus=fc.cpus_per_actor,
        num_gpus=fc.gpus_per_actor or None, ray_remote_args_fn=_capped_retries)
    fs, path = storage.filesystem(out_uri)
    storage.makedirs(out_uri)
    todo = total - len(done)
    if todo > 0:
        encoded.write_parquet(path, filesystem=fs)
    failed = _count_failed(out_uri)
    meta = {"source": source, "rows": total, "encoded_now": todo, "skipped_done": len(done),
            "failed": failed, "encoders": settings, "dtype": fc.dtype}
    storage.write_text(storage.join(out_uri, META_FILE), json.dumps(meta, indent=2))
    log.info("features: %d rows in %s (%d new, %d already cached, %d failed)", total, out_uri, todo,
             len(done), failed)
    return {"output": out_uri, **meta}


def _count_failed(out_uri: str) -> int:
    table = storage.read_table(out_uri, columns=["error"])
    return sum(1 for e in table.column("error").to_pylist() if e)
