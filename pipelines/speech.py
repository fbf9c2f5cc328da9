"""Spoken audio for the sample clips: a subtitle read by espeak-ng, as a 16 kHz mono track.

``find_espeak()`` gives the ``espeak-ng`` binary or None; ``speak(espeak, text, seconds, prosody)`` runs it
(an argument list, never a shell; the text goes in on stdin so it can never be read as an option),
reads the WAV it writes (22.05 kHz), resamples it to ``SAMPLE_RATE`` and places it 0.2 s into a
track of exactly ``seconds``. When the speech does not fit, it is spoken once more, faster, and
then trimmed with a short fade. ``Prosody`` is espeak-ng's pitch (``-p``, 0-99), speed (``-s``,
words per minute), amplitude (``-a``, 0-200, 100 = its default: the track's peak is scaled by
amplitude / 100, so a loud voice stays loud after the level is normalised) and voice (``-v``,
``en-us`` by default; ``en+f3`` and the like are other speakers). ``utterance`` gives the speech
alone, espeak-ng's own leading and trailing silence cut off (the long episodes place it at scripted
times). espeak-ng is deterministic, and so is everything done here.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import soundfile as sf

from core.schema import SAMPLE_RATE

ESPEAK = "espeak-ng"
VOICE = "en-us"
WPM = 175  # espeak-ng's default speaking rate (words per minute)
MAX_WPM = 350
LEAD_S = 0.2  # silence before the speech starts
PEAK = 0.5  # peak amplitude of the spoken track at amplitude 100
MAX_PEAK = 0.95


@dataclass(frozen=True)
class Prosody:
    """espeak-ng's voice settings: pitch 0-99 (50 default), speed in wpm, amplitude 0-200 (100),
    and the voice (``-v``: a language such as ``en-us``, optionally ``+variant`` such as ``en+f3``)."""

    pitch: int = 50
    speed: int = WPM
    amplitude: int = 100
    voice: str = VOICE


NEUTRAL = Prosody()


class SpeechError(RuntimeError):
    """espeak-ng failed or wrote no usable audio."""


def find_espeak() -> str | None:
    """The path of ``espeak-ng`` on PATH, or None where it is not installed."""
    return shutil.which(ESPEAK)


def spoken_seconds(espeak: str, text: str, prosody: Prosody = NEUTRAL) -> float:
    """How long ``text`` takes at ``prosody`` (plus the lead-in silence)."""
    return LEAD_S + len(_espeak(espeak, text, prosody)) / SAMPLE_RATE


def speak(espeak: str, text: str, seconds: float, prosody: Prosody = NEUTRAL) -> np.ndarray:
    """``text`` spoken by espeak-ng: float32, ``SAMPLE_RATE`` Hz, mono, exactly ``seconds`` long."""
    n = int(seconds * SAMPLE_RATE)
    room = max(1, n - int(LEAD_S * SAMPLE_RATE))
    voice = _espeak(espeak, text, prosody)
    if len(voice) > room:  # too long for the clip: say it faster, then trim what is still over
        wpm = min(MAX_WPM, math.ceil(prosody.speed * len(voice) / room) + 5)
        voice = _espeak(espeak, text, replace(prosody, speed=wpm))
    voice = voice[:room].copy()
    fade = min(len(voice), SAMPLE_RATE // 50)  # 20 ms, so a trimmed end does not click
    voice[len(voice) - fade :] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    out = np.zeros(n, dtype=np.float32)
    out[n - room : n - room + len(voice)] = voice
    return out


def utterance(espeak: str, text: str, prosody: Prosody = NEUTRAL, floor: float = 0.02) -> np.ndarray:
    """``text`` spoken by espeak-ng (float32, ``SAMPLE_RATE`` Hz) with the silence espeak-ng puts
    before and after it cut off: from the first to the last sample above ``floor`` x the peak."""
    voice = _espeak(espeak, text, prosody)
    loud = np.flatnonzero(np.abs(voice) >= floor * float(np.abs(voice).max()))
    return voice[loud[0] : loud[-1] + 1].copy()


def _espeak(espeak: str, text: str, prosody: Prosody) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp, "speech.wav")
        p = prosody
        cmd = [espeak, "-v", p.voice, "-s", str(p.speed), "-p", str(p.pitch), "-a", str(p.amplitude)]
        cmd += ["-w", str(wav), "--stdin"]
        try:
            subprocess.run(cmd, input=text.encode("utf-8"), check=True, capture_output=True, timeout=30)
            data, rate = sf.read(wav, dtype="float32", always_2d=True)
        except subprocess.CalledProcessError as err:
            detail = err.stderr.decode("utf-8", "replace").strip().splitlines()
            raise SpeechError(f"{ESPEAK} exited {err.returncode}: {detail[-1] if detail else ''}") from err
        except (OSError, subprocess.TimeoutExpired, sf.SoundFileError) as err:
            raise SpeechError(f"{ESPEAK}: {err}") from err
    voice = resample(data.mean(axis=1), rate, SAMPLE_RATE)
    peak = float(np.abs(voice).max()) if len(voice) else 0.0
    if peak < 1e-3:
        raise SpeechError(f"{ESPEAK} wrote silence for {text[:40]!r}")
    level = min(MAX_PEAK, PEAK * prosody.amplitude / 100)
    return (voice * (level / peak)).astype(np.float32)


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Band-limited resampling through the FFT (pure NumPy, deterministic)."""
    if rate_in == rate_out or len(x) == 0:
        return x.astype(np.float32)
    m = int(round(len(x) * rate_out / rate_in))
    spectrum = np.fft.rfft(x.astype(np.float64))
    keep = min(len(spectrum), m // 2 + 1)
    y = np.fft.irfft(spectrum[:keep], m) * (m / len(x))
    return y.astype(np.float32)
