"""The manifest (``OUTPUT/manifest.json``) and dataset card (``OUTPUT/README.md`` + label plot).

Both describe the whole output (every run that wrote into it), read back from the shards' small
columns: counts by outcome (they add up to the inputs), failures by stage, subtitle coverage, the
label vocabulary, labels per sample, the most frequent labels, the resolved config, model ids and
package versions; every URL in them has its credentials and secret query parameters redacted
(``core.secrets.redact_tree``). ``emer filter`` adds a "Quality filters" section (rows flagged per
rule), kept when the card is rewritten.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os
import platform
import posixpath
import warnings
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any

from core import storage
from core.config import dump_yaml, to_plain
from core.fingerprint import fingerprint
from core.llm.tiny import MARKER as TINY_MARKER
from core.plots import pyplot
from core.schema import CONFIG_FINGERPRINT, NAME, OV_LABELS, OV_RAW, SCHEMA_VERSION, SUBTITLE_MISSING
from core.secrets import redact_tree
from pipelines import provenance, sink
from pipelines.config import RESUME_IGNORED

log = logging.getLogger(__name__)

PACKAGES = (
    "emer",
    "ray",
    "pyarrow",
    "numpy",
    "decord",
    "av",
    "soundfile",
    "pillow",
    "transformers",
    "torch",
    "openai",
    "opencv-python-headless",
    "opensmile",
    "facenet-pytorch",
    "fer",
    "h5py",
)
TOP_LABELS = 20
QUALITY_SUMMARY = "quality/summary.json"
QUALITY_BEGIN, QUALITY_END = "<!-- emer filter: begin -->", "<!-- emer filter: end -->"
SCHEMA_DOC = {
    "name": "sample id (clip file stem)",
    "clip": "source clip URI",
    "subtitle_en / subtitle_zh": "subtitle text (empty when the clip had no subtitle row)",
    SUBTITLE_MISSING: "true when the subtitle CSV had no row for the clip",
    "duration_s, fps, width, height, num_video_frames": "video stream metadata (source size)",
    "audio_s": "decoded audio track length in seconds",
    "audio_shortfall_s": "seconds of silence appended to `audio` where the track ends before the video "
    "(0 when it does not)",
    "frames": "list of JPEG frames sampled uniformly, frame_size x frame_size",
    "audio": "16 kHz mono 16-bit FLAC, padded with silence to the video length",
    "audio_clue / video_clue": "S0 clues of the audio / video LLM, or measured (backend signal)",
    "audio_features": "signal audio role: eGeMAPSv02 functionals behind the audio clue, and arousal",
    "face_expressions": "signal video role: faces per frame, main face's expression probabilities",
    "description_en / description_zh": "disambiguated description (S2) and its translation",
    OV_LABELS: "open-vocabulary emotion labels (lower-case)",
    OV_RAW: "the label LLM's raw answer",
}


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def _read(output: str, kind: str, columns: list[str]) -> list[dict[str, Any]]:
    uri = storage.join(output, kind)
    if not storage.list_files(uri, suffixes=[".parquet"], skip_temp=True):
        return []
    return storage.read_table(uri, columns=columns).to_pylist()


def label_stats(samples: list[dict[str, Any]]) -> dict[str, Any]:
    per = [len(r.get(OV_LABELS) or []) for r in samples]
    counts = Counter(label for r in samples for label in (r.get(OV_LABELS) or []))
    return {
        "vocabulary": len(counts),
        "labels_per_sample": round(sum(per) / len(per), 3) if per else 0.0,
        "samples_without_labels": sum(1 for n in per if n == 0),
        "labels_per_sample_histogram": dict(sorted(Counter(per).items())),
        "most_frequent": counts.most_common(TOP_LABELS),
    }


def write_manifest_and_card(
    cfg,
    listing,
    state: sink.OutputState,
    run: dict[str, Any],
    input_uri: str,
    subtitles_uri: str,
    output: str,
    resolved: Any = None,
) -> dict[str, Any]:
    names = listing.names
    counts = {"inputs": len(names), **state.counts(names)}
    counts["pending"] = counts["inputs"] - sum(counts[o] for o in sink.OUTCOMES)
    columns = [NAME, SUBTITLE_MISSING] + ([OV_LABELS] if cfg.llm_stages else [])
    samples = _read(output, sink.SAMPLES, columns)
    failures = _read(output, sink.FAILURES, ["name", "stage", "outcome"])
    manifest = {
        "dataset": "EMER-Coarse",
        "schema_version": SCHEMA_VERSION,
        "written": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        # absolute, so that `emer review`, started from any folder, serves the clips from it
        "input": input_uri if "://" in input_uri else os.path.abspath(input_uri),  # local: absolute
        "subtitles": subtitles_uri,
        "output": output,
        "counts": counts,
        "this_run": run,
        "failures_by_stage": dict(Counter(f"{r['outcome']}:{r['stage']}" for r in failures)),
        "subtitles_info": {
            "rows": listing.subtitle_rows,
            "language_in_prompts": cfg.subtitle_language,
            "clips_without_subtitle": len(listing.missing_subtitles),
            "clips_without_subtitle_names": listing.missing_subtitles[:1000],
            "subtitles_without_clip": len(listing.orphan_subtitles),
            "subtitles_without_clip_names": listing.orphan_subtitles[:1000],
            "samples_with_empty_subtitle": sum(1 for r in samples if r[SUBTITLE_MISSING]),
        },
        "labels": label_stats(samples) if cfg.llm_stages else None,
        "models": cfg.model_ids() if cfg.llm_stages else {},
        "random_weight_roles": _random_roles(cfg) if cfg.llm_stages else [],
        "generated_samples": _generated_samples(input_uri),
        "prompt_variants": cfg.prompt_variants() if cfg.llm_stages else {},
        "config": to_plain(cfg),
        "config_fingerprint": fingerprint(to_plain(cfg), RESUME_IGNORED),
        "provenance": provenance.steps(cfg),
        "row_fingerprints": _row_fingerprints(output),
        "versions": versions(),
    }
    saved = redact_tree(manifest)  # input / subtitles / config URLs: no credentials, no ?api_key=
    text = json.dumps(saved, indent=2, ensure_ascii=False)
    storage.write_text(storage.join(output, "manifest.json"), text)
    storage.write_text(storage.join(output, "config.yaml"), dump_yaml(resolved or cfg))
    plot = _plot(manifest["labels"]) if manifest["labels"] else None
    if plot:
        storage.write_bytes(storage.join(output, "label_distribution.png"), plot)
    text = render_card(saved, plot is not None)
    quality = storage.join(output, QUALITY_SUMMARY)
    if storage.exists(quality):
        text = with_quality_section(text, json.loads(storage.read_text(quality)))
    storage.write_text(storage.join(output, "README.md"), text)
    return manifest


def _plot(labels: dict[str, Any]) -> bytes | None:
    if not labels["most_frequent"]:
        return None
    plt = pyplot()
    names, values = zip(*reversed(labels["most_frequent"]))
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(names) + 1.2))
    ax.barh(range(len(names)), values, color="#4a7ab5")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("samples with the label")
    ax.set_title(f"Most frequent OV labels (vocabulary {labels['vocabulary']})")
    buf = io.BytesIO()
    with warnings.catch_warnings():  # without a CJK font (see core.plots) Chinese labels plot as boxes
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        fig.tight_layout()
        fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")  # long labels are not cut off
    plt.close(fig)
    return buf.getvalue()


def render_card(m: dict[str, Any], has_plot: bool) -> str:
    return "\n".join(_contents(m) + _labels(m, has_plot) + _about(m))


def _contents(m: dict[str, Any]) -> list[str]:
    c, s = m["counts"], m["subtitles_info"]
    lines = [
        "# EMER-Coarse annotations",
        "",
        f"Written by `emer annotate` ({m['written']}) from `{m['input']}` with subtitles `{m['subtitles']}`.",
        "Automatic annotations, not checked by people: expect some inaccurate clues and labels.",
        "",
        "## Contents",
        "",
        "| outcome | clips | where |",
        "| --- | ---: | --- |",
        f"| inputs | {c['inputs']} | |",
        f"| annotated | {c['ok']} | `samples/*.parquet` |",
        f"| rejected by the checks | {c['rejected']} | `failures/*.parquet` |",
        f"| failed | {c['failed']} | `failures/*.parquet` |",
        f"| not yet processed | {c['pending']} | |",
        "",
    ]
    if m["failures_by_stage"]:
        by_stage = ", ".join(f"{k} {v}" for k, v in sorted(m["failures_by_stage"].items()))
        lines += [f"Not annotated, by outcome and stage: {by_stage}.", ""]
    lines += [
        f"Subtitles ({s['language_in_prompts']} in the prompts): {s['clips_without_subtitle']} clip(s) "
        "had no subtitle row and were annotated with an empty subtitle; "
        f"{s['subtitles_without_clip']} subtitle row(s) had no clip.",
        "",
    ]
    return lines


def _labels(m: dict[str, Any], has_plot: bool) -> list[str]:
    lab = m["labels"]
    if not lab:
        return []
    lines = [
        "## Labels",
        "",
        f"- samples: {m['counts']['ok']}",
        f"- label vocabulary: {lab['vocabulary']}",
        f"- labels per sample: {lab['labels_per_sample']} on average "
        f"({lab['samples_without_labels']} sample(s) without any)",
        "",
        "| label | samples |",
        "| --- | ---: |",
    ]
    lines += [f"| {_cell(k)} | {v} |" for k, v in lab["most_frequent"]]
    return lines + ["", "![label distribution](label_distribution.png)" if has_plot else "", ""]


def _about(m: dict[str, Any]) -> list[str]:
    lines = ["## Columns of `samples/`", "", "| column | meaning |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in SCHEMA_DOC.items()]
    lines += [
        "",
        "## How it was made",
        "",
        "Clips are decoded (frames uniformly sampled, audio at 16 kHz; audio that ends before the video "
        "is padded with silence, see `audio_shortfall_s`) and filtered (duration, audio present and not "
        "grossly mismatched with the video: under `av_min_audio_fraction` of it, or longer than it "
        "beyond `av_tolerance_s`). "
        + _clue_text(m.get("provenance") or {})
        + " A text LLM merges both clues with the quoted subtitle (S2), "
        "the description is translated, and the open-vocabulary labels are extracted from it. Method "
        "and prompts: EMER (Lian et al.), AffectGPT section 3, MER2024 sections 2.1 and 2.3.",
        "",
    ]
    if m.get("generated_samples"):
        lines += [
            "The input is emer's generated sample set (`samples.json` beside the clips): the voices "
            "are espeak-ng reading the subtitles with a prosody per scripted emotion, and the faces "
            "are drawn shapes: the clips show no real faces and no real people.",
            "",
        ]
    if m.get("provenance"):
        lines += ["Provenance of each step (also in `manifest.json`):", ""]
        lines += ["| step | role | backend | model | revision | prompt (hash) | sampling |"]
        lines += ["| --- | --- | --- | --- | --- | --- | --- |"]
        for step, p in m["provenance"].items():
            samp = ", ".join(f"{k} {v}" for k, v in p["sampling"].items())
            if p["backend"] == "signal":  # measured: no model samples anything
                samp = "none (measured)"
            cells = (step, p["role"], p["backend"], p["model"], p["revision"])
            lines.append(
                "| " + " | ".join(_cell(c) for c in cells) + f" | {p['prompt']} ({p['prompt_hash']}) "
                f"| {_cell(samp)} |"
            )
        lines += ["", f"emer {next(iter(m['provenance'].values()))['emer']}.", ""]
    if m["models"]:
        lines += ["Models:", ""]
        for role, model in m["models"].items():
            tiny = (
                " (tiny random weights: its text is noise)"
                if role in m.get("random_weight_roles", [])
                else ""
            )
            variant = m.get("prompt_variants", {}).get(role)
            how = "the papers' prompts, zero-shot"
            if model.startswith("signal:"):
                how = "measured, no prompt (pipelines/signals)"
            elif variant:
                shots = ", ".join(f"{k} {n}" for k, n in variant["examples"].items()) or "none"
                how = f"prompt variant: replaced {', '.join(variant['replaced']) or 'none'}; few-shot {shots}"
            lines.append(f"- {role}: `{model}`{tiny}; {how}")
        lines += [
            "",
            "The variant's texts and examples are in `config.yaml` (`annotate.<role>.prompts`).",
            "",
        ]
    lines += [
        "The full config, counts and package versions are in `manifest.json`; the resolved config in "
        "`config.yaml`.",
        "",
    ]
    return lines


def quality_lines(summary: dict[str, Any]) -> list[str]:
    """The card's "Quality filters" section (between markers, so a rerun replaces it)."""
    lines = [QUALITY_BEGIN, "## Quality filters", ""]
    lines += [
        f"`emer filter` ({summary['written']}): {summary['passed']} of {summary['rows']} samples pass every "
        "rule; the flags and reasons of each are in `quality/*.parquet` (`samples/` is unchanged).",
        "",
        "| rule | samples flagged |",
        "| --- | ---: |",
    ]
    lines += [f"| {rule} | {n} |" for rule, n in summary["by_flag"].items()]
    if summary.get("skipped_rules"):
        lines += ["", f"Rules not applied: {', '.join(summary['skipped_rules'])}."]
    return lines + ["", QUALITY_END]


