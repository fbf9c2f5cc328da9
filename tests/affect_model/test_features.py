"""``emer features``: the frozen-encoder cache job (Ray Data actors): outputs equal the encoders' own,
a broken clip becomes an error row, a rerun skips what is cached, a cache of other encoders is refused."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from train_helpers import rows

from affect_model.jobs.features import META_FILE, build_features
from affect_model.train.config import FeaturesConfig, TrainConfig
from affect_model.train.data import write_coarse
from core import storage

pytestmark = pytest.mark.slow


@pytest.mark.timeout(300)
def test_feature_cache_matches_encoders_records_failures_and_resumes(ray_local, tiny_cfg, tmp_path):
    from affect_model.model.encoders import AudioEncoder, VisionEncoder
    from affect_model.train.data import MediaProcessor

    data = rows(5)
    data[3]["frames"] = [b"not a jpeg"]  # a broken clip
    source = str(tmp_path / "media.parquet")
    write_coarse(data, source)
    cfg = TrainConfig(
        coarse_uri=source, features_uri=str(tmp_path / "features"), features=FeaturesConfig(batch_size=2)
    )
    summary = build_features(tiny_cfg, cfg)
    assert (summary["rows"], summary["encoded_now"], summary["failed"]) == (5, 5, 1)

    table = pq.read_table(cfg.features_uri).to_pylist()
    got = {r["name"]: r for r in table}
    assert sorted(got) == sorted(r["name"] for r in data)
    assert "frames" not in table[0] and "audio" not in table[0]
    assert got["clip_0003"]["error"].startswith("ValueError") and not any(got["clip_0003"]["frame_mask"])
    assert got["clip_0001"]["ov_labels"] == ["sad", "worried"] and got["clip_0001"]["error"] == ""
    # the cached tensors are what the frozen encoders give for the same sample
    media = MediaProcessor(tiny_cfg)
    vision = VisionEncoder(tiny_cfg.vision_model, torch.float32, tiny_cfg.video_tokens)
    audio = AudioEncoder(tiny_cfg.audio_model, torch.float32, tiny_cfg.audio_tokens, tiny_cfg.clip_seconds)
    pixels, mask = media.video(data[1]["frames"])
    feats, clip_mask = media.audio(data[1]["audio"])
    np.testing.assert_allclose(got["clip_0001"]["video_embeds"], vision(pixels[None])[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(got["clip_0001"]["audio_embeds"], audio(feats[None])[0].numpy(), atol=1e-5)
    assert got["clip_0001"]["frame_mask"].tolist() == mask.tolist()
    assert got["clip_0001"]["clip_mask"].tolist() == clip_mask.tolist()

    # a rerun over the same source encodes nothing again; a new row is added on its own
    write_coarse(data + rows(6)[5:], source)
    again = build_features(tiny_cfg, cfg)
    assert (again["rows"], again["encoded_now"], again["skipped_done"]) == (6, 1, 5)
    assert sorted(pq.read_table(cfg.features_uri, columns=["name"]).column("name").to_pylist()) == [
        f"clip_{i:04d}" for i in range(6)
    ]
    assert storage.exists(storage.join(cfg.features_uri, META_FILE))

    # features of other encoders are not silently mixed in
    with pytest.raises(ValueError, match="other encoder settings.*frames"):
        build_features(tiny_cfg.replace(frames=2), cfg)


def test_missing_inputs_are_named(tiny_cfg, tmp_path):
    with pytest.raises(ValueError, match="train.features_uri"):
        build_features(tiny_cfg, TrainConfig(coarse_uri=str(tmp_path / "x.parquet")))
    with pytest.raises(FileNotFoundError, match="train.coarse_uri"):
        build_features(
            tiny_cfg, TrainConfig(coarse_uri=str(tmp_path / "x.parquet"), features_uri=str(tmp_path / "f"))
        )
