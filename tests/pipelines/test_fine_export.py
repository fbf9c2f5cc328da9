"""The EMER-Fine exports: Label Studio tasks -> a simulated Label Studio export -> ``emer import
label-studio`` -> ``emer export fine`` holds exactly those accepts, edits and rejects, and stage 2's
readers take the CSV; conflicts, a re-import, bad import files and names; hostile tasks (each
reported and skipped, the good ones imported) and cells a spreadsheet would run (escaped, read back
as written). No Ray: nothing here maps."""

from __future__ import annotations

import ast
import csv
import json

import pyarrow.parquet as pq
import pytest
from fine_helpers import CLEAN_ZH, clean_row, with_media, write_coarse

from core.schema import from_spreadsheet_safe, spreadsheet_safe
from pipelines.fine import labelstudio_read
from pipelines.fine.reviewlog import Decision, append, content_hash, read_logs

EDITED = "The person is proud and relieved, because she finally passed the hard exam."


@pytest.fixture
def data(tmp_path):
    rows = [with_media(clean_row(f"s{i}", clip=f"/clips/s{i}.mp4")) for i in range(1, 6)]
    return write_coarse(tmp_path / "coarse", [rows[:3], rows[3:]])


def _result(from_name: str, kind: str, value: dict) -> dict:
    return {"id": f"r-{from_name}", "from_name": from_name, "to_name": "video", "type": kind, "value": value,
            "origin": "manual"}  # fmt: skip


def annotate(task: dict, verdict: str | None, when: str, description=None, labels=None, reason="") -> None:
    """Add one annotation to ``task`` as Label Studio exports it (results of the labeling config)."""
    shown = task["data"]
    result = [
        _result("description", "textarea", {"text": [description or shown["description"]]}),
        _result("labels", "textarea", {"text": [labels if labels is not None else shown["ov_labels"]]}),
    ]
    if verdict:
        result.append(_result("verdict", "choices", {"choices": [verdict]}))
    if reason:
        result.append(_result("reason", "textarea", {"text": [reason]}))
    n = len(task.setdefault("annotations", [])) + 1
    task["annotations"].append(
        {"id": 100 * task["id"] + n, "completed_by": 1, "result": result, "was_cancelled": False,
         "ground_truth": False, "created_at": when, "updated_at": when, "lead_time": 4.2}
    )  # fmt: skip


def simulate_label_studio(tasks: list[dict]) -> list[dict]:
    """What a reviewer does in Label Studio, exported as JSON (Label Studio renumbers the tasks)."""
    by = {t["data"]["name"]: t for t in tasks}
    for t in tasks:
        t.update(annotations=[], drafts=[], total_annotations=0, id=t["id"] + 40)
    annotate(by["s1"], "accept", "2026-12-03T10:00:00Z")  # unchanged
    annotate(by["s2"], "accept", "2026-12-03T10:01:00Z", EDITED, "proud, relieved")
    annotate(by["s3"], "reject", "2026-12-03T10:02:00Z", reason="the face is hidden")
    annotate(by["s5"], "reject", "2026-12-03T10:03:00Z")  # then changed their mind: the newest counts
    annotate(by["s5"], "accept", "2026-12-03T10:09:00Z", labels="happy, proud")
    ghost = json.loads(json.dumps(by["s1"]))
    ghost["data"]["name"], ghost["id"] = "ghost", 99
    undecided = json.loads(json.dumps(by["s4"]))
    annotate(undecided, None, "2026-12-03T10:05:00Z")
    return tasks + [ghost, undecided]  # s4 itself stays unannotated


