"""Speaker embeddings and the merging of consecutive VAD segments spoken by one voice.

The encoder is resemblyzer's GE2E speaker encoder (``resemblyzer/pretrained.pt``, 17 MB, shipped in
its wheel; a 3-layer LSTM over 40-band mel frames, a linear layer, ReLU, L2 norm: 256 numbers a
voice). resemblyzer's own package is not imported: its ``__init__`` pulls librosa and webrtcvad in,
and its loader calls ``torch.load`` without ``weights_only``. Here the file is read with
``torch.load(weights_only=True)`` (tensors only, never pickled code) into an equal module of our own,
and the mel spectrogram is computed in NumPy exactly as resemblyzer asks librosa for it (25 ms Hann
window, 10 ms hop, 40 Slaney mel bands, power spectrum, not log). As in resemblyzer, an utterance is
cut into 1.6 s partials at 1.3 a second whose embeddings are averaged; quiet audio is first raised
to -30 dBFS. Its webrtcvad silence trimming is left out: VAD segments are already speech. Checked
once (2026-12) against librosa 0.11 and resemblyzer's own ``VoiceEncoder.embed_utterance``: mel
filters within 1e-9, mel spectrogram within 1e-7 (relative), embedding cosine 1.0000.

``merge_same_speaker`` walks the segments in order and joins the next one to the current group when
the pause is at most ``max_gap_s`` and the cosine similarity of its embedding to the group's (the
normalised mean of its parts) is at least ``threshold``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from core.config import Config, check_range
from pipelines.clips.files import package_file
from pipelines.clips.segment import Segment
from pipelines.speech import resample

log = logging.getLogger(__name__)

RATE = 16000
N_FFT, HOP, N_MELS = 400, 160, 40  # 25 ms window, 10 ms hop, 40 bands (resemblyzer's hparams)
PARTIAL_FRAMES = 160  # 1.6 s of mel frames per partial utterance
PARTIALS_PER_S = 1.3
MIN_COVERAGE = 0.75  # a last partial needs this share of real audio (else it is dropped)
TARGET_DBFS = -30.0
INT16_MAX = 2**15 - 1


@dataclass(frozen=True)
class SpeakerConfig(Config):
    """When two consecutive VAD segments are one voice (``clips.speakers``)."""

    threshold: float = 0.75  # cosine similarity of the GE2E embeddings needed to join
    max_gap_s: float = 1.0  # a longer pause always ends the segment

    def problems(self) -> list[str]:
        out: list[str] = []
        check_range(out, "threshold", self.threshold, -1.0, 1.0)
        check_range(out, "max_gap_s", self.max_gap_s, 0.0, 60.0)
        return out


class SpeakerEncoder:
    """resemblyzer's GE2E encoder, loaded safely, once per actor. ``embed`` -> 256 unit-norm floats."""

    def __init__(self) -> None:
        import torch  # heavy: torch

        path = package_file("resemblyzer", "pretrained.pt")
        state = torch.load(path, map_location="cpu", weights_only=True)["model_state"]
        self.net = _encoder_module(torch)
        self.net.load_state_dict({k: v for k, v in state.items() if not k.startswith("similarity_")})
        self.net.eval()
        self.filters = mel_filters(RATE, N_FFT, N_MELS)
        self.torch = torch

    def embed(self, audio_16k: np.ndarray) -> np.ndarray:
        """The voice of ``audio_16k`` (mono, 16 kHz) as a unit vector of 256 float32."""
        wav = normalize_volume(np.asarray(audio_16k, dtype=np.float32))
        wav_slices, mel_slices = partial_slices(len(wav))
        wav = np.pad(wav, (0, max(0, wav_slices[-1].stop - len(wav))))
        mel = mel_spectrogram(wav, self.filters)
        mels = np.stack([mel[s] for s in mel_slices])
        with self.torch.no_grad():
            partials = self.net(self.torch.from_numpy(mels)).numpy()
        mean = partials.mean(axis=0)
        return (mean / np.linalg.norm(mean)).astype(np.float32)


