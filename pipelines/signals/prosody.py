"""The audio signal: eGeMAPS functionals of a clip's 16 kHz audio, and a short English clue from them.

openSMILE's eGeMAPSv02 functionals (Eyben et al. 2016, the Geneva minimalistic acoustic parameter
set of affective computing) give 88 numbers per clip; ``FEATURES`` keeps the ones a clue names:
pitch level and range, loudness, speech rate (loudness peaks and voiced segments per second),
jitter, shimmer and harmonics-to-noise ratio. They are measured from the first to the last sound
of the clip (``sounding``: silence before and after is cut), so a long clip with a short line is not
"slow and soft" for its silence. ``describe`` compares them with a reference
(``norms.json`` in this package: what it is and where it comes from is written in the file) by the
thresholds stored there, and says "no speech is heard" when openSMILE found no voiced frame, or
when the only voiced sound is a steady tone (no pitch movement). ``arousal`` is the mean of the
loudness, rate, pitch-level and pitch-range deviations, in the reference's scale steps.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from core.schema import SAMPLE_RATE
from pipelines.signals.files import norms_text

# our name -> eGeMAPSv02 functional
FEATURES = {
    "pitch_semitones": "F0semitoneFrom27.5Hz_sma3nz_amean",
    "pitch_variation": "F0semitoneFrom27.5Hz_sma3nz_stddevNorm",
    "pitch_range_semitones": "F0semitoneFrom27.5Hz_sma3nz_pctlrange0-2",
    "loudness": "loudness_sma3_amean",
    "loudness_peaks_per_s": "loudnessPeaksPerSec",
    "voiced_segments_per_s": "VoicedSegmentsPerSec",
    "mean_voiced_segment_s": "MeanVoicedSegmentLengthSec",
    "jitter": "jitterLocal_sma3nz_amean",
    "shimmer_db": "shimmerLocaldB_sma3nz_amean",
    "hnr_db": "HNRdBACF_sma3nz_amean",
}
FRAME_S = 0.02  # frames of the sounding-span detector
SILENCE_DB = -35.0  # a frame this far below the loudest one is silence
PAD_S = 0.05  # kept around the sounding span
AROUSAL_FROM = ("loudness", "loudness_peaks_per_s", "pitch_semitones", "pitch_range_semitones")


def norms() -> dict[str, Any]:
    """The reference the clue compares with (``pipelines/signals/norms.json``)."""
    return json.loads(norms_text())


class ProsodyReader:
    """openSMILE's eGeMAPSv02 functionals extractor, built once (per Ray actor)."""

    def __init__(self) -> None:
        import opensmile  # heavy: opensmile (its binary, pandas)

        self.smile = opensmile.Smile(
            feature_set=opensmile.FeatureSet.eGeMAPSv02,
            feature_level=opensmile.FeatureLevel.Functionals,
        )

    def features(self, wave: np.ndarray) -> dict[str, float] | None:
        """``FEATURES`` of a 16 kHz mono waveform's sounding span, plus ``arousal`` (None when no
        speech is heard); None when nothing sounds at all."""
        wave = sounding(wave)
        if wave.size < SAMPLE_RATE // 10:
            return None
        row = self.smile.process_signal(wave.astype(np.float32), SAMPLE_RATE).iloc[0]
        out = {k: round(float(row[v]), 4) for k, v in FEATURES.items()}
        out["arousal"] = arousal(out)
        return out


def sounding(wave: np.ndarray) -> np.ndarray:
    """``wave`` from its first to its last frame within ``SILENCE_DB`` of the loudest (empty: silent)."""
    n = int(FRAME_S * SAMPLE_RATE)
    frames = len(wave) // n
    if not frames:
        return wave[:0]
    rms = np.sqrt(np.mean(wave[: frames * n].astype(np.float64).reshape(frames, n) ** 2, axis=1))
    top = float(rms.max())
    if top < 1e-4:  # digital silence or near it
        return wave[:0]
    active = np.flatnonzero(rms >= top * 10 ** (SILENCE_DB / 20))
    pad = int(PAD_S * SAMPLE_RATE)
    return wave[max(active[0] * n - pad, 0) : min((active[-1] + 1) * n + pad, len(wave))]


def is_speech(f: dict[str, float], ref: dict[str, Any] | None = None) -> bool:
    """Voiced frames were found and the pitch moves (a steady tone is not speech)."""
    ref = ref or norms()
    steady = f["pitch_variation"] < ref["thresholds"]["min_speech_pitch_variation"]
    return f["pitch_semitones"] > 0 and not steady


def _z(f: dict[str, float], key: str, ref: dict[str, Any]) -> float:
    m, s = ref["reference"][key]["mean"], ref["reference"][key]["scale"]
    return (f[key] - m) / s if s else 0.0


def arousal(f: dict[str, float], ref: dict[str, Any] | None = None) -> float | None:
    """Mean deviation of loudness, rate, pitch level and range from the reference, in its scales."""
    ref = ref or norms()
    if not is_speech(f, ref):
        return None
    return round(float(np.mean([_z(f, k, ref) for k in AROUSAL_FROM])), 3)


def arousal_level(value: float | None, ref: dict[str, Any] | None = None) -> str | None:
    """ "high", "medium" or "low" by the reference's arousal thresholds (None: no speech)."""
    if value is None:
        return None
    t = (ref or norms())["thresholds"]["arousal"]
    return "high" if value >= t else "low" if value <= -t else "medium"


def _grade(f: dict[str, float], key: str, ref: dict[str, Any], words: tuple[str, str]) -> str | None:
    z, t = _z(f, key, ref), ref["thresholds"]["z"]
    return words[1] if z >= t else words[0] if z <= -t else None


def describe(f: dict[str, float] | None) -> str:
    """The clue, e.g. "loud, fast speech with a high, widely varying pitch; arousal high"."""
    ref = norms()
    if f is None or f["pitch_semitones"] <= 0:
        return "no speech is heard (no voiced sound in the audio)"
    if not is_speech(f, ref):
        return "no speech is heard, only a steady tone with an unmoving pitch"
    loud = _grade(f, "loudness", ref, ("soft", "loud"))
    rate = _grade(f, "loudness_peaks_per_s", ref, ("slow", "fast"))
    level = _grade(f, "pitch_semitones", ref, ("low", "high"))
    rng = _grade(f, "pitch_range_semitones", ref, ("narrowly varying", "widely varying"))
    voice = ", ".join(w for w in (loud, rate) if w) or "moderate"
    pitch = ", ".join(w for w in (level, rng) if w) or "medium"
    text = f"{voice} speech with a {pitch} pitch"
    extra = []
    if _grade(f, "jitter", ref, ("", "rough")) == "rough" or _grade(f, "shimmer_db", ref, ("", "x")):
        extra.append("an unsteady, rough voice quality")
    if _grade(f, "hnr_db", ref, ("breathy", "")) == "breathy":
        extra.append("a breathy voice")
    if extra:
        text += "; " + " and ".join(extra)
    level_word = arousal_level(f["arousal"] if "arousal" in f else arousal(f, ref), ref)
    return f"{text}; vocal arousal {level_word}"
