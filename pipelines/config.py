"""``AnnotateConfig``: the ``annotate`` section of the run config (all defaults, all checks).

Media (frames sampled per clip, frame size, JPEG quality), the clip filter (duration bounds from
MER2024: 2-16 s, audio present, audio length consistent with the video: shorter audio is padded with
silence unless it covers under ``av_min_audio_fraction`` of the video, longer audio may exceed it by
``max(av_tolerance_s, av_tolerance_ratio * duration)``; optional face count), the
subtitle language that feeds the prompts, the LLM of each step of ``pipelines.steps`` (one
``LLMConfig`` each, prompts overridable there: ``audio`` and ``video`` clues, or one ``omni`` model
that hears and sees the clip; the text steps ``disambiguate``, ``translate_en_zh``,
``translate_zh_en`` and ``ov``, each of which inherits every key it does not set from ``text``; the
per-step fields are made from the table by ``with_step_fields``), per-stage Ray resources
(``stages.<step>``, a ``core.resources.Resources`` plus batch_size and restarts, the text steps
inheriting from ``stages.text`` likewise; GPUs come from the role's ``num_gpus``) and reliability
knobs (retry_failed, max_errored_blocks, crash isolation). Limits on one clip's cost to a decode worker:
``max_clip_bytes`` (checked from the file/object size before reading, and while an S3 copy streams)
and ``decode_timeout_s`` (decoding runs in a child process that is killed when it takes longer).
"""

from __future__ import annotations

import dataclasses

from core.config import Config, check_choice, check_range
from core.llm import LLMConfig
from core.resources import Resources
from pipelines import steps
from pipelines.steps import INHERIT_FROM

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm")
LANGUAGES = ("english", "chinese")
TRANSLATIONS = ("en_zh", "zh_en", "none")
STOP_AFTER = ("check", "labels")
AUDIO_BACKENDS = ("pyav", "ffmpeg")
VIDEO_PROMPTS = ("video_clue", "frames_clue")
CLUES = ("separate", "omni")  # audio + video LLMs (the papers), or one audio-video (omni) model
# The steps only an LLM can run (``backend: signal`` measures audio or video clues only)
_UNMEASURED = tuple(n for n, s in steps.STEPS.items() if s.kind not in ("audio", "video"))


def inherit(data: dict, base: str = INHERIT_FROM) -> dict:
    """Config data with each text step's section given there laid over a deep copy of ``base``'s.

    A step that is not given stays absent (None: it uses ``base`` as a whole at run time)."""
    out = dict(data)
    parent = data.get(base)
    for child in steps.text_steps():
        given = data.get(child)
        if isinstance(given, dict) and isinstance(parent, dict):
            out[child] = _overlay(parent, given)
    return out


