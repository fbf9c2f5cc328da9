"""``emer filter`` end to end on a small EMER-Coarse: the Ray job, its quality shards, summary.json,
the dataset card's section, a rerun that replaces the folder, the filtered view, and bad --data."""

from __future__ import annotations

import hashlib
import json

from fine_helpers import COLUMNS, clean_row, write_coarse, write_reference, write_wheel

from core.schema import AUDIO_FEATURE_FIELDS, SIGNAL_COLUMNS
from pipelines import sink
from pipelines.fine.view import read_filtered, read_quality

CARD = "# EMER-Coarse annotations\n\nSome counts.\n\n## Columns of `samples/`\n\n| column | meaning |\n"


def _coarse(tmp_path):
    rows = [
        [clean_row("s1"), clean_row("s2", description_en="Too short."), clean_row("s3", audio_clue="")],
        [clean_row("s4", ov_labels=[]), clean_row("s5", ov_labels=["meh"]), clean_row("s6")],
    ]
    data = write_coarse(tmp_path / "coarse", rows)
    (data / "README.md").write_text(CARD)
    ref = write_reference(tmp_path / "ref.csv", {"s1": ["happy"], "s4": ["happy"], "s6": ["sad"]})
    return data, ref, write_wheel(tmp_path / "wheel")


