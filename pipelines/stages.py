"""The annotation stages: decode, check, audio clue, video clue, disambiguate, translate, OV labels,
and the generic text step (``TextStepStage``) of a ``pipelines.steps.text_step`` entry.

CPU stages decode and filter clips (``pipelines.media``): the clip is fetched under the size cap
(``pipelines.fetch``) and decoded in a child process with a per-row timeout
(``pipelines.decode_worker``; ``decode_timeout_s = 0``: in-process, no timeout). LLM stages render
the papers' prompts (``core.llm.prompts``: subtitles and clues go in as quoted data), call the
role's backend (``core.llm``; one instance per equal role config per actor, so text steps that run
one model in one pool share it) and parse answers defensively (``core.llm.labels``). A failed LLM
call fails its row, with the reason. An audio or video role with ``backend: signal`` runs no LLM:
its stage measures the clip (``pipelines.signals``) and also fills ``audio_features`` /
``face_expressions``.
"""

from __future__ import annotations

import logging
import os
import signal
from typing import Any, ClassVar

from core import metrics
from core.llm import LLMRequest, create_backend
from core.llm.base import request_for
from core.llm.labels import parse_ov_labels
from core.schema import (
    AUDIO_CLUE,
    AUDIO_FEATURES,
    AV_CLUE,
    DESCRIPTION_EN,
    DESCRIPTION_ZH,
    FACE_EXPRESSIONS,
    OV_LABELS,
    OV_RAW,
    SUBTITLE,
    VIDEO_CLUE,
    decode_audio,
    encode_audio,
)
from core.stage import OK, REJECTED, Stage, fail
from pipelines import decode_worker, fetch, media
from pipelines.signals import backend as signals

log = logging.getLogger(__name__)

CRASH_ON_ENV = "EMER_DEBUG_CRASH_ON"  # comma-separated sample names whose decode SIGKILLs its worker
HANG_ON_ENV = "EMER_DEBUG_HANG_ON"  # comma-separated sample names whose decode never ends


def _names(env: str) -> set[str]:
    return {n for n in os.environ.get(env, "").split(",") if n}


class DecodeStage(Stage):
    """Clip bytes -> JPEG frames, FLAC audio and metadata (decord + libav)."""

    name = "decode"
    needs = ("name", "clip")
    produces = (
        "duration_s",
        "fps",
        "width",
        "height",
        "num_video_frames",
        "has_audio",
        "audio_s",
        "audio_shortfall_s",
        "faces",
        "frames",
        "audio",
    )

    def setup(self) -> None:
        self.faces = media.FaceCounter() if self.cfg.face_check else None  # OpenCV missing: fail now
        # Fault injection for the crash and timeout tests only: environment variables, never config keys.
        self.crash_on = _names(CRASH_ON_ENV)
        self.hang_on = _names(HANG_ON_ENV)
        timeout = self.cfg.decode_timeout_s
        self.runner = decode_worker.ChildRunner(timeout) if timeout > 0 else None
        if self.hang_on and self.runner is None:
            log.warning(
                "%s ignored: it needs annotate.decode_timeout_s > 0 (it would hang the job)", HANG_ON_ENV
            )
            self.hang_on = set()

    def process(self, rows: list[dict[str, Any]]) -> None:
        super().process(rows)
        decoded = sum(1 for r in rows if r["outcome"] == OK)
        metrics.counter("emer_clips_decoded").inc(decoded, {"stage": self.name})

    def process_row(self, row: dict[str, Any]) -> None:
        if row["name"] in self.crash_on:  # fault injection for the crash tests: a native-style death
            os.kill(os.getpid(), signal.SIGKILL)
        try:
            with fetch.local_clip(row["clip"], self.cfg.max_clip_bytes) as path:
                d = self._decode(row["name"], path)
        except media.Rejected as err:  # a check's rule, applied before decoding: reported as the check
            fail(row, CheckStage.name, str(err), REJECTED, err.code)
            return
        except (media.MediaError, decode_worker.DecodeTimeout, decode_worker.ChildDied) as err:
            fail(row, self.name, self._reason(err))
            return
        row.update(
            duration_s=d.duration_s,
            fps=d.fps,
            width=d.width,
            height=d.height,
            num_video_frames=d.num_video_frames,
            has_audio=d.audio is not None,
            audio_s=d.audio_s,
            audio_shortfall_s=d.audio_shortfall_s,
            faces=d.faces,
            frames=d.frames,
            audio=encode_audio(d.audio) if d.audio is not None and d.audio.size else None,
        )

    def _decode(self, name: str, path: str) -> media.Decoded:
        if self.runner is None:
            return media.decode_clip(path, self.cfg, self.faces)
        job = decode_worker.hang_job if name in self.hang_on else decode_worker.decode_job
        return self.runner.run(job, path, self.cfg)

    @staticmethod
    def _reason(err: Exception) -> str:
        if isinstance(err, decode_worker.DecodeTimeout):
            return (
                f"decode {err}: the decoder hung or the clip is pathological, so its process was "
                "killed; raise annotate.decode_timeout_s if the clip is only slow to decode"
            )
        if isinstance(err, decode_worker.ChildDied):
            return f"{err} while decoding this clip: a native crash or out of memory in the decoder"
        return str(err)


