"""Text metrics (BLEU-1/4, METEOR 1.5, ROUGE-L), runs (mean ± std), models (table + correlation heatmap)
and the combined report. METEOR's JVM starts once for the whole session."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from evaluation.text_metrics import text_scores

REFS = {
    "s1": "The man smiles and sounds happy and relaxed.",
    "s2": "She shouts; her face is angry.",
    "s3": "He looks worried and speaks quietly.",
    "s4": "A calm voice and a neutral face.",
}


def write(path: Path, rows: dict[str, tuple[list[str], str]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "openset", "description"])
        for name, (labels, text) in rows.items():
            w.writerow([name, repr(labels), text])
    return path


@pytest.mark.slow
def test_text_metrics_values():
    s, rows = text_scores(["the cat sat on the mat"], ["the cat sat"])
    assert s["bleu1"] == pytest.approx(math.exp(1 - 6 / 3), abs=1e-4)  # precision 1, brevity penalty e^-1
    assert s["rouge_l"] == pytest.approx(2 / 3)  # LCS 3: P 1, R 1/2
    assert 0.2 < s["meteor"] < 0.9 and rows[0]["meteor"] == pytest.approx(s["meteor"])
    same, _ = text_scores(list(REFS.values()), list(REFS.values()))
    assert same["bleu1"] == same["bleu4"] == same["rouge_l"] == same["meteor"] == pytest.approx(1.0)
    # METEOR 1.5 matches stems and synonyms that BLEU does not: smiling/smiles, glad/happy
    exact_words, _ = text_scores(["he smiles and is happy"], ["he smiling and is glad"])
    assert exact_words["meteor"] > exact_words["bleu1"]
    zh, _ = text_scores(["他很开心，笑得很灿烂"], ["他非常开心"], language="zh")
    # characters without punctuation: 9 vs 5, LCS 他开心 = 3
    assert zh["rouge_l"] == pytest.approx(2 * (3 / 5) * (3 / 9) / (3 / 5 + 3 / 9))


@pytest.mark.slow
def test_text_cli_and_runs_and_report(emer, tmp_path):
    gt = write(
        tmp_path / "gt.csv",
        {n: (lab, REFS[n]) for n, lab in zip(REFS, [["happy"], ["angry"], ["worried"], ["neutral"]])},
    )
    rc, out, err = emer("evaluate", "text", "--gt", gt, "--pred", gt, "--json", "--out", tmp_path / "t")
    assert rc == 0, err
    assert json.loads(out)["meteor"] == pytest.approx(1.0)

    # three models, two runs each; OV avg under exact grouping is computed by hand per run
    runs = {
        "good": [
            ({"s1": ["happy"], "s2": ["angry"], "s3": ["worried"], "s4": ["neutral"]}, 1.0),
            ({"s1": ["happy"], "s2": ["angry"], "s3": ["sad"], "s4": ["neutral"]}, 0.75),
        ],
        "mid": [
            ({"s1": ["happy", "sad"], "s2": ["angry"], "s3": [], "s4": []}, (0.5 + 1) / 4 / 2 + 2 / 4 / 2),
            ({"s1": ["happy"], "s2": [], "s3": [], "s4": []}, 0.25),
        ],
        "bad": [
            ({"s1": ["sad"], "s2": [], "s3": [], "s4": []}, 0.0),
            ({"s1": ["sad"], "s2": ["angry"], "s3": [], "s4": []}, 0.25),
        ],
    }
    specs = []
    for model, model_runs in runs.items():
        files = []
        for i, (labels, _) in enumerate(model_runs):
            text = {
                n: REFS[n] if model == "good" else ("nothing" if model == "bad" else REFS[n][:15])
                for n in REFS
            }
            files.append(str(write(tmp_path / f"{model}{i}.csv", {n: (labels[n], text[n]) for n in REFS})))
        specs += ["--model", f"{model}={','.join(files)}"]
    rc, out, err = emer(
        "evaluate", "runs", "--gt", gt, *specs, "--grouping", "exact", "--json", "--out", tmp_path / "cmp"
    )
    assert rc == 0, err
    r = json.loads(out)
    for model, model_runs in runs.items():
        avg = r["models"][model]["metrics"]["avg"]
        expected = [a for _, a in model_runs]
        assert avg["values"] == pytest.approx(expected)
        assert avg["mean"] == pytest.approx(np.mean(expected)) and avg["std"] == pytest.approx(
            np.std(expected)
        )
    corr = r["correlation"]
    assert corr["metrics"][:3] == ["avg", "accuracy", "recall"] and "meteor" in corr["metrics"]
    k = corr["metrics"].index("meteor")
    assert corr["matrix"][k][k] == pytest.approx(1.0) and corr["matrix"][0][k] > 0.5
    md = (tmp_path / "cmp" / "report.md").read_text()
    assert "| good | 2 | 87.50 ± 12.50 |" in md
    for png in ("metric-correlation.png", "runs-avg.png", "runs-meteor.png"):
        assert (tmp_path / "cmp" / png).read_bytes()[:4] == b"\x89PNG"

    rc, out, err = emer(
        "evaluate",
        "report",
        "--gt",
        gt,
        "--pred",
        tmp_path / "mid0.csv",
        "--grouping",
        "exact",
        "--out",
        tmp_path / "rep",
        "--json",
    )
    assert rc == 0, err
    sections = json.loads((tmp_path / "rep" / "report.json").read_text())["sections"]
    assert set(sections) == {"ov", "text"} and sections["ov"]["avg"] == pytest.approx(runs["mid"][0][1])