def _encoder_module(torch):
    class GE2E(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = torch.nn.LSTM(N_MELS, 256, 3, batch_first=True)
            self.linear = torch.nn.Linear(256, 256)

        def forward(self, mels):
            _, (hidden, _) = self.lstm(mels)
            raw = torch.relu(self.linear(hidden[-1]))
            return raw / torch.norm(raw, dim=1, keepdim=True).clamp_min(1e-12)

    return GE2E()


def normalize_volume(wav: np.ndarray, target_dbfs: float = TARGET_DBFS) -> np.ndarray:
    """Raise (never lower) the level to ``target_dbfs``, as resemblyzer does before embedding."""
    power = float(np.mean((wav * INT16_MAX) ** 2)) if len(wav) else 0.0
    if power <= 0:
        return wav
    change = target_dbfs - 10 * np.log10(power / INT16_MAX**2)
    return wav * np.float32(10 ** (change / 20)) if change > 0 else wav


def partial_slices(n_samples: int) -> tuple[list[slice], list[slice]]:
    """resemblyzer's ``compute_partial_slices`` at rate 1.3 and coverage 0.75."""
    n_frames = int(np.ceil((n_samples + 1) / HOP))
    step = int(np.round((RATE / PARTIALS_PER_S) / HOP))
    starts = range(0, max(1, n_frames - PARTIAL_FRAMES + step + 1), step)
    mel_slices = [slice(i, i + PARTIAL_FRAMES) for i in starts]
    wav_slices = [slice(s.start * HOP, s.stop * HOP) for s in mel_slices]
    last = wav_slices[-1]
    if (n_samples - last.start) / (last.stop - last.start) < MIN_COVERAGE and len(mel_slices) > 1:
        return wav_slices[:-1], mel_slices[:-1]
    return wav_slices, mel_slices


def mel_filters(rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """librosa's ``filters.mel`` (Slaney mel scale and area normalisation): [n_mels, n_fft//2+1]."""
    fft_freqs = np.linspace(0, rate / 2, 1 + n_fft // 2)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(rate / 2), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]
    return weights.astype(np.float32)


def _hz_to_mel(f):
    f = np.asarray(f, dtype=np.float64)
    log_part = 15.0 + np.log(np.maximum(f, 1000.0) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log_part, f / (200.0 / 3))


def _mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    log_part = 1000.0 * np.exp((np.log(6.4) / 27.0) * (np.maximum(m, 15.0) - 15.0))
    return np.where(m >= 15.0, log_part, m * (200.0 / 3))


def mel_spectrogram(wav: np.ndarray, filters: np.ndarray) -> np.ndarray:
    """Power mel spectrogram, centred zero-padded frames (librosa's defaults): [frames, n_mels]."""
    padded = np.pad(wav.astype(np.float32), (N_FFT // 2, N_FFT // 2))
    n = 1 + (len(padded) - N_FFT) // HOP
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(n)[:, None]
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)
    power = np.abs(np.fft.rfft(padded[idx] * window, axis=1)) ** 2
    return (power @ filters.T).astype(np.float32)


def merge_same_speaker(
    segments: list[tuple[float, float]],
    audio: np.ndarray,
    rate: int,
    encoder: SpeakerEncoder,
    threshold: float,
    max_gap_s: float,
) -> list[Segment]:
    """Join consecutive ``(start, end)`` segments of one voice into ``Segment(method="vad")``s.

    A merged segment's ``speaker_similarity`` is the lowest similarity at any of its joins; a
    segment left on its own keeps the similarity to the group before it when the pause allowed a
    join (the number that kept it apart), else None."""
    track = resample(np.asarray(audio, dtype=np.float32), rate, RATE)
    groups: list[dict] = []
    for start, end in sorted(segments):
        emb = encoder.embed(track[int(start * RATE) : max(int(end * RATE), int(start * RATE) + 1)])
        last = groups[-1] if groups else None
        if last is not None and start - last["end"] <= max_gap_s:
            sim = float(np.dot(_unit(np.sum(last["embs"], axis=0)), emb))
            if sim >= threshold:
                last["end"], last["embs"] = max(last["end"], end), last["embs"] + [emb]
                last["sims"].append(sim)
                continue
            groups.append({"start": start, "end": end, "embs": [emb], "sims": [], "apart": sim})
        else:
            groups.append({"start": start, "end": end, "embs": [emb], "sims": [], "apart": None})
    return [_segment(g) for g in groups]


def _segment(group: dict) -> Segment:
    sim = min(group["sims"]) if group["sims"] else group["apart"]
    return Segment(
        start=round(group["start"], 3),
        end=round(group["end"], 3),
        method="vad",
        speaker_similarity=None if sim is None else round(sim, 4),
    )


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)