class CheckStage(Stage):
    """Duration bounds, audio present and not grossly mismatched with the video (a shorter track was
    padded in decode), optional face count."""

    name = "check"
    needs = ("duration_s", "has_audio", "audio_s")
    codes = (
        ("too short", "too_short"),
        ("too long", "too_long"),
        ("no audio", "no_audio"),
        ("audio length", "av_mismatch"),
        ("face check", "faces"),
    )

    def process_row(self, row: dict[str, Any]) -> None:
        reason = media.check_clip(row, self.cfg)
        if reason:
            code = next((c for prefix, c in self.codes if reason.startswith(prefix)), "check")
            fail(row, self.name, reason, REJECTED, code)


class LLMStage(Stage):
    """A stage that asks the role's LLM one question per row and stores the answer."""

    kind: ClassVar[str] = "text"  # the input kind its model is asked with (core.llm.INPUT_KINDS)
    output = ""
    prompt = ""  # the registry prompt this stage asks (``prompt_for`` when it depends on the config)

    @classmethod
    def prompt_for(cls, cfg: Any) -> str:
        return cls.prompt

    @classmethod
    def role_for(cls, cfg: Any) -> str:
        """The model role this stage calls under ``cfg`` (``annotate.<role>``, ``stages.<role>``)."""
        return cls.role

    def configure(self) -> None:
        """The role, its LLM config and the columns needed under ``cfg`` (no model is loaded)."""
        self.role = self.role_for(self.cfg)
        self.llm_cfg = self.cfg.llm(self.role)

    signal = None  # a measurer (pipelines.signals) instead of an LLM: backend "signal"

    def setup(self) -> None:
        self.configure()
        kind = self.kind
        if self.llm_cfg.backend == "signal":  # opensmile / torch are imported by reader(), here only
            self.signal = self.shared_state("signal", kind, lambda: signals.reader(kind))
            return
        self.backend = self.shared_state(
            "llm", (kind, self.llm_cfg), lambda: create_backend(self.llm_cfg, kind)
        )
        if self.role not in self.backend.steps:
            self.backend.steps.append(self.role)

    def request(self, row: dict[str, Any]):
        raise NotImplementedError

    def accept(self, row: dict[str, Any], text: str) -> None:
        row[self.output] = text

    def measure(self, row: dict[str, Any]) -> None:
        raise NotImplementedError(f"{self.role}: backend 'signal' measures audio or video clues only")

    def process(self, rows: list[dict[str, Any]]) -> None:
        if self.signal is not None:
            for r in rows:
                try:
                    self.measure(r)
                except Exception as err:  # noqa: BLE001 - one clip's bad media fails that row alone
                    fail(r, self.name, f"{self.role} signal: {type(err).__name__}: {err}")
            return
        asked, requests = [], []
        for r in rows:
            try:
                req = self.request(r)
            except Exception as err:  # noqa: BLE001 - a row whose input cannot be prepared fails alone
                fail(r, self.name, f"cannot build the {self.role} request: {type(err).__name__}: {err}")
                continue
            if req is None:
                continue
            req.id = r["name"]
            asked.append(r)
            requests.append(req)
        if not requests:
            return
        results = self.backend.generate(requests)
        for r, res in zip(asked, results):
            if res.ok:
                self.accept(r, res.text)
            else:
                model = f"{self.llm_cfg.backend}:{self.llm_cfg.model}"
                fail(r, self.name, f"{self.role} LLM ({model}): {res.error}")

    def ask(self, prompt: str, values: dict[str, Any] | None = None, **inputs: Any) -> LLMRequest:
        """The request for registry prompt ``prompt`` in this stage's role (guard, few-shot, media)."""
        return request_for(self.llm_cfg, prompt, values, **inputs)


