"""The dataset schema: EMER-Coarse and EMER-Fine columns, their Arrow types, and the schema version.

One module every reader and writer imports: the annotation sink writes these columns, the training
data reader, inference and evaluation read them, with no renaming or conversion step between.

EMER-Coarse (``OUTPUT/samples/part-*.parquet``): one row per clip that passed the checks.
- identity and subtitle: ``name`` (clip file stem), ``clip`` (source URI), ``subtitle_en``,
  ``subtitle_zh``, ``subtitle_missing``; probe values ``duration_s``, ``fps``, ``width``, ``height``,
  ``num_video_frames``, ``audio_s`` (the audio track's own length), ``audio_shortfall_s`` (seconds of
  silence appended to ``audio`` because the track ends before the video; 0.0 when it does not;
  absent, read as null, in shards written before schema version 2) (and ``faces`` when the face
  check ran);
- media (when ``annotate.store_media``): ``frames`` (JPEG bytes, in time order) and ``audio`` (a FLAC
  file's bytes, 16 kHz mono, at least as long as the video: a shorter track is padded with silence);
- the method's outputs: ``audio_clue``, ``video_clue`` (S0 pre-labels), or ``av_clue`` (one
  audio-video model's pre-label, ``annotate.clues: omni``; the other two are then null),
  ``description_en`` (the S2 merged description), ``description_zh`` (its translation),
  ``ov_labels`` (open-vocabulary labels, lower-case), ``ov_raw`` (the label model's raw answer),
  ``audio_features`` / ``face_expressions`` (the numbers behind the clues of a ``signal`` audio /
  video role, null otherwise: ``AUDIO_FEATURE_FIELDS`` of the eGeMAPS functionals plus an arousal
  estimate (each null when nothing sounds; arousal null when nothing is speech); faces per sampled
  frame and the main face's expression probabilities, per frame and
  their mean over the frames with a face, in the order of ``labels``) and ``config_fingerprint``
  (digest of the output-affecting settings, models and prompts that made the row, see
  ``pipelines.provenance``).
Failures (``OUTPUT/failures/``): ``name, stage, reason, outcome, clip``.

EMER-Fine: the reviewed descriptions, a CSV ``name, english`` (MER layout; ``chinese`` and
``openset`` optional) whose media come from EMER-Coarse rows of the same names. ``emer export fine``
writes every cell through ``spreadsheet_safe`` (a cell a spreadsheet would run as a formula gets a
leading ``'``); its readers take the text back with ``from_spreadsheet_safe``.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

SCHEMA_VERSION = "2"  # 2: ``audio_shortfall_s`` added (older shards lack it; readers take it as null)
SAMPLE_RATE = 16000  # Hz: every waveform in emer is 16 kHz mono

OK, REJECTED, FAILED = "ok", "rejected", "failed"
OUTCOMES = (OK, REJECTED, FAILED)

NAME, CLIP = "name", "clip"
FRAMES, AUDIO = "frames", "audio"
DESCRIPTION_EN, DESCRIPTION_ZH = "description_en", "description_zh"
OV_LABELS, OV_RAW = "ov_labels", "ov_raw"
SUBTITLE = "subtitle"  # the subtitle in annotate.subtitle_language: what the prompts get
SUBTITLE_EN, SUBTITLE_ZH, SUBTITLE_MISSING = "subtitle_en", "subtitle_zh", "subtitle_missing"
AUDIO_CLUE, VIDEO_CLUE, AV_CLUE = "audio_clue", "video_clue", "av_clue"
CLUE_COLUMNS = (AUDIO_CLUE, VIDEO_CLUE, AV_CLUE)
# The clue columns a run writes, by ``annotate.clues``: the audio and video LLMs', or the omni model's
CLUES_OF = {"separate": (AUDIO_CLUE, VIDEO_CLUE), "omni": (AV_CLUE,)}
CONFIG_FINGERPRINT = "config_fingerprint"  # per sample: digest of the settings and models that made it

BASE_COLUMNS = (
    NAME,
    CLIP,
    SUBTITLE_EN,
    SUBTITLE_ZH,
    SUBTITLE_MISSING,
    "duration_s",
    "fps",
    "width",
    "height",
    "num_video_frames",
    "audio_s",
    "audio_shortfall_s",
)
MEDIA_COLUMNS = (FRAMES, AUDIO)
LLM_COLUMNS = (*CLUE_COLUMNS, DESCRIPTION_EN, DESCRIPTION_ZH, OV_LABELS, OV_RAW)
AUDIO_FEATURES, FACE_EXPRESSIONS = "audio_features", "face_expressions"  # a signal role's numbers
SIGNAL_COLUMNS = (AUDIO_FEATURES, FACE_EXPRESSIONS)
AUDIO_FEATURE_FIELDS = (  # eGeMAPSv02 functionals (pipelines.signals.prosody.FEATURES) + arousal
    "pitch_semitones",
    "pitch_variation",
    "pitch_range_semitones",
    "loudness",
    "loudness_peaks_per_s",
    "voiced_segments_per_s",
    "mean_voiced_segment_s",
    "jitter",
    "shimmer_db",
    "hnr_db",
    "arousal",
)
FAILURE_COLUMNS = (NAME, "stage", "reason", "outcome", CLIP)

# EMER-Fine quality columns (``emer filter``, ``DATA/quality/``): the verdict and the rules' numbers
QUALITY_PASS, QUALITY_FLAGS, QUALITY_REASONS = "quality_pass", "quality_flags", "quality_reasons"
QUALITY_WORDS, QUALITY_NGRAM_COUNT = "quality_words", "quality_ngram_count"
QUALITY_ASCII_SHARE, QUALITY_CJK_SHARE = "quality_ascii_share", "quality_cjk_share"
QUALITY_OFF_WHEEL, QUALITY_AGREEMENT = "quality_off_wheel", "quality_agreement"
QUALITY_NUMBERS: dict[str, pa.DataType] = {
    QUALITY_WORDS: pa.int32(),
    QUALITY_NGRAM_COUNT: pa.int32(),
    QUALITY_ASCII_SHARE: pa.float64(),
    QUALITY_CJK_SHARE: pa.float64(),
    QUALITY_OFF_WHEEL: pa.int32(),
    QUALITY_AGREEMENT: pa.float64(),
}
QUALITY_VERDICT = (QUALITY_PASS, QUALITY_FLAGS, QUALITY_REASONS)
QUALITY_COLUMNS = (NAME, *QUALITY_VERDICT, *QUALITY_NUMBERS)

# EMER-Fine CSV (MER layout)
FINE_NAME, FINE_ENGLISH, FINE_CHINESE, FINE_OPENSET = "name", "english", "chinese", "openset"
# A CSV cell starting with one of these is run as a formula by spreadsheets (OWASP's list)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    """``text`` as a CSV cell no spreadsheet runs: one starting with ``FORMULA_START`` (or with the
    quote itself, so the escape can be undone) gets a leading ``'``. ``from_spreadsheet_safe`` undoes
    it exactly; other cells are left as they are."""
    return "'" + text if text[:1] in (*FORMULA_START, "'") else text


def from_spreadsheet_safe(text: str) -> str:
    """The text ``spreadsheet_safe`` escaped (a cell it left alone comes back as it is)."""
    return text[1:] if text[:1] == "'" and text[1:2] in (*FORMULA_START, "'") else text


TYPES: dict[str, pa.DataType] = {
    NAME: pa.string(),
    CLIP: pa.string(),
    SUBTITLE: pa.string(),
    SUBTITLE_EN: pa.string(),
    SUBTITLE_ZH: pa.string(),
    SUBTITLE_MISSING: pa.bool_(),
    "outcome": pa.string(),
    "stage": pa.string(),
    "reason": pa.string(),
    "duration_s": pa.float64(),
    "fps": pa.float64(),
    "width": pa.int32(),
    "height": pa.int32(),
    "num_video_frames": pa.int32(),
    "has_audio": pa.bool_(),
    "audio_s": pa.float64(),
    "audio_shortfall_s": pa.float64(),
    "faces": pa.list_(pa.int32()),
    FRAMES: pa.list_(pa.binary()),
    AUDIO: pa.binary(),
    AUDIO_CLUE: pa.string(),
    VIDEO_CLUE: pa.string(),
    AV_CLUE: pa.string(),
    DESCRIPTION_EN: pa.string(),
    DESCRIPTION_ZH: pa.string(),
    OV_LABELS: pa.list_(pa.string()),
    OV_RAW: pa.string(),
    AUDIO_FEATURES: pa.struct([pa.field(f, pa.float64()) for f in AUDIO_FEATURE_FIELDS]),
    FACE_EXPRESSIONS: pa.struct(
        [
            pa.field("labels", pa.list_(pa.string())),
            pa.field("faces_per_frame", pa.list_(pa.int32())),
            pa.field("mean", pa.list_(pa.float64())),
            pa.field("per_frame", pa.list_(pa.list_(pa.float64()))),
        ]
    ),
    CONFIG_FINGERPRINT: pa.string(),
    QUALITY_PASS: pa.bool_(),
    QUALITY_FLAGS: pa.list_(pa.string()),
    QUALITY_REASONS: pa.list_(pa.string()),
    **QUALITY_NUMBERS,
}


def coarse_schema(columns: Sequence[str] = BASE_COLUMNS + MEDIA_COLUMNS + LLM_COLUMNS) -> pa.Schema:
    """The Arrow schema of an EMER-Coarse table with ``columns`` (all of them by default)."""
    return pa.schema([pa.field(c, TYPES[c]) for c in columns])


def rows_to_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] = ()) -> pa.Table:
    """Rows as an Arrow table with the schema's column types; ``columns`` come first, present even if null."""
    names: dict[str, None] = dict.fromkeys(columns)
    names.update(dict.fromkeys(c for c in TYPES if c not in names and any(c in r for r in rows)))
    for r in rows:
        names.update(dict.fromkeys(k for k in r if k not in names))
    fields = [pa.field(n, TYPES.get(n, _infer(rows, n))) for n in names]
    return pa.Table.from_pylist([{n: r.get(n) for n in names} for r in rows], schema=pa.schema(fields))


