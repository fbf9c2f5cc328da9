"""Label Studio round trip: ``emer export label-studio`` writes tasks, ``emer import label-studio``
turns a Label Studio JSON export into review decisions (``pipelines.fine.reviewlog.append``).

Tasks (Label Studio's import format, plain JSON): ``[{"id", "data": {"video", "name", "subtitle",
"audio_clue", "video_clue", "description", "ov_labels": "a, b", "description_zh", "quality_flags",
"base"}, "predictions": [...]}]``; ``base`` is the review log's ``state_hash`` of the row shown
(its fields and its newest verdict), so an import on a row changed or decided since the export is a
conflict, not an overwrite. The predictions pre-fill
the two text areas with the current description and labels. ``LABEL_CONFIG`` (written beside the
tasks) is the labeling interface: the video, the clues, a TextArea for the description and one for
the labels, accept/reject Choices and a reason. An import reads each task's newest annotation that
was not cancelled: reject, or accept (an edit when a text area differs from what was shown). Tasks
are keyed by ``data.name`` (Label Studio assigns its own ids).

An export is untrusted input (``labelstudio_read``): each task is checked on its own; a bad one is
reported (which task, why) and skipped, the good ones are imported.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from core import storage
from core.schema import (
    AUDIO_CLUE,
    DESCRIPTION_EN,
    DESCRIPTION_ZH,
    NAME,
    OV_LABELS,
    QUALITY_FLAGS,
    SUBTITLE_EN,
    SUBTITLE_ZH,
    VIDEO_CLUE,
)
from pipelines.fine import reviewlog
from pipelines.fine.labelstudio_read import check_task, read_export
from pipelines.fine.reviewlog import Conflict, Decision, content_hash, current, newest, read_logs, state_hash
from pipelines.fine.rules import as_labels
from pipelines.fine.view import quality_summary, read_filtered, read_samples, text_columns

log = logging.getLogger(__name__)

LABEL_CONFIG = """<View>
  <Header value="$name"/>
  <Video name="video" value="$video"/>
  <Text name="subtitle" value="$subtitle"/>
  <Text name="audio_clue" value="$audio_clue"/>
  <Text name="video_clue" value="$video_clue"/>
  <Text name="flags" value="$quality_flags"/>
  <Header value="Description (edit it, or keep it as it is)"/>
  <TextArea name="description" toName="video" editable="true" maxSubmissions="1" rows="5"/>
  <Header value="Open-vocabulary emotion labels, comma-separated"/>
  <TextArea name="labels" toName="video" editable="true" maxSubmissions="1" rows="1"/>
  <Choices name="verdict" toName="video" choice="single" required="true" showInline="true">
    <Choice value="accept"/>
    <Choice value="reject"/>
  </Choices>
  <TextArea name="reason" toName="video" maxSubmissions="1" rows="1" placeholder="why (optional)"/>
</View>
"""


def _rows(data: str, all_rows: bool) -> list[dict[str, Any]]:
    if quality_summary(data) is None:
        log.info("export label-studio: %s has no quality columns (emer filter): every row goes", data)
        return sorted(read_samples(data, text_columns(data)).to_pylist(), key=lambda r: r[NAME])
    return read_filtered(data, text_columns(data), passing_only=not all_rows).to_pylist()


def task_of(i: int, row: dict[str, Any], decision: Decision | None, video_url: str) -> dict[str, Any]:
    """One Label Studio task for ``row`` showing its current fields (after its newest ``decision``)."""
    shown = current(row, decision)
    clip = str(row.get("clip") or "")
    labels = ", ".join(shown[OV_LABELS])
    file = clip.rsplit("/", 1)[-1]
    video = video_url.format(clip=clip, file=file, name=row[NAME]) if video_url else clip
    data = {
        "video": video,
        "name": row[NAME],
        "subtitle": row.get(SUBTITLE_EN) or row.get(SUBTITLE_ZH) or "",
        "audio_clue": row.get(AUDIO_CLUE) or "",
        "video_clue": row.get(VIDEO_CLUE) or "",
        "description": shown[DESCRIPTION_EN],
        "ov_labels": labels,
        "description_zh": row.get(DESCRIPTION_ZH) or "",
        "quality_flags": ", ".join(row.get(QUALITY_FLAGS) or []),
        "base": state_hash(row, decision),
    }
    result = [_text("description", shown[DESCRIPTION_EN]), _text("labels", labels)]
    return {"id": i, "data": data, "predictions": [{"model_version": "emer-coarse", "result": result}]}


def _text(from_name: str, text: str) -> dict[str, Any]:
    return {"from_name": from_name, "to_name": "video", "type": "textarea", "value": {"text": [text]}}


def export_tasks(data: str, output: str, video_url: str = "", all_rows: bool = False) -> dict[str, Any]:
    """Write the tasks JSON and ``<output stem>.label_config.xml`` beside it; returns counts and paths."""
    decisions = newest(read_logs(data)[0])
    rows = _rows(data, all_rows)
    tasks = [task_of(i, r, decisions.get(r[NAME]), video_url) for i, r in enumerate(rows, 1)]
    storage.write_text(output, json.dumps(tasks, indent=1, ensure_ascii=False))
    config = (output[:-5] if output.lower().endswith(".json") else output) + ".label_config.xml"
    storage.write_text(config, LABEL_CONFIG)
    return {"tasks": len(tasks), "output": output, "label_config": config}


# ---------------------------------------------------------------- import


def _results(task: dict[str, Any]) -> dict[str, dict] | None:
    """``from_name -> value`` of the task's newest annotation that was not cancelled (None: none)."""
    live = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    if not live:
        return None

    def when(pair: tuple[int, dict]) -> tuple[str, int]:
        return str(pair[1].get("updated_at") or pair[1].get("created_at") or ""), pair[0]

    results = max(enumerate(live), key=when)[1].get("result") or []
    return {r.get("from_name"): r.get("value") or {} for r in results}