def _overlay(base: dict, top: dict) -> dict:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for k, v in top.items():
        out[k] = _overlay(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@dataclasses.dataclass(frozen=True)
class StageConfig(Resources):
    """Ray resources of one stage's actor pool (``core.resources.Resources``: num_cpus, resources,
    actors or min_actors..max_actors), its batch size and how Ray restarts it.

    A stage that asks for GPUs (its role's ``annotate.<role>.num_gpus``, the one place of that fact:
    ``num_gpus`` here must stay 0) or custom ``resources`` grows beyond the cluster's current size: Ray
    Data adds an actor while the pool's actors are all busy, the pending actor's resource demand makes
    the cluster autoscaler add a node, and idle actors are released (down to ``min_actors``) so idle
    nodes go; ``max_actors`` 0 leaves it unbounded (then the cluster's ``max_workers`` bound it; the
    cluster preset sets what ``ray_cluster.yaml`` provides). Without such resources decode gets the
    CPUs the other pools leave free (within ``min_actors``/``max_actors`` when set) and an LLM stage
    ``min_actors`` actors (up to ``max_actors``). resources: custom Ray resources per actor, e.g.
    ``{decode: 1}`` on a cluster whose CPU nodes carry them. max_restarts / max_task_retries cap Ray's
    restarts of a crashed actor and retries of its task (a retried task re-runs a crashing clip: rows
    of lost blocks are re-run one by one afterwards instead, see ``isolate_crashes``).
    """

    batch_size: int = 16
    max_restarts: int = 3
    max_task_retries: int = 0

    def problems(self) -> list[str]:
        out = super().problems()
        if self.num_gpus:
            out.append(
                f"num_gpus = {self.num_gpus}: a stage's GPUs are its role's, annotate.<role>.num_gpus "
                "(decode uses none); leave it at 0 here"
            )
        check_range(out, "batch_size", self.batch_size, 1, 100_000)
        check_range(out, "max_restarts", self.max_restarts, 0, 1000)
        check_range(out, "max_task_retries", self.max_task_retries, 0, 1000)
        return out


def with_step_fields(after: str, fields: dict[str, tuple[str, object]]):
    """A class decorator that declares one dataclass field per step (name -> (annotation, default))
    right after field ``after``, before ``dataclasses.dataclass`` sees the class."""

    def add(cls: type) -> type:
        annotations: dict[str, object] = {}
        for name, annotation in cls.__dict__.get("__annotations__", {}).items():
            annotations[name] = annotation
            if name == after:
                for step, (step_annotation, default) in fields.items():
                    annotations[step] = step_annotation
                    setattr(cls, step, default)
        cls.__annotations__ = annotations
        return cls

    return add


def _stage_fields(text: bool) -> dict[str, tuple[str, object]]:
    """The per-step fields of ``StagesConfig``: a text step's is None (``stages.text``) until given."""
    return {
        name: ("StageConfig | None", None)
        if step.inherits
        else ("StageConfig", StageConfig(batch_size=step.batch_size))
        for name, step in steps.STEPS.items()
        if step.inherits == text
    }


@dataclasses.dataclass(frozen=True)
@with_step_fields("text", _stage_fields(text=True))
@with_step_fields("decode", _stage_fields(text=False))
class StagesConfig(Config):
    """Per-stage resources, e.g. ``--annotate.stages.decode.actors=8``; a text step not given uses
    ``text`` (given, it inherits every key it does not set from ``text``)."""

    decode: StageConfig = StageConfig()  # then one field per clue step of ``pipelines.steps``
    text: StageConfig = StageConfig(batch_size=16)  # then one field per text step (None: ``text``)

    @classmethod
    def prepare_data(cls, data: dict) -> dict:
        return inherit(data)

    def of(self, role: str) -> StageConfig:
        """The resources of ``role``'s stage (a text step not given, or registered after import:
        ``text``)."""
        return getattr(self, role, None) or self.text


def _llm(model: str, max_new_tokens: int = 512) -> LLMConfig:
    return LLMConfig(model=model, max_new_tokens=max_new_tokens)


@dataclasses.dataclass(frozen=True)
@with_step_fields("text", {name: ("LLMConfig | None", None) for name in steps.text_steps()})
class AnnotateConfig(Config):
    """Clips -> clues -> disambiguated bilingual description -> OV labels (EMER-Coarse)."""

    # media
    frames: int = 8  # frames sampled uniformly per clip (8 for training; 3-4 for a GPT-4V-style prompt)
    frame_size: int = 224  # frames are resized to frame_size x frame_size
    jpeg_quality: int = 90
    audio_backend: str = "pyav"  # pyav (in-process libav) or ffmpeg (subprocess); never decord's reader
    extensions: list[str] = dataclasses.field(default_factory=lambda: list(VIDEO_SUFFIXES))
    store_media: bool = True  # keep frames (JPEG) and audio (FLAC) in the samples shards
    max_clip_bytes: int = 512 * 2**20  # larger clips fail unread (local size / S3 object size)
    decode_timeout_s: float = 120.0  # per clip, in a child process killed after it; 0 = in-process, none
    # clip filter (MER2024 section 2.1)
    min_duration_s: float = 2.0
    max_duration_s: float = 16.0
    require_audio: bool = True
    av_tolerance_s: float = 0.5  # audio may be longer than the video by max(this, ratio * duration)
    av_tolerance_ratio: float = 0.1
    av_min_audio_fraction: float = 0.5  # shorter audio is padded with silence; under this share: rejected
    face_check: bool = False  # OpenCV Haar cascade; needs opencv-python-headless
    face_min_fraction: float = 0.5  # share of sampled frames that must show exactly one face
    # prompts and models
    subtitle_language: str = "english"  # which subtitle column feeds the prompts
    translate: str = "en_zh"  # direction of the translation step (description language -> other)
    video_prompt: str = "video_clue"  # video_clue (video LLM, Table 6 S0) or frames_clue (Table 1 #1)
    video_prompt_frames: int = 0  # frames given to the video LLM (uniform subset); 0 = all
    clues: str = "separate"  # separate: audio + video LLM (the papers); omni: one audio-video model
    audio: LLMConfig = _llm("Qwen/Qwen2-Audio-7B-Instruct")
    video: LLMConfig = _llm("Qwen/Qwen2.5-VL-7B-Instruct")
    omni: LLMConfig = LLMConfig(backend="vllm", model="Qwen/Qwen2.5-Omni-7B", num_gpus=1.0)
    text: LLMConfig = _llm("Qwen/Qwen2-7B-Instruct")  # the text steps' base (keys they do not set)
    # then one ``LLMConfig | None`` per text step of ``pipelines.steps`` (None: ``text``)
    stop_after: str = "labels"  # "check": decode + check + write only (no LLM stages)
    # Ray and reliability
    stages: StagesConfig = StagesConfig()
    retry_failed: bool = False  # re-attempt the names recorded in failures/ (and only those)
    max_errored_blocks: int = 20  # blocks lost to crashed workers before the job aborts; -1 = no limit
    isolate_crashes: bool = True  # re-run rows of crashed blocks one by one, so only the culprit fails
    progress_every_s: float = 10.0  # seconds between the driver's progress lines
    max_failure_fraction: float = 0.5  # more of this run's rows failed: exit non-zero (rows are kept)
    stop_after_fatal: int = 8  # this many rows in a row failed on 401/403/404: stop early; 0 = never

    @classmethod
    def prepare_data(cls, data: dict) -> dict:
        return inherit(data)

    def problems(self) -> list[str]:
        out: list[str] = []
        check_range(out, "annotate.frames", self.frames, 1, 256)
        check_choice(out, "annotate.clues", self.clues, CLUES)
        if self.clues == "omni" and self.omni.backend == "transformers":
            out.append(
                "annotate.omni.backend = 'transformers': the omni role runs on vllm (Qwen2.5-Omni) "
                "or on an OpenAI-compatible endpoint that takes audio and images (backend: openai)"
            )
        for role in (*_UNMEASURED, INHERIT_FROM):  # a text step not given is ``text``'s problem
            if getattr(self, role, None) is not None and getattr(self, role).backend == "signal":
                out.append(
                    f"annotate.{role}.backend = 'signal': only the audio and video clue roles can be "
                    "measured signals (pipelines.signals); this role needs an LLM backend"
                )
        check_range(out, "annotate.max_failure_fraction", self.max_failure_fraction, 0.0, 1.0)
        check_range(out, "annotate.stop_after_fatal", self.stop_after_fatal, 0, None)
        check_range(out, "annotate.frame_size", self.frame_size, 16, 4096)
        check_range(out, "annotate.jpeg_quality", self.jpeg_quality, 1, 100)
        check_choice(out, "annotate.audio_backend", self.audio_backend, AUDIO_BACKENDS)
        bad = [e for e in self.extensions if not (e.startswith(".") and len(e) > 1)]
        if not self.extensions or bad:
            out.append(
                f"annotate.extensions = {self.extensions!r}: must be a non-empty list of suffixes like '.mp4'"
            )
        check_range(out, "annotate.max_clip_bytes", self.max_clip_bytes, 1, None)
        check_range(out, "annotate.decode_timeout_s", self.decode_timeout_s, 0.0, None)
        check_range(out, "annotate.min_duration_s", self.min_duration_s, 0.0, None)
        if self.max_duration_s <= self.min_duration_s:
            out.append(
                f"annotate.max_duration_s = {self.max_duration_s}: must be > annotate.min_duration_s "
                f"({self.min_duration_s})"
            )
        check_range(out, "annotate.av_tolerance_s", self.av_tolerance_s, 0.0, None)
        check_range(out, "annotate.av_tolerance_ratio", self.av_tolerance_ratio, 0.0, 1.0)
        check_range(out, "annotate.av_min_audio_fraction", self.av_min_audio_fraction, 0.0, 1.0)
        check_range(out, "annotate.face_min_fraction", self.face_min_fraction, 0.0, 1.0)
        check_choice(out, "annotate.subtitle_language", self.subtitle_language, LANGUAGES)
        check_choice(out, "annotate.translate", self.translate, TRANSLATIONS)
        check_choice(out, "annotate.video_prompt", self.video_prompt, VIDEO_PROMPTS)
        check_range(out, "annotate.video_prompt_frames", self.video_prompt_frames, 0, self.frames)
        check_choice(out, "annotate.stop_after", self.stop_after, STOP_AFTER)
        if self.max_errored_blocks < -1:
            out.append(
                f"annotate.max_errored_blocks = {self.max_errored_blocks}: must be >= 0, or -1 for no limit"
            )
        check_range(out, "annotate.progress_every_s", self.progress_every_s, 0.0, None)
        return out

    @property
    def llm_stages(self) -> bool:
        return self.stop_after == "labels"

    def llm(self, role: str) -> LLMConfig:
        """The LLM config ``role`` runs with (a text step not given, or registered after import:
        ``text``)."""
        return getattr(self, role, None) or self.text

    def roles(self) -> list[str]:
        """The model roles (steps) this run calls, in pipeline order (none when it stops after the check)."""
        return [step.name for step in steps.run_steps(self)]

    def prompt_variants(self) -> dict[str, dict[str, object]]:
        """Role -> the prompts it replaces and its few-shot examples per prompt ({} = the papers')."""
        out: dict[str, dict[str, object]] = {}
        for role in self.roles():
            c = self.llm(role)
            if c.prompts or c.examples:
                out[role] = {
                    "replaced": sorted(c.prompts),
                    "examples": {k: len(v) for k, v in c.examples.items()},
                }
        return out

    def model_ids(self) -> dict[str, str]:
        """Role -> "backend:model", for the manifest."""
        return {role: f"{self.llm(role).backend}:{self.llm(role).model}" for role in self.roles()}


_LLM_OPERATIONAL = (
    "concurrency",
    "batch_size",
    "timeout_s",
    "max_retries",
    "retry_backoff_s",
    "max_retry_after_s",
    "stop_after_fatal",
    "api_key_env",
    "num_gpus",
    "cache_dir",
    "engine_env",  # vllm: e.g. the CPU backend's KV-cache space
)
# Keys of ``AnnotateConfig`` that cannot change a row's output: how the run is executed (resources,
# batching, retries, progress, failure budget). A resume may change them; any other change is refused
# (``core.fingerprint``), since the output would mix rows made under two configs.
RESUME_IGNORED = frozenset(
    {
        "stages",
        "retry_failed",
        "max_errored_blocks",
        "isolate_crashes",
        "progress_every_s",
        "max_failure_fraction",
        "stop_after_fatal",
        *(f"{role}.{key}" for role in (*steps.names(), INHERIT_FROM) for key in _LLM_OPERATIONAL),
    }
)
