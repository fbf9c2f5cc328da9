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

An export is untrusted input: each task is checked on its own (``check_task``: types, and the text
sizes of ``reviewlog.MAX_CHARS``); a bad one is reported (which task, why) and skipped, the good ones
are imported. The file is read up to ``MAX_EXPORT_BYTES``, and a task nested too deep for Python's
JSON reader is cut out (``MAX_DEPTH``) without losing the tasks around it.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from core import storage
from core.schema import DESCRIPTION_EN, DESCRIPTION_ZH, NAME, OV_LABELS
from pipelines.fine import reviewlog
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
NOT_EXPORT = (
    "not a Label Studio JSON export (a list of tasks, each with data and annotations); in Label "
    "Studio use Export -> JSON (not JSON-MIN or CSV), and give that file, not the tasks emer wrote"
)


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
        "subtitle": row.get("subtitle_en") or row.get("subtitle_zh") or "",
        "audio_clue": row.get("audio_clue") or "",
        "video_clue": row.get("video_clue") or "",
        "description": shown[DESCRIPTION_EN],
        "ov_labels": labels,
        "description_zh": row.get(DESCRIPTION_ZH) or "",
        "quality_flags": ", ".join(row.get("quality_flags") or []),
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

MAX_EXPORT_BYTES = 256 * 2**20  # a Label Studio export read whole; far above 10k annotated tasks
MAX_DEPTH = 32  # a task nested deeper is refused (Label Studio's tasks are 6 levels deep)
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},]')  # a JSON string, a bracket or a comma


def read_export(uri: str) -> list[Any]:
    """The tasks of a Label Studio JSON export, each still to be checked by ``check_task`` (when the
    file is nested too deep for ``json.loads``, its tasks are read one by one and a task nested deeper
    than ``MAX_DEPTH`` comes back as a ``TooDeep``); ValueError naming the file and the fix when the
    file as a whole is not an export (or is over ``MAX_EXPORT_BYTES``)."""
    if not storage.exists(uri):
        raise FileNotFoundError(f"{uri}: no such file; fix --input")
    size = storage.file_size(uri)
    if size > MAX_EXPORT_BYTES:
        raise ValueError(
            f"{uri}: {size} bytes, over the {MAX_EXPORT_BYTES} an export is read up to; "
            "export the project's tasks in parts (Label Studio filters) and import each"
        )
    try:
        text = storage.read_bytes(uri).decode("utf-8-sig")
        tasks = json.loads(text)
    except RecursionError:
        tasks = _split_deep(uri, text)
    except ValueError as err:
        raise ValueError(f"{uri}: not JSON ({str(err)[:200]}); {NOT_EXPORT}") from None
    if not isinstance(tasks, list):
        raise ValueError(f"{uri}: {NOT_EXPORT}")
    if tasks and not any(isinstance(t, dict) and "annotations" in t for t in tasks):
        raise ValueError(f"{uri}: no task has annotations; {NOT_EXPORT}")
    return tasks


class TooDeep(dict):
    """Stands for a task nested deeper than ``MAX_DEPTH`` (never parsed)."""


def _split_deep(uri: str, text: str) -> list[Any]:
    """The tasks of an export nested too deep for ``json.loads`` as a whole: the top-level array cut
    into its elements without recursion, each parsed unless nested deeper than ``MAX_DEPTH``."""
    tasks, depth, deepest, begin = [], 0, 0, None
    for m in _TOKEN.finditer(text):
        tok = m.group()
        if tok[0] == '"':
            continue
        if tok in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if depth == 1:
                begin, deepest = m.end(), 1
            continue
        if depth == 1 and (tok == "," or tok in "]}"):
            item = text[begin : m.start()]
            if item.strip():
                tasks.append(TooDeep() if deepest - 1 > MAX_DEPTH else _loads(uri, item))
            begin, deepest = m.end(), 1
        if tok in "]}":
            depth -= 1
            if depth == 0:
                break
    if depth or text.lstrip()[:1] != "[":
        raise ValueError(f"{uri}: not JSON (nested too deep to read, and not an array); {NOT_EXPORT}")
    return tasks


def _loads(uri: str, item: str) -> Any:
    try:
        return json.loads(item)
    except (ValueError, RecursionError) as err:
        raise ValueError(f"{uri}: not JSON ({str(err)[:200]}); {NOT_EXPORT}") from None


def _texts(value: Any, where: str, limit: int) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ValueError(f"{where}: must be a list of text")
    if sum(map(len, value)) > limit:
        raise ValueError(f"{where}: {sum(map(len, value))} characters, over the {limit} kept")
    return value


def check_task(task: Any) -> None:
    """ValueError saying what is wrong with one task of an export: its types (an object with a
    ``data`` object whose ``name`` is text, a list of annotations, each with a list of results of
    text values) and its sizes (``reviewlog.MAX_CHARS``)."""
    if isinstance(task, TooDeep):
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
        raise ValueError("not a task (an object with a 'data' object)")
    data, cap = task["data"], reviewlog.MAX_CHARS
    if not isinstance(data.get("name"), str) or not data["name"]:
        raise ValueError("data.name must be the sample name (text)")
    for key, limit in (("description", cap[DESCRIPTION_EN]), ("ov_labels", cap[OV_LABELS]), ("base", 64)):
        if not isinstance(data.get(key) or "", str) or len(data.get(key) or "") > limit:
            raise ValueError(f"data.{key} must be text of at most {limit} characters")
    annotations = task.get("annotations") or []
    if not isinstance(annotations, list) or not all(isinstance(a, dict) for a in annotations):
        raise ValueError("annotations must be a list of objects")
    limits = {"description": cap[DESCRIPTION_EN], "labels": cap[OV_LABELS], "reason": cap["reason"]}
    for a in annotations:
        results = a.get("result") or []
        if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
            raise ValueError("an annotation's result must be a list of objects")
        for r in results:
            value, name = r.get("value") or {}, r.get("from_name")
            if not isinstance(value, dict) or not isinstance(name, (str, type(None))):
                raise ValueError("a result's from_name must be text and its value an object")
            if "text" in value:
                _texts(value["text"], f"result {name!r} text", limits.get(name, cap["reason"]))
            if "choices" in value:
                _texts(value["choices"], f"result {name!r} choices", 100)


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
