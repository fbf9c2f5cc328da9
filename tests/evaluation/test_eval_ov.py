"""Set-level OV metrics: the organisers' published MER2024 numbers, the emotion-wheel scores against
hand-computed values, and the grouping/alignment rules on small inputs."""

from __future__ import annotations

import ast
import csv
import json
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evaluation.config import EvaluateConfig
from evaluation.ov import encode, score
from evaluation.scoring import load_ov_inputs, score_ov

PUBLISHED = {"accuracy": 0.581777108433735, "recall": 0.4977911646586345, "avg": 0.5397841365461847}


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def test_mer2024_published_numbers_through_cli(emer, mer_dir, tmp_path):
    rc, out, err = emer(
        "evaluate",
        "ov",
        "--gt",
        mer_dir / "check-openset.csv",
        "--pred",
        mer_dir / "predict-openset.csv",
        "--groups",
        mer_dir / "openset-synonym.zip",
        "--out",
        tmp_path,
        "--json",
    )
    assert rc == 0, err
    result = json.loads(out)
    for key, value in PUBLISHED.items():
        assert result[key] == pytest.approx(value, abs=1e-9), key
    assert result["samples"] == 332 and result["grouping"] == "groups"
    assert result["empty_predictions"] == 5 and result["missing_predictions"] == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["sections"]["ov"]["avg"] == result["avg"]
    assert "| 53.98 | 58.18 | 49.78 |" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "ov-samples.png").read_bytes()[:4] == b"\x89PNG"
    assert "list_parser: auto" in (tmp_path / "evaluate-config.yaml").read_text()


def test_literal_parser_differs_only_on_the_apostrophe_label(mer_dir):
    """The organisers split "don't believe" at the apostrophe; their groups hold 'don' and 't believe'.
    A safe literal parser keeps the label whole, which their groups do not contain: one sample moves."""
    paths = (str(mer_dir / "check-openset.csv"), str(mer_dir / "predict-openset.csv"))
    rows = {}
    for parser in ("mertools", "literal"):
        cfg = EvaluateConfig(groups=str(mer_dir / "openset-synonym.zip"), list_parser=parser)
        summary, per = score_ov(load_ov_inputs(*paths, cfg), cfg)
        rows[parser] = {r["name"]: (r["accuracy"], r["recall"]) for r in per}
        if parser == "literal":
            assert summary["labels_not_in_groups"] == 1
            assert summary["accuracy"] == pytest.approx(0.5802710843373494, abs=1e-12)
    changed = [n for n in rows["literal"] if rows["literal"][n] != rows["mertools"][n]]
    assert changed == ["sample_00001774"]


