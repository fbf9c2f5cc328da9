"""Bad input: each problem is a one-line error naming the file, the row and the fix; exit code 2."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evaluation.tables import parse_literal_list, parse_mertools_list

GOOD = "name,openset\ns1,\"['happy', 'sad']\"\ns2,\"['angry']\"\n"


@pytest.mark.parametrize(
    "pred_text, suffix, needles",
    [
        (
            "name,labels\ns1,\"['happy']\"\n",
            ".csv",
            ["row 0 (header)", "no column 'openset'", "--labels-column"],
        ),
        (
            "name,openset\ns1,\"['happy']\"\ns2,\"['sad', 'angry'\"\n",
            ".csv",
            ["row 2 (name='s2')", "malformed list literal", "such as ['happy', 'sad']"],
        ),
        (
            "name,openset\ns1,\"['happy']\"\ns2,\"['sad']\"\ns1,\"['angry']\"\n",
            ".csv",
            ["row 3 (name='s1')", "duplicate name, first at row 1", "keep one row per sample"],
        ),
        (
            "name\topenset\ns1\t['happy']\n",
            ".tsv",
            ["unknown file type '.tsv'", "before row 1", ".csv or .parquet"],
        ),
        ("name,openset\ns1,\"{'happy': 1}\"\n", ".csv", ["row 1 (name='s1')", "not a list of strings"]),
        ("name,openset\n,\"['happy']\"\n", ".csv", ["row 1", "empty name", "sample id"]),
    ],
)
def test_bad_predictions_give_one_line_errors(emer, tmp_path, pred_text, suffix, needles):
    (tmp_path / "gt.csv").write_text(GOOD)
    pred = tmp_path / f"pred{suffix}"
    pred.write_text(pred_text)
    rc, out, err = emer(
        "evaluate", "ov", "--gt", tmp_path / "gt.csv", "--pred", pred, "--json", "--no-report"
    )
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert str(pred) in lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert not (tmp_path / "report.md").exists()


def test_missing_file_and_bad_groups(emer, tmp_path):
    (tmp_path / "gt.csv").write_text(GOOD)
    rc, _, err = emer(
        "evaluate", "ov", "--gt", tmp_path / "gt.csv", "--pred", tmp_path / "nope.csv", "--json"
    )
    assert rc == 2 and "nope.csv: no such file" in err
    (tmp_path / "groups.csv").write_text("name,groups\ns1,\"[['happy', 'sad']\"\n")
    rc, _, err = emer(
        "evaluate",
        "ov",
        "--gt",
        tmp_path / "gt.csv",
        "--pred",
        tmp_path / "gt.csv",
        "--groups",
        tmp_path / "groups.csv",
        "--no-report",
    )
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "groups.csv row 1 (name='s1')" in err and "malformed groups literal" in err


def test_bad_parquet_cell_and_config_value(emer, tmp_path):
    (tmp_path / "gt.csv").write_text(GOOD)
    pq.write_table(pa.table({"name": ["s1"], "openset": [3]}), tmp_path / "pred.parquet")
    rc, _, err = emer(
        "evaluate", "ov", "--gt", tmp_path / "gt.csv", "--pred", tmp_path / "pred.parquet", "--no-report"
    )
    assert rc == 2 and "pred.parquet row 1 (name='s1')" in err and "holds int" in err
    rc, _, err = emer(
        "evaluate",
        "ov",
        "--gt",
        tmp_path / "gt.csv",
        "--pred",
        tmp_path / "gt.csv",
        "--evaluate.llm.concurrency=0",
        "--no-report",
    )
    assert rc == 2 and "evaluate.llm.concurrency = 0: must be between 1 and 1024" in err
    rc, _, err = emer(
        "evaluate",
        "ov",
        "--gt",
        tmp_path / "gt.csv",
        "--pred",
        tmp_path / "gt.csv",
        "--grouping",
        "wheel",
        "--no-report",
    )
    assert rc == 2 and "evaluate.wheel_dir" in err


def test_list_parsers():
    assert parse_literal_list("['Happy', \"don't care\"]") == ["Happy", "don't care"]
    assert parse_literal_list("[]") == [] and parse_literal_list("  ") == []
    assert parse_literal_list("['a\\'b']") == ["a'b"]  # escapes go through ast.literal_eval
    with pytest.raises(ValueError, match="malformed"):
        parse_literal_list("['a', __import__('os')]")
    assert parse_mertools_list("['sad', \"don't believe\"]") == ["sad", "don", "t believe"]


def test_s3_inputs_and_report(emer, s3):
    from core import storage

    base = s3.uri("eval-test")
    storage.write_text(f"{base}/gt.csv", GOOD)
    storage.write_text(f"{base}/pred.csv", "name,openset\ns1,\"['happy']\"\ns2,\"['sad']\"\n")
    rc, out, err = emer("evaluate", "ov", "--gt", f"{base}/gt.csv", "--pred", f"{base}/pred.csv", "--json")
    assert rc == 0, err
    r = json.loads(out)
    assert r["accuracy"] == pytest.approx(0.5) and r["recall"] == pytest.approx(0.25)
    assert storage.exists(f"{base}/report.json") and storage.exists(f"{base}/ov-samples.png")
    assert "| 37.50 | 50.00 | 25.00 |" in storage.read_text(f"{base}/report.md")