def test_label_studio_round_trip_into_emer_fine(data, tmp_path, emer):
    rc, out, err = emer("export", "label-studio", "--data", data, "--output", tmp_path / "tasks.json",
                        "--video-url", "http://127.0.0.1:8081/{file}")  # fmt: skip
    assert rc == 0 and "export label-studio: 5 tasks" in out, err
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    assert [t["data"]["name"] for t in tasks] == ["s1", "s2", "s3", "s4", "s5"]
    first = tasks[0]
    assert (
        first["data"]["video"] == "http://127.0.0.1:8081/s1.mp4"
        and first["data"]["ov_labels"] == "happy, joyful"
    )
    assert first["data"]["base"] == content_hash(clean_row())
    assert first["predictions"][0]["result"][0]["value"] == {"text": [first["data"]["description"]]}
    xml = (tmp_path / "tasks.label_config.xml").read_text()
    assert '<Video name="video" value="$video"/>' in xml and '<Choice value="reject"/>' in xml

    exported = tmp_path / "project-1-at-2026-12-03.json"
    exported.write_text(json.dumps(simulate_label_studio(tasks)))
    rc, out, err = emer("import", "label-studio", "--data", data, "--input", exported, "--reviewer", "alice")
    assert rc == 1  # two tasks were unusable; the others are all kept
    assert (
        "accepted 1, edited 2, rejected 1" in out and "1 not annotated, 0 already imported, 2 skipped" in out
    )
    assert "task 99 ('ghost'): no sample named 'ghost'" in err
    assert "task 44 ('s4'): its annotation has no accept/reject choice" in err
    logs, problems = read_logs(str(data))
    assert not problems and [d.name for d in logs["alice"]] == ["s1", "s2", "s3", "s5"]
    assert logs["alice"][2].reason == "the face is hidden"

    rc, out, _ = emer("import", "label-studio", "--data", data, "--input", exported, "--reviewer", "alice")
    assert "4 already imported" in out and len(read_logs(str(data))[0]["alice"]) == 4

    rc, out, err = emer("export", "fine", "--data", data, "--output", tmp_path / "fine.csv")
    assert rc == 0, err
    assert "3 rows" in out and "accepted 1, edited 2, rejected 1, unreviewed 1" in out
    with open(tmp_path / "fine.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["name", "english", "chinese", "openset"]
    got = {r["name"]: (r["english"], r["chinese"], ast.literal_eval(r["openset"])) for r in rows}
    assert got == {
        "s1": (clean_row()["description_en"], CLEAN_ZH, ["happy", "joyful"]),
        "s2": (EDITED, "", ["proud", "relieved"]),  # the translation no longer fits the edit
        "s5": (clean_row()["description_en"], CLEAN_ZH, ["happy", "proud"]),
    }
    full = pq.read_table(tmp_path / "fine.parquet").to_pylist()
    assert [(r["name"], r["review_action"], r["reviewer"]) for r in full] == [
        ("s1", "accept", "alice"),
        ("s2", "edit", "alice"),
        ("s5", "edit", "alice"),
    ]
    assert full[1]["coarse_description_en"] == clean_row()["description_en"] and full[1]["frames"]


def test_stage_two_reads_the_export(data, tmp_path, emer):
    from affect_model.train.config import TrainConfig
    from affect_model.train.data import load_fine
    from affect_model.train.datasets import fine_split, select_rows

    for name in ("s1", "s2"):
        before = {"description_en": clean_row()["description_en"], "ov_labels": ["happy", "joyful"]}
        after = {"description_en": f"{EDITED} ({name})", "ov_labels": ["proud"]}
        append(str(data), Decision("bob", name, "edit", content_hash(before), before, after), clean_row(name))
    assert emer("export", "fine", "--data", data, "--output", tmp_path / "fine.csv")[0] == 0
    cfg = TrainConfig(stage=2, fine_uri=str(tmp_path / "fine.csv"), fine_media_uri=str(data / "samples"))
    texts = fine_split(cfg, "all")
    assert texts == {"s1": f"{EDITED} (s1)", "s2": f"{EDITED} (s2)"}
    table = select_rows(cfg.fine_media_uri, "train.fine_media_uri", texts)
    assert table["description_en"].to_pylist() == [texts["s1"], texts["s2"]]
    rows = load_fine(cfg.fine_uri, str(tmp_path / "fine.parquet"), split="all")  # the Parquet is media too
    assert [r["name"] for r in rows] == ["s1", "s2"] and all(r["frames"] and r["audio"] for r in rows)


def test_an_import_on_a_row_changed_since_the_export_is_a_conflict(data, tmp_path, emer):
    assert emer("export", "label-studio", "--data", data, "--output", tmp_path / "t.json")[0] == 0
    tasks = json.loads((tmp_path / "t.json").read_text())
    before = {"description_en": clean_row()["description_en"], "ov_labels": ["happy", "joyful"]}
    theirs = {"description_en": "Bob's description of s1, written after the export.", "ov_labels": ["calm"]}
    append(str(data), Decision("bob", "s1", "edit", content_hash(before), before, theirs), clean_row("s1"))
    for t in tasks:
        t["annotations"] = []
        annotate(t, "accept", "2026-12-03T11:00:00Z", description=EDITED)
    (tmp_path / "export.json").write_text(json.dumps(tasks))
    rc, out, err = emer("import", "label-studio", "--data", data, "--input", tmp_path / "export.json",
                        "--reviewer", "alice")  # fmt: skip
    assert rc == 1 and "edited 4" in out and "1 skipped" in out
    assert "('s1'): s1 was changed by bob (edit" in err and "re-export the task" in err
    assert [d.name for d in read_logs(str(data))[0]["alice"]] == ["s2", "s3", "s4", "s5"]


def test_bad_import_files_and_exports_are_clear_errors(data, tmp_path, emer):
    (tmp_path / "broken.json").write_text('[{"data": {"name": "s1"}, ')
    (tmp_path / "other.json").write_text(json.dumps({"tasks": []}))
    assert emer("export", "label-studio", "--data", data, "--output", tmp_path / "tasks.json")[0] == 0
    for name, message in (
        ("broken.json", "broken.json: not JSON"),
        ("other.json", "other.json: not a Label Studio JSON export"),
        ("tasks.json", "tasks.json: no task has annotations; not a Label Studio JSON export"),
    ):
        rc, _, err = emer(
            "import", "label-studio", "--data", data, "--input", tmp_path / name, "--reviewer", "al"
        )
        assert rc == 2 and message in err and "Export -> JSON" in err, err
    assert not (data / "review").exists() or not list((data / "review").glob("*.jsonl"))
    rc, _, err = emer("export", "fine", "--data", data, "--output", tmp_path / "fine.txt")
    assert rc == 2 and "fine.txt: must end in .csv" in err
    rc, _, err = emer(
        "export", "fine", "--data", data, "--output", tmp_path / "f.csv", "--include-unreviewed-passing"
    )
    assert rc == 2 and "no quality columns yet; run `emer filter --data" in err
    rc, _, err = emer("export", "fine", "--data", tmp_path / "empty", "--output", tmp_path / "f.csv")
    assert rc == 2 and "no EMER-Coarse there" in err and "run `emer annotate" in err


def _quality(data, passing: dict[str, bool]) -> None:
    """A quality folder as `emer filter` leaves it (one shard named by the summary)."""
    import pyarrow as pa

    rows = [
        {"name": n, "quality_pass": ok, "quality_flags": [] if ok else ["too_short"],
         "quality_reasons": [] if ok else ["too_short: description_en has 2 words"]}
        for n, ok in passing.items()
    ]  # fmt: skip
    (data / "quality").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), data / "quality" / "part-x.parquet")
    summary = {
        "rows": len(rows),
        "passed": sum(passing.values()),
        "by_flag": {},
        "shards": ["part-x.parquet"],
    }
    (data / "quality" / "summary.json").write_text(json.dumps(summary))


