"""Speech segments of a long audio track: Silero VAD, the detector the MER2024 paper names.

The model is the TorchScript file the ``silero-vad`` wheel ships (``silero_vad/data/silero_vad.jit``,
2.2 MB, v6), loaded with ``torch.jit.load`` once per process (one Ray actor); nothing is downloaded.
The wheel's ONNX file would need onnxruntime (a 28 MB wheel the project does not otherwise use),
while torch is already here; its ``silero_vad_16k.safetensors`` holds other (older) weights than
the v6 model, so it is not used. Streaming the TorchScript model one 32 ms window per call, as the
wheel's ``get_speech_timestamps`` does, cost ~4.5 ms a window on this 2-core machine (2 minutes
for a 20-minute episode); the windows depend on each other only through the LSTM cell, so here
the model's own STFT and encoder run on all windows in one batch, its LSTM cell's weights run as
one ``nn.LSTM`` over the sequence and its head on all outputs: the same probabilities (within
1e-5, tested against the streaming call) ~13x faster. The wheel's
``get_speech_timestamps_from_probs`` turns them into segments with the thresholds of ``VadConfig``.
Audio at another rate is resampled to 16 kHz first.

Importing ``silero_vad`` sets torch's thread count to 1 as a side effect; ``_load`` puts the
caller's setting back, so the actor decides (``FaceReader`` sets one thread for its actor itself).
"""

from __future__ import annotations

import functools
import logging
import warnings
from dataclasses import dataclass
from importlib import resources

import numpy as np

from core.config import Config, check_range
from pipelines.speech import resample

log = logging.getLogger(__name__)

VAD_RATE = 16000  # Silero VAD's rate (it also takes 8 kHz; everything here is resampled to 16 kHz)
MODEL_FILE = "silero_vad.jit"
WINDOW, CONTEXT = 512, 64  # samples per 32 ms window, and the previous window's tail it also sees


@dataclass(frozen=True)
class VadConfig(Config):
    """Silero VAD's thresholds (``clips.vad``)."""

    threshold: float = 0.5  # speech probability a 32 ms window needs to count as speech
    min_speech_s: float = 0.25  # shorter bursts of speech are dropped
    min_silence_s: float = 0.3  # a pause must last this long to end a segment (word gaps do not)
    speech_pad_s: float = 0.05  # each segment is widened by this much on both sides

    def problems(self) -> list[str]:
        out: list[str] = []
        check_range(out, "threshold", self.threshold, 0.05, 0.95)
        check_range(out, "min_speech_s", self.min_speech_s, 0.0, 30.0)
        check_range(out, "min_silence_s", self.min_silence_s, 0.0, 10.0)
        check_range(out, "speech_pad_s", self.speech_pad_s, 0.0, 2.0)
        return out


class _Silero:
    """The TorchScript model, run over a whole track at once (see the module docstring)."""

    def __init__(self) -> None:
        import torch  # heavy: torch

        threads = torch.get_num_threads()
        try:
            from silero_vad.utils_vad import get_speech_timestamps_from_probs
        finally:
            torch.set_num_threads(threads)
        path = resources.files("silero_vad") / "data" / MODEL_FILE
        with resources.as_file(path) as local, warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated"
            self.model = torch.jit.load(str(local), map_location="cpu").eval()
        net = self.model._model  # the 16 kHz network: stft -> encoder -> decoder (LSTM cell, head)
        cell = net.decoder.rnn
        self.lstm = torch.nn.LSTM(cell.weight_ih.shape[1], cell.weight_hh.shape[1], batch_first=True)
        self.lstm.load_state_dict(
            {f"{k}_l0": getattr(cell, k) for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
        )
        self.net, self.timestamps, self.torch = net, get_speech_timestamps_from_probs, torch

    def probs(self, track: np.ndarray) -> np.ndarray:
        """Speech probability of each 32 ms window of a 16 kHz track (the last one zero-padded)."""
        torch, F = self.torch, self.torch.nn.functional
        x = torch.from_numpy(np.ascontiguousarray(track, dtype=np.float32))
        n = (len(x) + WINDOW - 1) // WINDOW
        x = F.pad(x, (0, n * WINDOW - len(x))).view(n, WINDOW)
        context = torch.cat([torch.zeros(1, CONTEXT), x[:-1, -CONTEXT:]], 0)
        with torch.no_grad():
            feats = self.net.encoder(self.net.stft(torch.cat([context, x], 1))).squeeze(-1)
            hidden, _ = self.lstm(feats.unsqueeze(0))
            out = self.net.decoder.decoder(hidden[0].unsqueeze(-1))
        return out.squeeze(1).mean(1).numpy()


@functools.lru_cache(maxsize=1)
def _load() -> _Silero:
    """The model, once per process (one Ray actor)."""
    silero = _Silero()
    log.info("vad: loaded Silero VAD (%s)", MODEL_FILE)
    return silero


def speech_segments(
    audio: np.ndarray, rate: int = VAD_RATE, cfg: VadConfig | None = None
) -> list[tuple[float, float]]:
    """The speech in ``audio`` (mono float samples at ``rate`` Hz) as ``(start, end)`` seconds,
    in order and not overlapping. Silence, or audio shorter than one 32 ms window, gives ``[]``."""
    cfg = cfg or VadConfig()
    if rate <= 0:
        raise ValueError(f"speech_segments: rate {rate} Hz: must be a positive sample rate")
    track = np.asarray(audio, dtype=np.float32)
    if track.ndim != 1:
        raise ValueError(f"speech_segments: audio of shape {track.shape}: pass one mono channel")
    track = resample(track, rate, VAD_RATE)
    if len(track) < WINDOW:
        return []
    silero = _load()
    found = silero.timestamps(
        silero.probs(track).tolist(),
        sampling_rate=VAD_RATE,
        threshold=cfg.threshold,
        min_speech_duration_ms=int(round(cfg.min_speech_s * 1000)),
        min_silence_duration_ms=int(round(cfg.min_silence_s * 1000)),
        speech_pad_ms=int(round(cfg.speech_pad_s * 1000)),
        audio_length_samples=len(track),
    )
    return [(round(s["start"] / VAD_RATE, 3), round(s["end"] / VAD_RATE, 3)) for s in found]