def test_wheel_scores_match_hand_computation(emer, mer_dir, wheel_dir, tmp_path):
    """Two samples of the MER2024 files, traced by hand through format -> synonym -> wheel clusters:

    S1 sample_00000007  gt [excited, joyful, happy]  pred [happy, satisfied]
    S2 sample_00000033  gt [pessimism, worry]        pred [angry, confused]   ('pessimism' maps nowhere)

    level 1 (G | P per sample; P, R = sample means; F = 2PR/(P+R)):
      wheel1 S1 {surprised,happy}|{happy} 1, 1/2   S2 {scared}|{mad,surprised} 0, 0   P=.5 R=.25 F=1/3
      wheel2 S1 {happy}|{happy} 1, 1               S2 {fearful}|{angry,surprised} 0,0 P=.5 R=.5  F=1/2
      wheel3 S1 {joyful}|{joyful,peaceful} 1/2, 1  S2 {scared}|{mad,scared} 1/2, 1    P=.5 R=1   F=2/3
      wheel4 S1 {genius,joy}|{joy,genius} 1, 1     S2 {fear}|{anger,sad} 0, 0         P=.5 R=.5  F=1/2
      wheel5 S1 {joyful,powerful}|{powerful,peaceful} 1/2,1/2  S2 {scared}|{mad,scared} 1/2,1  F=0.6
      mean F = (1/3 + 1/2 + 2/3 + 1/2 + 0.6) / 5 = 0.52
    level 2: in every wheel S1 scores (1, 1/3) or (1/2, 1/2) and S2 (0, 0) -> F = 0.25 each, mean 0.25
      e.g. wheel1 S1 {excited,accepted,joyful}|{joyful}: P=(1+0)/2=.5, R=(1/3+0)/2=1/6, F=0.25
    """
    names = {"sample_00000007", "sample_00000033"}
    for src in ("check-openset.csv", "predict-openset.csv"):
        with open(mer_dir / src) as f:
            rows = [r for r in csv.DictReader(f) if r["name"] in names]
        write_csv(tmp_path / src, rows)
    rc, out, err = emer(
        "evaluate",
        "ov",
        "--gt",
        tmp_path / "check-openset.csv",
        "--pred",
        tmp_path / "predict-openset.csv",
        "--grouping",
        "wheel",
        "--wheel-dir",
        wheel_dir,
        "--json",
        "--no-report",
    )
    assert rc == 0, err
    r = json.loads(out)
    expected_l1 = {"wheel1": 1 / 3, "wheel2": 0.5, "wheel3": 2 / 3, "wheel4": 0.5, "wheel5": 0.6}
    for wheel, f in expected_l1.items():
        assert r["wheels"][f"{wheel}/level1"]["f"] == pytest.approx(f, abs=1e-12), wheel
        assert r["wheels"][f"{wheel}/level2"]["f"] == pytest.approx(0.25, abs=1e-12), wheel
    assert r["level1"]["f"] == pytest.approx(0.52, abs=1e-12)
    assert r["level2"]["f"] == pytest.approx(0.25, abs=1e-12)
    assert r["samples"] == 2


def _reference_wheel_f(wheel: dict, gt: dict, pred: dict, level: str) -> float:
    """A plain loop over samples in the organisers' style, to check the vectorised scorer."""
    fs = []
    for w in ("wheel1", "wheel2", "wheel3", "wheel4", "wheel5"):
        table = wheel["wheel_map_whole"][w][level]

        def cluster(label, table=table):
            if label not in wheel["format_mapping"]:
                return ""
            words = [x for f in wheel["format_mapping"][label] for x in wheel["raw_mapping"][f]]
            return next((table[x] for x in sorted(words) if x in table), "")

        acc, rec = [], []
        for name in gt:
            g = {c for c in map(cluster, gt[name]) if c}
            p = {c for c in map(cluster, pred[name]) if c}
            if not g:
                continue
            acc.append(len(g & p) / len(p) if p else 0)
            rec.append(len(g & p) / len(g) if p else 0)
        prec, recall = np.mean(acc), np.mean(rec)
        fs.append(2 * prec * recall / (prec + recall))
    return float(np.mean(fs))


def test_wheel_vectorised_equals_reference_loop(mer_dir, wheel_dir):
    cfg = EvaluateConfig(grouping="wheel", wheel_dir=str(wheel_dir))
    inputs = load_ov_inputs(str(mer_dir / "check-openset.csv"), str(mer_dir / "predict-openset.csv"), cfg)
    summary, _ = score_ov(inputs, cfg)
    wheel = json.loads((wheel_dir / "wheel_mapping.json").read_text())
    gt, pred = dict(zip(inputs.names, inputs.gt)), dict(zip(inputs.names, inputs.pred))
    for level in ("level1", "level2"):
        assert summary[level]["f"] == pytest.approx(_reference_wheel_f(wheel, gt, pred, level), abs=1e-12)
    assert 0.3 < summary["level2"]["f"] < summary["level1"]["f"] < 0.7


@pytest.mark.slow
def test_wheel_built_from_spreadsheets_equals_json(wheel_dir, tmp_path):
    from evaluation.wheel import build_wheel, load_wheel

    for f in wheel_dir.iterdir():
        if f.name != "wheel_mapping.json":
            (tmp_path / f.name).write_bytes(f.read_bytes())
    built, given = build_wheel(str(tmp_path)), load_wheel(str(wheel_dir))
    assert built.clusters == given.clusters
    assert {k: sorted(v) for k, v in built.format_mapping.items()} == {
        k: sorted(v) for k, v in given.format_mapping.items()
    }
    assert {k: sorted(set(v)) for k, v in built.raw_mapping.items()} == {
        k: sorted(set(v)) for k, v in given.raw_mapping.items()
    }