def test_unreviewed_rows_passing_the_filter_on_request(data, tmp_path, emer):
    _quality(data, {"s1": True, "s2": False, "s3": True, "s4": True, "s5": False})
    before = {"description_en": clean_row()["description_en"], "ov_labels": ["happy", "joyful"]}
    append(str(data), Decision("bob", "s3", "reject", content_hash(before), before, None), clean_row("s3"))
    rc, out, _ = emer("export", "fine", "--data", data, "--output", tmp_path / "a.csv")
    assert rc == 0 and "0 rows" in out and "rejected 1, unreviewed 4" in out
    rc, out, _ = emer(
        "export", "fine", "--data", data, "--output", tmp_path / "b.csv", "--include-unreviewed-passing"
    )
    assert rc == 0 and "2 rows" in out and "2 of them passing the filter included" in out
    assert pq.read_table(tmp_path / "b.parquet")["name"].to_pylist() == ["s1", "s4"]
    assert pq.read_table(tmp_path / "b.parquet")["quality_pass"].to_pylist() == [True, True]
    assert emer("export", "label-studio", "--data", data, "--output", tmp_path / "t.json")[0] == 0
    names = [t["data"]["name"] for t in json.loads((tmp_path / "t.json").read_text())]
    assert names == ["s1", "s3", "s4"]  # the rows passing the filter
    assert (
        emer("export", "label-studio", "--data", data, "--output", tmp_path / "t.json", "--all-rows")[0] == 0
    )
    tasks = json.loads((tmp_path / "t.json").read_text())
    assert [t["data"]["quality_flags"] for t in tasks] == ["", "too_short", "", "", "too_short"]


# ---------------------------------------------------------------- issue #23

DEEP = "[" * 100_000 + "]" * 100_000
ACCEPT = {"from_name": "verdict", "value": {"choices": ["accept"]}}


def _task(data=None, annotations=None, **extra) -> str:
    data = {"name": "s1"} if data is None else data
    return json.dumps({"id": 77, "data": data, "annotations": annotations or [], **extra})


def _with_text(from_name: str, text) -> str:
    return _task(annotations=[{"result": [ACCEPT, {"from_name": from_name, "value": {"text": text}}]}])