def decision_of(task: dict[str, Any], reviewer: str) -> Decision | None:
    """The review decision a task's annotation makes (None: not annotated); ValueError if unusable.
    ``task`` has passed ``check_task``."""
    data, results = task["data"], _results(task)
    if results is None:
        return None
    verdict = (results.get("verdict", {}).get("choices") or [None])[0]
    if verdict not in ("accept", "reject"):
        raise ValueError("its annotation has no accept/reject choice (the 'verdict' Choices)")
    shown = str(data.get("description") or "")
    before = {DESCRIPTION_EN: shown, OV_LABELS: as_labels(data.get("ov_labels"))}
    base = str(data.get("base") or content_hash(before))
    reason = " ".join(results.get("reason", {}).get("text") or []).strip()
    if verdict == "reject":
        why = reason or "rejected in Label Studio"
        return Decision(reviewer, str(data["name"]), "reject", base, before, None, why)
    after = dict(before)
    if "description" in results:
        after[DESCRIPTION_EN] = " ".join(results["description"].get("text") or []).strip()
    if "labels" in results:
        after[OV_LABELS] = as_labels(", ".join(results["labels"].get("text") or []))
    if not after[DESCRIPTION_EN]:
        raise ValueError("accepted with an empty description; reject it or write one")
    action = "accept" if after == before else "edit"
    return Decision(reviewer, str(data["name"]), action, base, before, after, reason)


def import_tasks(data: str, uri: str, reviewer: str) -> tuple[dict[str, int], list[str]]:
    """Append the decisions of a Label Studio export to ``DATA/review/<reviewer>.jsonl``; returns the
    counts and one problem line per task left out (the other tasks' decisions are all kept)."""
    reviewlog.check_reviewer(reviewer)
    tasks = read_export(uri)
    rows = {r[NAME]: r for r in read_samples(data, text_columns(data)).to_pylist()}
    counts = dict.fromkeys(("accept", "edit", "reject", "not_annotated", "already_imported", "skipped"), 0)
    problems: list[str] = []
    latest = newest(read_logs(data)[0])  # kept up to date as decisions are appended
    for i, task in enumerate(tasks):
        where = f"{uri} task {_task_label(task, i)}"
        try:
            check_task(task)
            outcome = _import_one(data, task, reviewer, rows, latest)
        except (ValueError, KeyError) as err:
            problems.append(f"{where}: {err}; skipped")
            outcome = "skipped"
        counts[outcome] += 1
    return counts, problems


def _task_label(task: Any, i: int) -> str:
    """``ID ('name')`` of a task for a problem line (its position when it has no usable id)."""
    data = task.get("data") if isinstance(task, dict) else None
    ident = task.get("id") if isinstance(task, dict) else None
    ident = ident if isinstance(ident, (int, str)) and len(str(ident)) <= 40 else f"#{i + 1}"
    name = data.get("name") if isinstance(data, dict) else None
    return f"{ident} ({name!r})" if isinstance(name, str) and len(name) <= 200 else f"{ident}"


def _import_one(
    data: str, task: dict[str, Any], reviewer: str, rows: dict[str, dict], latest: dict[str, Decision]
) -> str:
    name = task["data"].get("name")
    if name not in rows:
        raise ValueError(f"no sample named {name!r} in {data}/samples (a task of another dataset?)")
    decision = decision_of(task, reviewer)
    if decision is None:
        return "not_annotated"
    prev = latest.get(name)
    same = (decision.reviewer, decision.action, decision.base, decision.after)
    if prev and (prev.reviewer, prev.action, prev.base, prev.after) == same:
        return "already_imported"  # the same export imported again
    try:
        latest[name] = reviewlog.append(data, decision, rows[name])
    except Conflict as err:
        raise ValueError(f"{err} (re-export the task and review it again)") from None
    return decision.action