def test_set_rules_by_hand():
    gt = [["happy", "joy"], ["sad"], [], ["angry"]]
    pred = [["happy", "calm", "happy"], [], ["sad"], ["angry", "mad"]]
    s = score(encode(gt, pred))
    # sample 0: |G∩P|=1, |P|=2, |G|=2; sample 1: empty prediction -> 0; sample 2: empty gt -> skipped
    assert s.samples == 3 and s.skipped_empty_gt == 1 and s.empty_predictions == 1
    assert s.accuracy == pytest.approx((0.5 + 0 + 0.5) / 3)
    assert s.recall == pytest.approx((0.5 + 0 + 1.0) / 3)
    groups = [[["happy", "joy"]], None, None, [["mad", "angry"]]]
    from evaluation.grouping import encode_groups

    enc, diag = encode_groups(gt, pred, groups)
    s = score(enc)
    assert s.accuracy == pytest.approx((0.5 + 0 + 1.0) / 3)  # joy->happy; mad and angry merge
    assert s.recall == pytest.approx((1.0 + 0 + 1.0) / 3)
    assert diag["missing_groups"] == 2 and diag["labels_not_in_groups"] == 1  # 'calm'


def test_missing_predictions_parquet_lists_and_groups_table(emer, tmp_path):
    pq.write_table(
        pa.table({"name": ["a", "b", "c"], "openset": [["Happy", "Joyful"], ["sad"], ["worried"]]}),
        tmp_path / "gt.parquet",
    )
    pq.write_table(
        pa.table({"name": ["a", "b", "zzz"], "openset": [["joyful"], ["SAD ", "angry"], ["x"]]}),
        tmp_path / "pred.parquet",
    )
    write_csv(
        tmp_path / "groups.csv",
        [
            {"name": "a", "groups": str([["happy", "joyful"]])},
            {"name": "b", "groups": "[['sad'], ['angry']]"},
        ],
    )
    rc, out, err = emer(
        "evaluate",
        "ov",
        "--gt",
        tmp_path / "gt.parquet",
        "--pred",
        tmp_path / "pred.parquet",
        "--groups",
        tmp_path / "groups.csv",
        "--json",
    )
    assert rc == 0, err
    r = json.loads(out)
    assert r["missing_predictions"] == 1 and r["missing_names"] == ["c"] and r["extra_predictions"] == 1
    assert r["accuracy"] == pytest.approx((1 + 0.5 + 0) / 3) and r["recall"] == pytest.approx((1 + 1 + 0) / 3)
    assert (tmp_path / "report.md").is_file()  # next to the predictions by default
    assert "missing predictions: 1" in (tmp_path / "report.md").read_text()


def test_groups_from_npy_folder_and_json(tmp_path):
    from evaluation.grouping import load_groups

    folder = tmp_path / "syn"
    folder.mkdir()
    np.save(folder / "s1.npy", "[['happy', 'joy'], ['sad']]")
    (tmp_path / "g.json").write_text(json.dumps({"s1": [["Happy", "joy"]]}))
    with zipfile.ZipFile(tmp_path / "g.zip", "w") as zf:
        zf.write(folder / "s1.npy", "openset-synonym/s1.npy")
    assert load_groups(str(folder)) == {"s1": [["happy", "joy"], ["sad"]]}
    assert load_groups(str(tmp_path / "g.zip")) == {"s1": [["happy", "joy"], ["sad"]]}
    assert load_groups(str(tmp_path / "g.json")) == {"s1": [["happy", "joy"]]}
    assert ast.literal_eval(str(np.load(folder / "s1.npy"))) == [["happy", "joy"], ["sad"]]
