"""Measured clues: the ``signal`` backend of the annotation's audio and video clue roles.

No language model runs here. ``AudioSignal`` measures a clip's 16 kHz audio with openSMILE's
eGeMAPSv02 functionals (``prosody``); ``VideoSignal`` counts faces in the sampled frames with MTCNN
and reads the main face's expression with the FER2013 mini-Xception (``faces``, ``expression``,
``xception``). Each returns the clue sentence (the ``audio_clue`` / ``video_clue`` column) and the
numbers behind it (``audio_features`` / ``face_expressions``, ``core.schema``).

Why here and not in ``core/llm``: the LLM layer is one interface for prompt -> text models shared
by annotation and evaluation; signal processing takes no prompt, returns numbers as well as text,
and is used only by the annotation's clue stages, so it lives in the annotation component and the
stages dispatch on ``backend: signal`` (``pipelines.stages.LLMStage.setup``). ``core.llm`` only
knows the name (so one role config holds either) and refuses to build it. Where both clues were
measured and found nothing, and there is no subtitle (``no_evidence``), the text steps write
``NO_EVIDENCE`` and empty labels instead of asking their LLM, which would invent an emotion.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from core.schema import AUDIO_FEATURES, DESCRIPTION_EN, DESCRIPTION_ZH, FACE_EXPRESSIONS

# What S2 says of a clip in which nothing shows an emotion (no speech, no face, no subtitle), instead
# of asking a language model that would invent one; its OV labels are then empty.
NO_EVIDENCE = {
    DESCRIPTION_EN: "No speech is heard, no face is visible and there is no subtitle: nothing in the "
    "clip shows an emotion.",
    DESCRIPTION_ZH: "听不到说话，看不到人脸，也没有字幕：片段中没有任何情绪的迹象。",
}

KINDS = ("audio", "video")
COMPONENTS = {  # role kind -> the packages whose versions name the "model" in provenance
    "audio": ("opensmile",),
    "video": ("facenet-pytorch", "fer", "h5py", "torch"),
}


def no_evidence(row: dict[str, Any]) -> bool:
    """Both clues were measured (``backend: signal``) and found nothing, and the subtitle is empty:
    no speech (no voiced sound, or a steady tone), no face in any sampled frame, no words."""
    if AUDIO_FEATURES not in row or FACE_EXPRESSIONS not in row or (row.get("subtitle") or "").strip():
        return False
    audio, face = row[AUDIO_FEATURES], row[FACE_EXPRESSIONS]  # None: that clue came from an LLM
    silent = audio is not None and audio.get("arousal") is None  # arousal is None without speech
    faceless = face is not None and not face.get("mean")
    return silent and faceless


def versions(kind: str) -> str:
    """e.g. "opensmile 2.6.0" (what a signal role's provenance names as its revision)."""
    out = []
    for pkg in COMPONENTS[kind]:
        try:
            out.append(f"{pkg} {metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            out.append(f"{pkg} missing")
    return ", ".join(out)


def reference_hash(kind: str) -> str:
    """sha256 (16 hex) of what turns numbers into words besides the code: the audio norms file, or
    the expression classifier's weights file."""
    import hashlib
    from importlib import resources

    if kind == "audio":
        data = (resources.files("pipelines.signals") / "norms.json").read_bytes()
    else:
        from pipelines.signals.expression import weights_path  # heavy-free: h5py is not imported

        data = weights_path().read_bytes()
    return hashlib.sha256(data).hexdigest()[:16]


def reader(kind: str) -> Any:
    """The loaded measurer of ``kind`` (audio / video): what a clue stage's actor holds."""
    from pipelines.signals.clues import AudioSignal, VideoSignal

    if kind not in KINDS:
        raise ValueError(f"backend 'signal' serves the audio and video roles, not {kind!r}")
    return AudioSignal() if kind == "audio" else VideoSignal()