S1 = "task 77 ('s1'):"
HOSTILE = {  # kind -> (the bad task's JSON text, made on use; its label; words of its problem)
    "name a list": (lambda: _task({"name": ["s1"]}), "task 77:", "data.name must be the sample name"),
    "annotations a number": (lambda: _task().replace("[]", "42"), S1, "annotations must be a list"),
    "an annotation a string": (lambda: _task(annotations=["x"]), S1, "annotations must be a list"),
    "result a string": (lambda: _task(annotations=[{"result": "x"}]), S1, "result must be a list"),
    "choices a number": (
        lambda: _task(annotations=[{"result": [{"from_name": "verdict", "value": {"choices": 1}}]}]),
        S1,
        "'verdict' choices: must be a list of text",
    ),
    "text a number": (lambda: _with_text("description", 5), S1, "'description' text: must be a list"),
    "a 60 MB description": (
        lambda: _with_text("description", ["x" * 60_000_000]),
        S1,
        "'description' text: 60000000 characters, over the 10000 kept",
    ),
    "a 60 MB shown description": (
        lambda: _task({"name": "s1", "description": "x" * 60_000_000}),
        S1,
        "data.description must be text of at most 10000 characters",
    ),
    "data a string": (lambda: _task("s1"), "task 77:", "not a task"),
    "a number": (lambda: "7", "task #3:", "not a task"),
    "100k nesting": (
        lambda: _task({"name": "s1", "x": "DEEP"}).replace('"DEEP"', DEEP),
        "task #3:",
        "nested deeper than 32 levels",
    ),
}


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_a_hostile_task_is_reported_and_skipped_and_the_good_ones_imported(kind, data, tmp_path, emer):
    make, label, words = HOSTILE[kind]
    assert emer("export", "label-studio", "--data", data, "--output", tmp_path / "t.json")[0] == 0
    tasks = json.loads((tmp_path / "t.json").read_text())
    for t in tasks:
        annotate(t, "accept", "2026-12-03T11:00:00Z")
    good = [json.dumps(t) for t in tasks]
    (tmp_path / "export.json").write_text("[" + ",".join(good[:2] + [make()] + good[2:]) + "]")
    rc, out, err = emer("import", "label-studio", "--data", data, "--input", tmp_path / "export.json",
                        "--reviewer", "alice")  # fmt: skip
    assert rc == 1 and "accepted 5" in out and "1 skipped" in out, (out, err[:2000])
    problem = [x for x in err.splitlines() if "export.json task" in x]
    assert len(problem) == 1 and label in problem[0] and words in problem[0], problem
    assert len(problem[0]) < 500  # names the task, never echoes it
    assert [d.name for d in read_logs(str(data))[0]["alice"]] == ["s1", "s2", "s3", "s4", "s5"]


def test_an_export_over_the_size_cap_is_refused_before_reading(data, tmp_path, emer, monkeypatch):
    monkeypatch.setattr(labelstudio_read, "MAX_EXPORT_BYTES", 1000)
    (tmp_path / "big.json").write_text(json.dumps([{"data": {"name": "s1"}, "annotations": []}] * 100))
    rc, _, err = emer(
        "import", "label-studio", "--data", data, "--input", tmp_path / "big.json", "--reviewer", "al"
    )
    assert rc == 2 and "over the 1000 an export is read up to" in err


FORMULAS = [
    "=cmd|' /C calc'!A0",
    "+1+cmd",
    "-2+3",
    "@SUM(A1:A9)",
    "\t=1+2",
    "\r=1+2",
    "'=quoted",
    "'",
    "plain",
]


def test_spreadsheet_escape_round_trips():
    for text in [*FORMULAS, "", "''", "'a", "- a list item"]:
        assert from_spreadsheet_safe(spreadsheet_safe(text)) == text
        assert spreadsheet_safe(text)[:1] not in ("=", "+", "-", "@", "\t", "\r")
    assert spreadsheet_safe("The person is calm.") == "The person is calm."


def test_csv_cells_a_spreadsheet_would_run_are_escaped_and_stage_two_reads_the_text(data, tmp_path, emer):
    from affect_model.train.data import read_fine_csv
    from evaluation.tables import label_lists, read_table

    before = {"description_en": clean_row()["description_en"], "ov_labels": ["happy", "joyful"]}
    names = {f"s{i}": text for i, text in enumerate(FORMULAS[:5], 1)}
    for name, text in names.items():
        after = {"description_en": text, "ov_labels": ["happy"]}
        append(str(data), Decision("eve", name, "edit", content_hash(before), before, after), clean_row(name))
    assert emer("export", "fine", "--data", data, "--output", tmp_path / "fine.csv")[0] == 0
    with open(tmp_path / "fine.csv", newline="", encoding="utf-8") as fh:
        cells = {r["name"]: r["english"] for r in csv.DictReader(fh)}
    assert cells == {name: "'" + text for name, text in names.items()}  # a spreadsheet shows, never runs
    assert read_fine_csv(str(tmp_path / "fine.csv")) == names  # stage 2 trains on the text as written
    gt = read_table(str(tmp_path / "fine.csv"))  # evaluation reads its names and labels, never escaped
    assert gt.names == list(names) and label_lists(gt, "openset") == [["happy"]] * len(names)
    assert pq.read_table(tmp_path / "fine.parquet")["description_en"].to_pylist() == list(names.values())
