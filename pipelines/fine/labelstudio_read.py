"""Reading a Label Studio JSON export as untrusted input, for ``labelstudio.import_tasks``.

The file is read up to ``MAX_EXPORT_BYTES`` (refused before reading past it). Each task is then
checked on its own (``check_task``): its types (an object with a ``data`` object whose ``name`` is
text, a list of annotation objects, each with a list of result objects whose ``text`` and
``choices`` are lists of text) and its text sizes (``reviewlog.MAX_CHARS``), so a bad task is
reported and skipped while the good ones are imported. A file nested too deep for ``json.loads`` as
a whole is cut into its tasks without recursion; a task nested deeper than ``MAX_DEPTH`` there is
reported like any bad task.
"""

from __future__ import annotations

import json
import re
from typing import Any

from core import storage
from core.schema import DESCRIPTION_EN, OV_LABELS
from pipelines.fine import reviewlog

NOT_EXPORT = (
    "not a Label Studio JSON export (a list of tasks, each with data and annotations); in Label "
    "Studio use Export -> JSON (not JSON-MIN or CSV), and give that file, not the tasks emer wrote"
)

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
