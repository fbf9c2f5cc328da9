"""``backend: signal`` as a role config: allowed for the audio and video clue roles only, refused by the
LLM layer, no model file to find, provenance naming the components; the clue stages (no Ray) fill
the clue and number columns on the sample clips, and the sink's schema types hold them."""

from __future__ import annotations

import pytest

from core.config import ConfigError
from core.llm import LLMConfig, create_backend
from core.schema import AUDIO_FEATURES, FACE_EXPRESSIONS, SIGNAL_COLUMNS, encode_audio, rows_to_table
from emer.runconfig import load_run_config, model_keys
from pipelines import media, provenance
from pipelines.config import AnnotateConfig
from pipelines.sink import sample_columns
from pipelines.stages import AudioClueStage, VideoClueStage

SIGNAL = LLMConfig(backend="signal", model="measured")


def test_signal_is_a_clue_role_backend_only():
    assert AnnotateConfig(audio=SIGNAL, video=SIGNAL).problems() == []
    with pytest.raises(ConfigError, match="annotate.text.backend = 'signal': only the audio and video"):
        AnnotateConfig(text=SIGNAL)
    with pytest.raises(ValueError, match="'signal' is no language model"):
        create_backend(SIGNAL, "text")
    with pytest.raises(ConfigError, match="ov.backend = 'signal'"):
        load_run_config("demo", ["annotate.ov.backend=signal"])


def test_the_demo_measures_its_clues_and_says_so_in_provenance():
    run = load_run_config("demo")
    assert (run.annotate.audio.backend, run.annotate.video.backend) == ("signal", "signal")
    keys = [k for k, _ in model_keys(run, ["annotate"])]
    assert "annotate.audio.model" not in keys and "annotate.video.model" not in keys  # nothing to find
    steps = provenance.steps(run.annotate)
    audio, video = steps["audio_clue"], steps["video_clue"]
    assert audio["backend"] == video["backend"] == "signal"
    assert audio["revision"].startswith("opensmile 2.") and "facenet-pytorch 2.6.0" in video["revision"]
    assert "fer 25.10.3" in video["revision"]
    assert audio["prompt"] == "none: norms.json" and len(audio["prompt_hash"]) == 16
    assert set(SIGNAL_COLUMNS) <= set(sample_columns(run.annotate))


def test_the_clue_stages_measure_the_sample_clips(sample_clips):
    cfg = load_run_config("demo").annotate
    rows = []
    for name in sample_clips.clips[:3]:
        d = media.decode_clip(str(sample_clips.root / "clips" / f"{name}.mp4"), cfg, None)
        media_ = {"audio": encode_audio(d.audio), "frames": d.frames, "duration_s": 3}
        rows.append({"name": name, "outcome": "ok", **media_})
    rows.append({"name": "silent", "outcome": "ok", "audio": None, "frames": [], "duration_s": 3})
    for cls in (AudioClueStage, VideoClueStage):
        stage = cls(cfg)
        stage.setup()
        stage.process(rows)
    assert [r["outcome"] for r in rows] == ["ok"] * 4
    for r in rows[:3]:  # espeak-ng speech (or synthetic syllables): spoken, with numbers
        assert "speech" in r["audio_clue"] and r[AUDIO_FEATURES]["loudness"] > 0
        assert len(r[FACE_EXPRESSIONS]["faces_per_frame"]) == cfg.frames
    assert rows[3]["audio_clue"].startswith("no speech is heard") and rows[3][AUDIO_FEATURES] is None
    assert rows[3]["video_clue"] == (
        "no face is visible in any of the 0 sampled frames, so no facial expression can be read"
    )
    table = rows_to_table(rows, ("name", *SIGNAL_COLUMNS))  # the schema's struct types hold them
    assert table.schema.field(AUDIO_FEATURES).type.num_fields == 11
