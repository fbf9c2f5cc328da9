"""The signal audio role with the real components: openSMILE's eGeMAPS on espeak-ng clips spoken with
the sample set's angry and sad prosodies differs in the expected direction, the clue words follow,
silence and a steady tone are "no speech", and silence around a line does not change its numbers."""

from __future__ import annotations

import numpy as np
import pytest

from core.schema import AUDIO_FEATURE_FIELDS, SAMPLE_RATE, encode_audio
from pipelines.samples import PROSODY
from pipelines.signals import prosody
from pipelines.signals.clues import AudioSignal
from pipelines.speech import find_espeak, speak, spoken_seconds

needs_espeak = pytest.mark.skipif(find_espeak() is None, reason="espeak-ng is not on PATH")
ANGRY = "Why do you always treat me like this?"  # scripted hurt / angry
SAD = "Forget it, I don't want to talk about it anymore."  # scripted disappointed (sad prosody)


@pytest.fixture(scope="module")
def reader():
    return prosody.ProsodyReader()


def spoken(text: str, pad_s: float = 0.3) -> np.ndarray:
    espeak, p = find_espeak(), PROSODY[text]
    return speak(espeak, text, spoken_seconds(espeak, text, p) + pad_s, p)


@needs_espeak
def test_angry_and_sad_prosody_differ_in_loudness_rate_and_pitch(reader):
    angry, sad = reader.features(spoken(ANGRY)), reader.features(spoken(SAD))
    assert angry["loudness"] > 1.5 * sad["loudness"]
    assert angry["loudness_peaks_per_s"] > sad["loudness_peaks_per_s"]
    assert angry["voiced_segments_per_s"] > sad["voiced_segments_per_s"]
    assert angry["pitch_semitones"] > sad["pitch_semitones"] + 3  # semitones above 27.5 Hz
    assert angry["arousal"] > 0.5 > -0.5 > sad["arousal"]
    a, s = prosody.describe(angry), prosody.describe(sad)
    assert a.startswith("loud") and "high pitch" in a and a.endswith("vocal arousal high"), a
    assert s.startswith("soft, slow speech with a low") and s.endswith("vocal arousal low"), s


@needs_espeak
def test_silence_around_the_line_does_not_change_its_numbers(reader):
    tight, padded = reader.features(spoken(ANGRY)), reader.features(spoken(ANGRY, pad_s=4.0))
    for key in ("loudness", "loudness_peaks_per_s", "pitch_semitones"):
        assert padded[key] == pytest.approx(tight[key], rel=0.05), key


def test_a_clip_without_speech_gets_a_clue_that_says_so(reader):
    t = np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    features = reader.features(tone)
    assert features["pitch_semitones"] > 0 and features["arousal"] is None  # voiced, but not speech
    assert prosody.describe(features) == "no speech is heard, only a steady tone with an unmoving pitch"
    signal = AudioSignal()
    clue, numbers = signal.clue(encode_audio(np.zeros(3 * SAMPLE_RATE, dtype=np.float32)))
    assert clue == "no speech is heard (no voiced sound in the audio)"
    assert numbers == dict.fromkeys(AUDIO_FEATURE_FIELDS)  # measured, found nothing
    assert signal.clue(None)[0].startswith("no speech is heard")


@needs_espeak
def test_the_audio_clue_and_its_numbers_come_from_the_flac_column():
    clue, numbers = AudioSignal().clue(encode_audio(spoken(SAD)))
    assert set(numbers) == set(AUDIO_FEATURE_FIELDS)
    assert clue == prosody.describe(numbers) and "soft" in clue


def test_the_norms_file_states_its_source_and_covers_every_feature():
    ref = prosody.norms()
    assert "espeak-ng" in ref["source"] and "not a human population norm" in ref["source"]
    assert set(ref["reference"]) == set(prosody.FEATURES)
    assert all(v["scale"] > 0 for v in ref["reference"].values())
