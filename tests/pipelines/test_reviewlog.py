"""The EMER-Fine review log: append-only decisions, conflicts between reviewers (an edit, and a
rejection), a line cut short, the table of bad lines (issue #23: each one skipped, counted and named
by the page and by `emer export fine`) and the agreement of two reviewers."""

from __future__ import annotations

import csv
import json
import re

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape
from review_helpers import write_coarse

from pipelines.fine.review_app import create_app
from pipelines.fine.reviewlog import (
    Conflict,
    Decision,
    agreement,
    append,
    content_hash,
    current,
    newest,
    read_logs,
    state_hash,
)

ROW = {"name": "s1", "description_en": "The person is happy.", "ov_labels": ["happy"]}


def decide(reviewer, action, base, after=None, name="s1", reason=""):
    before = {"description_en": ROW["description_en"], "ov_labels": ROW["ov_labels"]}
    return Decision(reviewer, name, action, base, before, after, reason)


def test_decisions_append_and_the_newest_wins(tmp_path):
    data = str(tmp_path)
    base = content_hash(ROW)
    edit = {"description_en": "The person is joyful.", "ov_labels": ["joyful"]}
    append(data, decide("alice", "edit", base, edit), ROW)
    logs, problems = read_logs(data)
    assert not problems and [d.action for d in logs["alice"]] == ["edit"]
    assert current(ROW, newest(logs)["s1"]) == edit
    append(data, decide("alice", "accept", state_hash(ROW, newest(logs)["s1"]), edit), ROW)
    assert len((tmp_path / "review" / "alice.jsonl").read_text().splitlines()) == 2  # appended, not rewritten


def test_a_second_reviewer_editing_the_same_row_gets_a_conflict(tmp_path):
    data = str(tmp_path)
    base = content_hash(ROW)  # both opened the row as it was
    append(data, decide("alice", "edit", base, {"description_en": "Sad.", "ov_labels": ["sad"]}), ROW)
    with pytest.raises(Conflict, match="changed by alice \\(edit"):
        append(data, decide("bob", "edit", base, {"description_en": "Angry.", "ov_labels": ["angry"]}), ROW)
    logs, _ = read_logs(data)
    assert "bob" not in logs and current(ROW, newest(logs)["s1"])["ov_labels"] == ["sad"]


def test_a_truncated_line_is_reported_and_the_next_decision_is_kept(tmp_path):
    data = str(tmp_path)
    append(data, decide("alice", "accept", content_hash(ROW), dict(ROW), name="s1"), ROW)
    log = tmp_path / "review" / "alice.jsonl"
    log.write_text(log.read_text() + '{"v": 1, "reviewer": "alice", "name": "s2", "act')  # crash mid-write
    row2 = {**ROW, "name": "s2"}
    append(data, decide("alice", "reject", content_hash(row2), None, name="s2", reason="no face"), row2)
    logs, problems = read_logs(data)
    assert [d.name for d in logs["alice"]] == ["s1", "s2"] and logs["alice"][1].reason == "no face"
    assert len(problems) == 1 and "review/alice.jsonl line 2: not a complete decision" in problems[0]


def test_agreement_of_two_reviewers():
    def d(reviewer, name, action, ts):
        return Decision(reviewer, name, action, "", {}, None, ts=ts)

    a = [
        d("a", "s1", "accept", "1"),
        d("a", "s2", "reject", "1"),
        d("a", "s3", "edit", "1"),
        d("a", "s4", "accept", "1"),
    ]
    b = [d("b", "s1", "edit", "2"), d("b", "s2", "reject", "2"), d("b", "s3", "reject", "2")]
    r = agreement(a, b)
    # kept/rejected: a = K R K, b = K R R over s1-s3: agree 2/3; pa = 2/3, pb = 1/3, pe = 4/9
    assert r["rows"] == 3 and r["agree"] == 2 and r["percent"] == pytest.approx(66.67)
    assert r["kappa"] == pytest.approx((2 / 3 - 4 / 9) / (1 - 4 / 9), abs=1e-4)


def test_bad_reviewer_names_are_refused(tmp_path):
    with pytest.raises(ValueError, match="reviewer '../x'"):
        append(str(tmp_path), decide("../x", "accept", content_hash(ROW), dict(ROW)), ROW)


