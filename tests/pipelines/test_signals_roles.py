"""``backend: signal`` as a role config: allowed for the audio and video clue roles only, refused by the
LLM layer, no model file to find, provenance naming the components; the clue stages (no Ray) fill
the clue and number columns on the sample clips, and the sink's schema types hold them."""

from __future__ import annotations

import pytest

from core.config import ConfigError
from core.llm import LLMConfig, create_backend
from core.schema import (
    AUDIO_FEATURE_FIELDS,
    AUDIO_FEATURES,
    FACE_EXPRESSIONS,
    SIGNAL_COLUMNS,
    encode_audio,
    rows_to_table,
)
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
    assert rows[3]["audio_clue"].startswith("no speech is heard")
    assert rows[3][AUDIO_FEATURES] == dict.fromkeys(AUDIO_FEATURE_FIELDS)
    assert rows[3]["video_clue"] == (
        "no face is visible in any of the 0 sampled frames, so no facial expression can be read"
    )
    table = rows_to_table(rows, ("name", *SIGNAL_COLUMNS))  # the schema's struct types hold them
    assert table.schema.field(AUDIO_FEATURES).type.num_fields == 11


class NoLLM:
    """A backend that must not be asked."""

    steps: list = []

    def generate(self, requests):
        raise AssertionError(f"an LLM was asked: {[r.prompt for r in requests]}")


def tone_clip(path, seconds: float = 4.0):
    """A clip whose audio is a 440 Hz tone (no speech) and whose frames show no face."""
    import subprocess

    import numpy as np
    import soundfile as sf

    from pipelines.samples import require_ffmpeg

    t = np.arange(int(seconds * 16000)) / 16000
    sf.write(path.with_suffix(".wav"), (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    frames = np.full((int(seconds * 10), 96, 128, 3), 90, np.uint8)
    frames[:, ::12] = 200  # stripes
    cmd = [require_ffmpeg(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "128x96"]
    cmd += ["-r", "10", "-i", "-", "-i", str(path.with_suffix(".wav")), "-c:a", "aac", "-c:v", "libx264"]
    subprocess.run([*cmd, "-pix_fmt", "yuv420p", "-shortest", str(path)], input=frames.tobytes(), check=True)
    return path


def test_a_clip_without_speech_face_or_subtitle_gets_no_invented_emotion(tmp_path):
    from core.schema import DESCRIPTION_EN, DESCRIPTION_ZH
    from pipelines.signals import backend as signals
    from pipelines.stages import DisambiguateStage, OVLabelStage, TranslateStage

    cfg = load_run_config("demo").annotate
    d = media.decode_clip(str(tone_clip(tmp_path / "tone.mp4")), cfg, None)
    row = {"name": "tone", "outcome": "ok", "audio": encode_audio(d.audio), "frames": d.frames}
    rows = [{**row, "duration_s": d.duration_s, "subtitle": ""}, {**row, "duration_s": 4, "subtitle": "Hi!"}]
    for cls in (AudioClueStage, VideoClueStage):
        stage = cls(cfg)
        stage.setup()
        stage.process(rows)
    assert rows[0]["audio_clue"] == "no speech is heard, only a steady tone with an unmoving pitch"
    assert rows[0]["video_clue"].startswith("no face is visible in any of the 4 sampled frames")
    assert signals.no_evidence(rows[0]) and not signals.no_evidence(rows[1])  # words are evidence
    for cls in (DisambiguateStage, TranslateStage, OVLabelStage):  # no LLM is asked for the first
        stage = cls(cfg)
        stage.configure()
        stage.backend = NoLLM()
        stage.process(rows[:1])
    assert rows[0]["outcome"] == "ok" and rows[0]["ov_labels"] == [] and rows[0]["ov_raw"] == "[]"
    assert rows[0][DESCRIPTION_EN].startswith("No speech is heard, no face is visible")
    assert rows[0][DESCRIPTION_ZH] == signals.NO_EVIDENCE[DESCRIPTION_ZH]
    # an LLM role's clue (no numbers) is never taken for "nothing measured"
    assert not signals.no_evidence({**rows[0], AUDIO_FEATURES: None})


def test_the_card_says_what_made_each_clue_and_that_sample_faces_are_not_real(sample_clips, tmp_path):
    from pipelines import card

    steps = provenance.steps(load_run_config("demo").annotate)
    text = card._clue_text(steps)
    assert text.startswith("The audio clue is measured, not generated (backend signal): openSMILE's")
    assert "The video clue is measured, not generated" in text and "LLM" not in text
    assert card._generated_samples(str(sample_clips.root / "clips"))  # samples.json beside the clips
    assert not card._generated_samples(str(tmp_path / "clips"))
    llm = provenance.steps(load_run_config("demo", ["annotate.audio.backend=transformers"]).annotate)
    assert card._clue_text(llm).startswith("An audio LLM describes")