def _infer(rows: Sequence[dict[str, Any]], name: str) -> pa.DataType:
    values = [r.get(name) for r in rows if r.get(name) is not None]
    return pa.array(values).type if values else pa.null()


def encode_audio(waveform: np.ndarray) -> bytes:
    """A 16 kHz mono float32 waveform as the ``audio`` column stores it: a FLAC file (16-bit)."""
    import soundfile as sf  # deferred: libsndfile is only needed where audio is handled

    buf = io.BytesIO()
    sf.write(buf, np.clip(waveform, -1.0, 1.0), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def decode_audio(value: Any) -> np.ndarray:
    """The ``audio`` column's value as a float32 waveform: FLAC/WAV/OGG bytes (what ``emer annotate``
    writes), raw little-endian float32 bytes, a list or an array of floats."""
    if value is None:
        return np.zeros(0, dtype=np.float32)
    if not isinstance(value, (bytes, bytearray, memoryview)):
        return np.asarray(value, dtype=np.float32).reshape(-1)
    data = bytes(value)
    if data[:4] in (b"fLaC", b"RIFF", b"OggS"):
        import soundfile as sf  # deferred: libsndfile is only needed where audio is handled

        wave, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        if rate != SAMPLE_RATE:
            raise ValueError(f"audio at {rate} Hz, expected {SAMPLE_RATE}")
        return wave.mean(axis=1).astype(np.float32)
    if len(data) % 4:
        raise ValueError(f"audio bytes: length {len(data)} is neither FLAC/WAV/OGG nor raw float32")
    return np.frombuffer(data, dtype="<f4").astype(np.float32)