def test_a_save_over_a_rejection_made_meanwhile_is_a_conflict(tmp_path):
    data, base = str(tmp_path), content_hash(ROW)  # both opened the row before anyone decided it
    append(data, decide("alice", "reject", base, None, reason="no face"), ROW)
    edit = {"description_en": "Bob's text.", "ov_labels": ["sad"]}
    with pytest.raises(Conflict, match="changed by alice \\(reject"):
        append(data, decide("bob", "edit", base, edit), ROW)
    with pytest.raises(Conflict):  # an accept over it too: it would silently overrule the rejection
        append(data, decide("bob", "accept", base, dict(ROW)), ROW)
    seen = newest(read_logs(data)[0])["s1"]
    append(data, decide("bob", "edit", state_hash(ROW, seen), edit), ROW)  # after a reload: fine
    assert current(ROW, newest(read_logs(data)[0])["s1"]) == edit


def _line(**changes) -> bytes:
    """A decision line on row ``a`` (Chinese in it), with ``changes``."""
    before = {"description_en": "In a the person is calm.", "ov_labels": ["calm", "neutral"]}
    raw = {"v": 1, "reviewer": "alice", "name": "a", "action": "edit", "base": "0" * 16, "before": before,
           "after": {"description_en": "这个人很平静。", "ov_labels": ["calm"]}, "reason": "",
           "ts": "2026-12-03T12:00:00+00:00", **changes}  # fmt: skip
    return json.dumps(raw, ensure_ascii=False).encode()


CUT = _line()[: _line().index("平".encode()) + 1]  # a crash inside the 3 bytes of 平

BAD_LINES = {  # kind -> (the line as written, words of the reason)
    "cut inside a UTF-8 character": (CUT, "not UTF-8 text"),
    "null": (b"null", "null, not a JSON object"),
    "a number": (b"42", "a number, not a JSON object"),
    "a string": (b'"accept"', "a string, not a JSON object"),
    "a number for ts": (_line(ts=1764763200), "ts: must be text"),
    "a list for name": (_line(name=["a"]), "name: must be text"),
    "an unknown action": (_line(action="approve"), "unknown action 'approve'"),
    "after on a reject": (_line(action="reject"), "after: must be null for a reject"),
    "labels not a list": (_line(before={"description_en": "x", "ov_labels": "calm"}), "before: must be"),
    "deep nesting": (b"[" * 100_000 + b"]" * 100_000, "JSON nested too deep"),
    "another key": (_line(extra=1), "keys action, after, base, before, extra"),
}


@pytest.mark.parametrize("kind", list(BAD_LINES))
def test_a_bad_log_line_is_skipped_counted_and_named(kind, tmp_path, emer):
    line, words = BAD_LINES[kind]
    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / "a.mp4").write_bytes(b"clip")
    data = tmp_path / "coarse"
    write_coarse(data, {n: str(clips / "a.mp4") for n in "abc"})
    row_a = {"name": "a", "description_en": "In a the person is calm.", "ov_labels": ["calm", "neutral"]}
    append(str(data), Decision("alice", "a", "accept", content_hash(row_a), row_a, row_a), row_a)
    log = data / "review" / "alice.jsonl"
    log.write_bytes(log.read_bytes() + line)  # line 2, no newline after it (as a crash leaves it)
    where = f"review/alice.jsonl line 2: not a complete decision ({words}"

    logs, problems = read_logs(str(data))
    assert [d.name for d in logs["alice"]] == ["a"] and len(problems) == 1 and where in problems[0]

    page = TestClient(create_app(str(data), "bob"), base_url="http://127.0.0.1:8377")
    for path in ("/", "/row/a", "/stats"):
        assert page.get(path).status_code == 200, path
    html = page.get("/row/b").text
    assert '<span id="log-problem-count">1</span> bad line' in html and escape(where) in html
    base = re.search(r'name="base" value="(\w+)"', html).group(1)
    form = {"base": base, "action": "reject", "reason": "blurry"}
    assert page.post("/row/b", data=form, follow_redirects=False).status_code == 303
    assert [d.name for d in read_logs(str(data))[0]["bob"]] == ["b"]

    rc, out, err = emer("export", "fine", "--data", data, "--output", tmp_path / "fine.csv")
    assert rc == 1 and f"{data}/{where}" in err, err
    assert "1 rows" in out and "1 bad review-log line(s) skipped" in out
    with open(tmp_path / "fine.csv", newline="") as fh:
        assert [r["name"] for r in csv.DictReader(fh)] == ["a"]  # the good decisions are exported