def with_quality_section(text: str, summary: dict[str, Any]) -> str:
    """``text`` (a card) with its quality section replaced, else put before the columns table."""
    section = "\n".join(quality_lines(summary))
    if QUALITY_BEGIN in text and QUALITY_END in text:
        head, rest = text.split(QUALITY_BEGIN, 1)
        return head + section + rest.split(QUALITY_END, 1)[1]
    anchor = "## Columns of `samples/`"
    if anchor in text:
        return text.replace(anchor, section + "\n\n" + anchor, 1)
    return text.rstrip("\n") + "\n\n" + section + "\n"


def update_quality_section(output: str, summary: dict[str, Any]) -> None:
    """Rewrite the quality section of ``OUTPUT/README.md`` (nothing else of the card changes)."""
    uri = storage.join(output, "README.md")
    text = storage.read_text(uri) if storage.exists(uri) else "# EMER-Coarse annotations\n"
    storage.write_text(uri, with_quality_section(text, summary))


def _row_fingerprints(output: str) -> dict[str, int]:
    """``config_fingerprint`` -> samples made under it (more than one: an accepted mix)."""
    try:
        rows = _read(output, sink.SAMPLES, [CONFIG_FINGERPRINT])
    except Exception as err:  # noqa: BLE001 - shards written before the column existed
        log.warning("samples without %s (written by an older emer): %s", CONFIG_FINGERPRINT, err)
        return {}
    return dict(Counter(r[CONFIG_FINGERPRINT] or "none" for r in rows))