class AudioClueStage(LLMStage):
    """Strategy S0: the audio LLM describes the acoustic emotion clues (no subtitle)."""

    name, role, output, prompt = "audio_clue", "audio", AUDIO_CLUE, "audio_clue"
    kind = "audio"
    needs = ("audio",)
    produces = (AUDIO_CLUE, AUDIO_FEATURES)

    def measure(self, row: dict[str, Any]) -> None:
        row[self.output], row[AUDIO_FEATURES] = self.signal.clue(row.get("audio"))

    def request(self, row: dict[str, Any]):
        if not row.get("audio"):
            row[self.output] = ""  # allowed only when require_audio is off
            return None
        return self.ask(self.prompt, audio=decode_audio(row["audio"]))


class VideoClueStage(LLMStage):
    """Strategy S0: the video LLM describes facial, body and scene clues from the sampled frames."""

    name, role, output = "video_clue", "video", VIDEO_CLUE
    kind = "video"
    needs = ("frames", "duration_s")
    produces = (VIDEO_CLUE, FACE_EXPRESSIONS)

    def measure(self, row: dict[str, Any]) -> None:
        row[self.output], row[FACE_EXPRESSIONS] = self.signal.clue(row["frames"])

    @classmethod
    def prompt_for(cls, cfg: Any) -> str:
        return cfg.video_prompt

    def request(self, row: dict[str, Any]):
        frames = list(row["frames"])
        k = self.cfg.video_prompt_frames or len(frames)
        frames = [frames[i] for i in media.sample_indices(len(frames), k)]
        values = {"num_frames": len(frames)} if self.cfg.video_prompt == "frames_clue" else {}
        fps = len(frames) / row["duration_s"] if row["duration_s"] else None
        return self.ask(self.cfg.video_prompt, values, frames=frames, fps=fps)


class OmniClueStage(LLMStage):
    """Strategy S0 with one audio-video model (EMER Table 6, audio-video LLM): it hears the audio and
    sees the frames in one request, as Qwen2.5-Omni does."""

    name, role, output, prompt = "av_clue", "omni", AV_CLUE, "av_clue"
    kind = "omni"
    needs = ("audio", "frames", "duration_s")
    produces = (AV_CLUE,)

    def request(self, row: dict[str, Any]):
        frames = list(row["frames"])
        k = self.cfg.video_prompt_frames or len(frames)
        frames = [frames[i] for i in media.sample_indices(len(frames), k)]
        fps = len(frames) / row["duration_s"] if row["duration_s"] else None
        audio = decode_audio(row["audio"]) if row.get("audio") else None
        return self.ask(self.prompt, frames=frames, audio=audio, fps=fps)