def _hashes(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.parquet"))}


def test_filter_records_flags_summary_and_card(ray_local, tmp_path, emer):
    data, ref, wheel = _coarse(tmp_path)
    samples_before = _hashes(data / "samples")
    rc, out, err = emer("filter", "--data", data, "--reference", ref, "--wheel-dir", wheel)
    assert rc == 0, err
    flagged = "too_short 1, missing_clue 1, no_labels 1, off_wheel 1, low_agreement 2"
    assert f"filter: 6 rows -> 1 pass, 5 flagged ({flagged}); columns in {data}/quality/" in out
    summary = json.loads((data / "quality" / "summary.json").read_text())
    assert (summary["rows"], summary["passed"]) == (6, 1)
    assert summary["by_flag"] == {
        "too_short": 1,
        "too_long": 0,
        "repeated_ngram": 0,
        "missing_clue": 1,
        "language_en": 0,
        "language_zh": 0,
        "no_labels": 1,
        "off_wheel": 1,
        "low_agreement": 2,
    }
    assert summary["reference"] == {"source": str(ref), "column": "openset", "names": 3}
    # --reference / --wheel-dir are config keys: the recorded config is the one that ran
    assert (summary["config"]["reference_uri"], summary["config"]["wheel_dir"]) == (str(ref), str(wheel))
    q = {r["name"]: r for r in read_quality(str(data)).to_pylist()}
    assert sorted(q) == ["s1", "s2", "s3", "s4", "s5", "s6"]
    assert q["s1"]["quality_pass"] and q["s1"]["quality_agreement"] == 0.875
    assert q["s4"]["quality_flags"] == ["no_labels", "low_agreement"]
    assert q["s6"]["quality_reasons"] == [
        "low_agreement: OV labels [happy, joyful] agree 0.00 with the reference [sad] "
        "(< filter.min_agreement = 0.25)"
    ]
    assert q["s5"]["quality_off_wheel"] == 1 and q["s2"]["quality_words"] == 2
    card = (data / "README.md").read_text()
    assert card.index("## Quality filters") < card.index("## Columns of `samples/`")
    assert "1 of 6 samples pass every rule" in card and "| low_agreement | 2 |" in card
    assert _hashes(data / "samples") == samples_before  # samples/ is never written

    view = read_filtered(str(data))
    assert view["name"].to_pylist() == ["s1"] and "frames" in view.column_names
    assert view["quality_flags"].to_pylist() == [[]]


def test_a_rerun_replaces_the_quality_folder(ray_local, tmp_path, emer):
    data, ref, wheel = _coarse(tmp_path)
    assert emer("filter", "--data", data, "--reference", ref, "--wheel-dir", wheel)[0] == 0
    first = json.loads((data / "quality" / "summary.json").read_text())["shards"]
    rc, out, err = emer(
        "filter", "--data", data, "--reference", ref, "--filter.min_words=1", "--filter.batch_size=2"
    )
    assert rc == 0, err
    summary = json.loads((data / "quality" / "summary.json").read_text())
    # s2 is long enough now; without a wheel s5's 'meh' is not off_wheel (the rule is on, flags none)
    assert summary["passed"] == 3 and summary["by_flag"]["too_short"] == 0
    assert summary["by_flag"]["off_wheel"] == 0 and summary["wheel"] is None
    on_disk = sorted(p.name for p in (data / "quality").glob("*.parquet"))
    assert on_disk == summary["shards"] and len(on_disk) >= 3  # batches of 2 rows
    assert not set(first) & set(on_disk)  # the first run's shards are gone
    assert sorted(read_quality(str(data))["name"].to_pylist()) == ["s1", "s2", "s3", "s4", "s5", "s6"]
    assert read_filtered(str(data), columns=["description_en"])["name"].to_pylist() == ["s1", "s2", "s5"]
    card = (data / "README.md").read_text()
    assert card.count("## Quality filters") == 1 and "3 of 6 samples pass" in card


def test_a_discrete_emotion_column_is_the_reference(ray_local, tmp_path, emer):
    rows = [clean_row("e1", emotion="happy"), clean_row("e2", emotion="angry"), clean_row("e3", emotion=None)]
    data = tmp_path / "coarse"
    sink.write_shard(str(data), [{**r, "outcome": "ok"} for r in rows], (*COLUMNS, "emotion"))
    rc, out, err = emer("filter", "--data", data)
    assert rc == 0, err
    summary = json.loads((data / "quality" / "summary.json").read_text())
    assert summary["reference"]["column"] == "emotion" and summary["by_flag"]["low_agreement"] == 1
    q = {r["name"]: r for r in read_quality(str(data)).to_pylist()}
    assert q["e1"]["quality_agreement"] == 0.75 and q["e2"]["quality_flags"] == ["low_agreement"]
    assert q["e3"]["quality_agreement"] is None and q["e3"]["quality_pass"]
    assert (data / "README.md").read_text().startswith("# EMER-Coarse annotations")


def test_bad_data_is_a_clear_error(tmp_path, emer):
    rc, _, err = emer("filter", "--data", tmp_path / "nothing")
    assert rc == 2
    assert f"{tmp_path / 'nothing'}: no EMER-Coarse there (no samples/part-*.parquet)" in err
    assert "run `emer annotate --input CLIPS --subtitles CSV --output" in err
    undescribed = tmp_path / "checked-only"
    rows = [{k: v for k, v in clean_row().items() if k not in ("description_en", "description_zh")}]
    sink.write_shard(str(undescribed), rows, [c for c in rows[0] if c != "outcome"])
    rc, _, err = emer("filter", "--data", undescribed)
    assert rc == 2 and "EMER-Coarse without description_en, description_zh" in err
    assert not (undescribed / "quality").exists()


def test_the_card_section_is_replaced_and_survives_a_rewritten_card(tmp_path):
    from pipelines import card
    from pipelines.config import AnnotateConfig
    from pipelines.inputs import Listing
    from pipelines.sink import OutputState

    first = {"written": "t1", "rows": 4, "passed": 3, "by_flag": {"too_short": 1}, "skipped_rules": []}
    second = {
        **first,
        "written": "t2",
        "passed": 1,
        "by_flag": {"too_short": 3},
        "skipped_rules": ["language_zh"],
    }
    text = card.with_quality_section(card.with_quality_section(CARD, first), second)
    assert (
        text.count("## Quality filters") == 1
        and "| too_short | 3 |" in text
        and "| too_short | 1 |" not in text
    )
    assert "Rules not applied: language_zh." in text and text.endswith("| column | meaning |\n")
    (tmp_path / "quality").mkdir()
    (tmp_path / "quality" / "summary.json").write_text(json.dumps(second))
    cfg = AnnotateConfig(stop_after="check")  # `emer annotate` rewriting the card of a filtered output
    card.write_manifest_and_card(
        cfg, Listing([], [], [], [], 0), OutputState(), {}, "in", "s.csv", str(tmp_path)
    )
    rewritten = (tmp_path / "README.md").read_text()
    assert "1 of 4 samples pass every rule" in rewritten
    assert rewritten.index("## Quality filters") < rewritten.index("## Columns of `samples/`")


def test_without_a_reference_the_signal_columns_are_the_independent_signal(ray_local, tmp_path, emer):
    labels = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    sad = {"labels": labels, "faces_per_frame": [1], "mean": [0, 0, 0, 0.1, 0.8, 0, 0.1], "per_frame": None}
    voice = dict.fromkeys(AUDIO_FEATURE_FIELDS, 0.0)
    rows = [
        clean_row("g1", face_expressions=sad, audio_features={**voice, "arousal": -0.9}),  # happy vs sad
        clean_row("g2", face_expressions=None, audio_features={**voice, "arousal": 1.2}),  # happy, high
        clean_row("g3", face_expressions=None, audio_features=None),  # nothing measured
    ]
    data = tmp_path / "coarse"
    sink.write_shard(str(data), [{**r, "outcome": "ok"} for r in rows], (*COLUMNS, *SIGNAL_COLUMNS))
    rc, out, err = emer("filter", "--data", data)
    assert rc == 0, err
    summary = json.loads((data / "quality" / "summary.json").read_text())
    want = {"source": "signal", "column": "audio_features, face_expressions", "names": None}
    assert summary["reference"] == want
    q = {r["name"]: r for r in read_quality(str(data)).to_pylist()}
    assert q["g1"]["quality_flags"] == ["low_agreement"] and q["g1"]["quality_agreement"] == 0.0
    assert "face sad, voice arousal low" in q["g1"]["quality_reasons"][0]
    assert q["g2"]["quality_agreement"] == 1.0 and q["g2"]["quality_pass"]
    assert q["g3"]["quality_agreement"] is None and q["g3"]["quality_pass"]
    rc, _, err = emer("filter", "--data", data, "--filter.signal_reference=false")
    assert rc == 0, err
    assert json.loads((data / "quality" / "summary.json").read_text())["reference"]["source"] is None