CLUE_TEXT = {
    ("audio_clue", False): "An audio LLM describes the emotion clues of the audio without the subtitle (S0).",
    ("audio_clue", True): "The audio clue is measured, not generated (backend signal): openSMILE's "
    "eGeMAPSv02 functionals (pitch level and range, loudness, speech rate, jitter, shimmer, HNR) "
    "put into words against a reference (`pipelines/signals/norms.json`, which states its source); "
    "the numbers are in `audio_features`.",
    ("video_clue", False): "A video LLM describes the facial, body and scene clues of the frames (S0).",
    ("video_clue", True): "The video clue is measured, not generated (backend signal): faces per "
    "sampled frame (MTCNN) and the main face's expression probabilities (FER2013 mini-Xception); a "
    "clip without a detected face says so; the numbers are in `face_expressions`.",
    ("av_clue", False): "One audio-video LLM describes the emotion clues of the clip (S0).",
}


def _clue_text(steps: dict[str, Any]) -> str:
    """What made the clues, step by step (an LLM, or a measured signal)."""
    out = [CLUE_TEXT.get((s, p["backend"] == "signal")) for s, p in steps.items()]
    return " ".join(t for t in out if t) or CLUE_TEXT[("audio_clue", False)]


def _generated_samples(input_uri: str) -> bool:
    """The input is emer's generated sample set (``pipelines.samples`` writes samples.json beside it)."""
    try:
        return storage.exists(storage.join(posixpath.dirname(input_uri.rstrip("/")), "samples.json"))
    except Exception:  # noqa: BLE001 - an unreadable location: no claim about the input
        return False


def _random_roles(cfg: Any) -> list[str]:
    """Roles whose model folder is a tiny random-weight checkpoint (``core.llm.tiny``'s marker)."""
    return [r for r in cfg.roles() if (Path(cfg.llm(r).model).expanduser() / TINY_MARKER).is_file()]


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("<", "&lt;").replace("\n", " ")