class DisambiguateStage(LLMStage):
    """Strategy S2: the text LLM merges the audio and video clues (or the one audio-video clue) with
    the subtitle (Table 1 #3)."""

    name, role = "disambiguate", "disambiguate"
    needs = (AUDIO_CLUE, VIDEO_CLUE, SUBTITLE)
    produces = (DESCRIPTION_EN, DESCRIPTION_ZH)

    @classmethod
    def prompt_for(cls, cfg: Any) -> str:
        return "disambiguate_av" if cfg.clues == "omni" else "disambiguate"

    def configure(self) -> None:
        super().configure()
        if self.cfg.clues == "omni":
            self.needs = (AV_CLUE, SUBTITLE)

    def request(self, row: dict[str, Any]):
        if signals.no_evidence(row):  # measured: no speech, no face; no subtitle: nothing to ask
            row.update(signals.NO_EVIDENCE)
            return None
        if self.cfg.clues == "omni":
            values = {"av_clue": row[AV_CLUE] or "", "subtitle": row[SUBTITLE] or ""}
            return self.ask("disambiguate_av", values)
        values = {
            "audio_clue": row[AUDIO_CLUE] or "",
            "video_clue": row[VIDEO_CLUE] or "",
            "subtitle": row[SUBTITLE] or "",
        }
        return self.ask("disambiguate", values)

    def accept(self, row: dict[str, Any], text: str) -> None:
        row[DESCRIPTION_EN] = row[DESCRIPTION_ZH] = None
        row[DESCRIPTION_ZH if self.cfg.translate == "zh_en" else DESCRIPTION_EN] = text


class TranslateStage(LLMStage):
    """EN <-> ZH, so every description is bilingual."""

    name, role = "translate", "translate_en_zh"
    needs = (DESCRIPTION_EN, DESCRIPTION_ZH)
    produces = (DESCRIPTION_EN, DESCRIPTION_ZH)

    @classmethod
    def role_for(cls, cfg: Any) -> str:
        return "translate_zh_en" if cfg.translate == "zh_en" else "translate_en_zh"

    @classmethod
    def prompt_for(cls, cfg: Any) -> str:
        return cls.role_for(cfg)

    def request(self, row: dict[str, Any]):
        if self.cfg.translate == "none" or signals.no_evidence(row):  # both languages are set
            return None
        src = DESCRIPTION_ZH if self.cfg.translate == "zh_en" else DESCRIPTION_EN
        return self.ask(f"translate_{self.cfg.translate}", {"text": row.get(src) or ""})

    def accept(self, row: dict[str, Any], text: str) -> None:
        row[DESCRIPTION_EN if self.cfg.translate == "zh_en" else DESCRIPTION_ZH] = text


class OVLabelStage(LLMStage):
    """Open-vocabulary labels from the description (EMER Table 2 #4), parsed into a clean list."""

    name, role, prompt = "ov_labels", "ov", "ov_extract"
    needs = (DESCRIPTION_EN, DESCRIPTION_ZH)
    produces = (OV_LABELS, OV_RAW)

    def request(self, row: dict[str, Any]):
        if signals.no_evidence(row):
            row[OV_RAW], row[OV_LABELS] = "[]", []
            return None
        clues = row.get(DESCRIPTION_EN) or row.get(DESCRIPTION_ZH) or ""
        return self.ask(self.prompt, {"clues": clues})

    def accept(self, row: dict[str, Any], text: str) -> None:
        row[OV_RAW] = text
        row[OV_LABELS] = parse_ov_labels(text)


class TextStepStage(LLMStage):
    """A text step declared by its table entry alone (``pipelines.steps.text_step``): its prompt's
    data fields filled from its input columns, the answer written to its output column."""

    fields: ClassVar[dict[str, str]] = {}  # prompt data field -> input column

    def request(self, row: dict[str, Any]):
        return self.ask(self.prompt, {field: row.get(col) or "" for field, col in self.fields.items()})
