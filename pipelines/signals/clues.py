"""One clip's measured clue: (sentence, numbers) for the audio and video roles of ``backend: signal``."""

from __future__ import annotations

from typing import Any

from core.schema import AUDIO_FEATURE_FIELDS, decode_audio
from pipelines.signals import faces, prosody


class AudioSignal:
    """eGeMAPS functionals of the clip's audio -> (``audio_clue``, ``audio_features``)."""

    def __init__(self) -> None:
        self.reader = prosody.ProsodyReader()

    def clue(self, audio: Any) -> tuple[str, dict[str, float | None]]:
        """The clue and the numbers; nothing sounds: every number None (measured, found nothing)."""
        features = self.reader.features(decode_audio(audio))
        return prosody.describe(features), features or dict.fromkeys(AUDIO_FEATURE_FIELDS)


class VideoSignal:
    """MTCNN faces + expression probabilities over the sampled frames -> (``video_clue``,
    ``face_expressions``)."""

    def __init__(self) -> None:
        self.reader = faces.FaceReader()

    def clue(self, frames: list[bytes]) -> tuple[str, dict[str, Any]]:
        expr = faces.summary(self.reader.read(list(frames)))
        return faces.describe(expr), expr
