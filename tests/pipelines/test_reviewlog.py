"""The EMER-Fine review log: append-only decisions, conflicts between reviewers, a line cut short,
and the agreement of two reviewers."""

from __future__ import annotations

import pytest

from pipelines.fine.reviewlog import (
    Conflict,
    Decision,
    agreement,
    append,
    content_hash,
    current,
    newest,
    read_logs,
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
    append(data, decide("alice", "accept", content_hash(edit), edit), ROW)
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
