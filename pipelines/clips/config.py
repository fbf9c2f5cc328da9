"""``ClipsConfig``: the ``clips`` section of the run config (raw videos -> clips, ``emer clips``).

Nested sections: ``vad`` (Silero VAD, ``pipelines.clips.vad``), ``speakers`` (speaker merging,
``pipelines.clips.speakers``), ``faces`` (the face filter, ``pipelines.clips.faces``), ``cut`` (ffmpeg
encoding, ``pipelines.clips.cut``), ``asr`` (the ASR role: an ``LLMConfig`` of input kind ``asr``,
Whisper in-process or an OpenAI-compatible transcription endpoint) and the two actor pools,
``stages.decode`` (decode, VAD, speakers, faces and cutting on CPU) and ``stages.asr`` (its GPUs are
``asr.num_gpus``, as an annotation role's), both ``pipelines.config.StageConfig``.
"""

from __future__ import annotations

import dataclasses

from core.config import Config, check_range
from core.llm import LLMConfig
from pipelines.clips.cut import Encoding
from pipelines.clips.faces import FaceFilterConfig
from pipelines.clips.speakers import SpeakerConfig
from pipelines.clips.vad import VadConfig
from pipelines.config import StageConfig

VIDEO_EXTENSIONS = [".mp4", ".mkv", ".avi", ".webm", ".mov"]


@dataclasses.dataclass(frozen=True)
class ClipsStages(Config):
    """The job's two actor pools."""

    decode: StageConfig = StageConfig(batch_size=1)  # one source video per task
    asr: StageConfig = StageConfig(batch_size=8, actors=1)


def default_asr() -> LLMConfig:
    return LLMConfig(model="openai/whisper-large-v3", max_new_tokens=128, batch_size=8)


@dataclasses.dataclass(frozen=True)
class ClipsConfig(Config):
    """How source videos become clips: segmentation, filters, cutting, ASR, pools, failure budget."""

    extensions: list[str] = dataclasses.field(default_factory=lambda: list(VIDEO_EXTENSIONS))
    min_duration_s: float = 2.0  # shorter segments are rejected (MER2024: 2-16 s)
    max_duration_s: float = 16.0  # longer segments are rejected
    check_faces: bool = True  # the face filter on each segment (one face, same person; clips.faces)
    frame_short_side: int = 240  # px: sampled frames are scaled so their short side is this
    max_video_bytes: int = 64 * 2**30  # a bigger source video fails unread
    transcribe: bool = True  # ASR for clips without a subtitle line (VAD segments)
    retry_failed: bool = False  # redo the videos recorded as failed (else a rerun skips them)
    max_failure_fraction: float = 0.5  # more failed videos than this share: the run exits non-zero
    progress_every_s: float = 10.0
    vad: VadConfig = dataclasses.field(default_factory=VadConfig)
    speakers: SpeakerConfig = dataclasses.field(default_factory=SpeakerConfig)
    faces: FaceFilterConfig = dataclasses.field(default_factory=FaceFilterConfig)
    cut: Encoding = dataclasses.field(default_factory=Encoding)
    asr: LLMConfig = dataclasses.field(default_factory=default_asr)
    stages: ClipsStages = dataclasses.field(default_factory=ClipsStages)

    def problems(self) -> list[str]:
        out: list[str] = []
        check_range(out, "clips.min_duration_s", self.min_duration_s, 0.0, None)
        if self.max_duration_s <= self.min_duration_s:
            out.append(
                f"clips.max_duration_s = {self.max_duration_s}: must be > clips.min_duration_s "
                f"({self.min_duration_s})"
            )
        check_range(out, "clips.frame_short_side", self.frame_short_side, 32, 4096)
        check_range(out, "clips.max_video_bytes", self.max_video_bytes, 1, None)
        check_range(out, "clips.max_failure_fraction", self.max_failure_fraction, 0.0, 1.0)
        bad = [e for e in self.extensions if not e.startswith(".")]
        if not self.extensions or bad:
            out.append(f"clips.extensions = {self.extensions!r}: must be suffixes such as '.mp4'")
        if self.asr.backend not in ("transformers", "openai"):
            out.append(f"clips.asr.backend = {self.asr.backend!r}: ASR runs on 'transformers' or 'openai'")
        return out
