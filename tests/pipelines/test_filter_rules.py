"""The EMER-Fine quality rules on hand-made rows (each fires on its crafted row, none on a clean one),
the label agreement by hand, the config checks, and a row the stage fails on becoming data (no Ray)."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from fine_helpers import CLEAN_EN, clean_row, write_wheel

from core.config import ConfigError
from core.schema import rows_to_table
from core.stage import StageChain
from core.wheel import load_wheel
from pipelines.fine import quality
from pipelines.fine.config import FilterConfig
from pipelines.fine.rules import agreement, check_row
from pipelines.fine.signal_ref import SignalReference

CFG = FilterConfig()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    return load_wheel(str(write_wheel(tmp_path_factory.mktemp("wheel"))))


def test_a_clean_row_passes_every_rule(wheel):
    v = check_row(clean_row(), CFG, wheel, reference=["happy"])
    assert v.flags == [] and v.reasons == []
    assert v.numbers["quality_words"] == 13 and v.numbers["quality_off_wheel"] == 0
    # level 1: {joy} vs {joy} -> 1; level 2: {happy} vs {happy, joyful} -> (1/2 + 1) / 2; mean 0.875
    assert v.numbers["quality_agreement"] == 0.875


@pytest.mark.parametrize(
    ("changes", "cfg", "flag", "reason"),
    [
        ({"description_en": "Happy, she smiles."}, CFG, "too_short", "3 words (< filter.min_words = 8)"),
        ({}, FilterConfig(max_words=12), "too_long", "13 words (> filter.max_words = 12)"),
        (
            {"description_en": "She is happy, she is happy, she is happy about the exam today."},
            CFG,
            "repeated_ngram",
            "the 3-gram 'she is happy' occurs 3 times (>= filter.ngram_repeats = 3)",
        ),
        ({"audio_clue": " "}, CFG, "missing_clue", "audio_clue is empty"),
        ({"audio_clue": "", "video_clue": None}, CFG, "missing_clue", "audio_clue and video_clue are empty"),
        (
            {"description_en": "这个 人 很 开心 因为 她 在 微笑 today"},
            CFG,
            "language_en",
            "29% of description_en's letters are ASCII (< filter.min_ascii_share = 0.9)",
        ),
        ({"description_zh": CLEAN_EN}, CFG, "language_zh", "0% of description_zh's letters are CJK"),
        ({"description_zh": ""}, CFG, "language_zh", "description_zh is empty"),
        ({"ov_labels": []}, CFG, "no_labels", "ov_labels is empty"),
        (
            {"ov_labels": ["happy", "meh", "blorp"]},
            CFG,
            "off_wheel",
            "2 of 3 labels (meh, blorp) reach no emotion-wheel cluster "
            "(share > filter.max_off_wheel_share = 0.5)",
        ),
    ],
)
def test_each_rule_fires_on_its_crafted_row(wheel, changes, cfg, flag, reason):
    v = check_row(clean_row(**changes), cfg, wheel)
    assert v.flags == [flag], v.reasons
    assert len(v.reasons) == 1 and v.reasons[0].startswith(f"{flag}: ") and reason in v.reasons[0]


def test_low_agreement_names_the_score_and_the_threshold(wheel):
    v = check_row(clean_row(), CFG, wheel, reference="['sad']")
    assert v.flags == ["low_agreement"] and v.numbers["quality_agreement"] == 0.0
    assert v.reasons == [
        "low_agreement: OV labels [happy, joyful] agree 0.00 with the reference [sad] "
        "(< filter.min_agreement = 0.25)"
    ]
    assert check_row(clean_row(), CFG.replace(min_agreement=0.0), wheel, reference=["sad"]).flags == []


def test_agreement_by_hand(wheel):
    assert agreement(["happy"], ["joyful"], wheel) == 0.5  # same level-1 cluster, other level-2 ones
    assert agreement(["happy"], ["joyful"], None) == 0.0  # exact labels without a wheel
    assert agreement(["happier"], ["happy"], wheel) == 1.0  # an inflected form reaches the same word
    assert agreement(["sad", "happy"], "happy", None) == pytest.approx((1 / 2 + 1) / 2)
    assert agreement([], ["happy"], wheel) == 0.0
    assert agreement(["happy"], [], wheel) is None  # no reference: not scored


def test_rules_without_a_wheel_or_reference_and_skipped_rules():
    row = clean_row(ov_labels=["meh"], description_en="Too short.")
    assert check_row(row, CFG).flags == ["too_short"]  # no wheel: off_wheel cannot fire
    assert check_row(row, CFG.replace(skip_rules=["too_short"])).flags == []
    assert check_row(clean_row(description_zh=""), CFG.replace(require_zh=False)).flags == []


def test_config_problems_are_collected():
    with pytest.raises(ConfigError) as info:
        FilterConfig.from_dict({"skip_rules": ["nope"], "max_words": 2, "min_agreement": 2.0})
    text = str(info.value)
    assert "3 problem(s)" in text
    assert "filter.skip_rules = ['nope']: unknown rule(s) ['nope']" in text
    assert "filter.max_words = 2: must be >= filter.min_words (8)" in text
    assert "filter.min_agreement = 2.0: must be between 0.0 and 1.0" in text


def test_a_bad_reference_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "ref.csv"
    bad.write_text("name,label\ns1,happy\n")
    with pytest.raises(ValueError, match="ref.csv: a reference needs columns name and openset"):
        quality.load_reference(str(bad))
    with pytest.raises(FileNotFoundError, match="no such reference file; fix --reference"):
        quality.load_reference(str(tmp_path / "absent.csv"))


def test_a_row_the_stage_fails_on_is_recorded_as_an_error(tmp_path, monkeypatch):
    real = quality.check_row

    def flaky(row, *args):
        if row["name"] == "s_boom":
            raise RuntimeError("boom on purpose")
        return real(row, *args)

    monkeypatch.setattr(quality, "check_row", flaky)
    chain = StageChain([(quality.QualityStage, {}), (quality.QualitySink, {"output": str(tmp_path)})], CFG)
    small = chain(rows_to_table([clean_row(), clean_row("s_boom")])).to_pylist()
    assert [r["quality_flags"] for r in small] == [[], ["error"]]
    written = pq.read_table(tmp_path / "quality" / small[0]["shard"]).to_pylist()
    boom = next(r for r in written if r["name"] == "s_boom")
    assert boom["quality_pass"] is False and boom["quality_reasons"] == [
        "error: quality: RuntimeError: boom on purpose"
    ]
    assert next(r for r in written if r["name"] == "s_clean")["quality_pass"] is True


def face(top: str, p: float) -> dict:
    labels = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    mean = [(1 - p) / 6] * 7
    mean[labels.index(top)] = p
    return {"labels": labels, "faces_per_frame": [1, 1], "mean": mean, "per_frame": [mean, mean]}


def test_the_measured_signals_are_the_reference_without_labels(wheel):
    sad_face = SignalReference.of({"face_expressions": face("sad", 0.6), "audio_features": {"arousal": 0.1}})
    assert sad_face == SignalReference("sad", None)
    v = check_row(clean_row(), CFG, wheel, reference=sad_face)  # labels happy, joyful vs a sad face
    assert v.flags == ["low_agreement"] and v.numbers["quality_agreement"] == 0.0
    assert "with the measured signal (face sad)" in v.reasons[0]
    # a happy face and a high-arousal voice agree with ['happy', 'joyful'] (0.875 as by hand above, 1)
    both = SignalReference.of({"face_expressions": face("happy", 0.7), "audio_features": {"arousal": 0.9}})
    assert both == SignalReference("happy", "high")
    assert check_row(clean_row(), CFG, wheel, reference=both).numbers["quality_agreement"] == 0.9375
    # the voice alone: low arousal against high-arousal labels disagrees
    calm = SignalReference.of({"face_expressions": None, "audio_features": {"arousal": -0.8}})
    assert calm == SignalReference(None, "low")
    assert check_row(clean_row(), CFG, wheel, reference=calm).numbers["quality_agreement"] == 0.0


def test_a_signal_that_says_nothing_is_no_reference(wheel):
    unsure = {"face_expressions": face("sad", 0.3), "audio_features": {"arousal": 0.2}}
    assert SignalReference.of(unsure) is None  # top below 0.4, medium arousal
    assert SignalReference.of({"face_expressions": face("neutral", 0.9), "audio_features": None}) is None
    assert SignalReference.of({}) is None
    # the labels' arousal is unknown ('meh'): only the face part counts
    ref = SignalReference("happy", "low")
    v = check_row(clean_row(ov_labels=["meh"]), CFG, wheel, reference=ref)
    assert v.numbers["quality_agreement"] == 0


def test_an_omni_runs_rows_are_checked_on_their_one_clue(tmp_path):
    omni = clean_row(audio_clue=None, video_clue=None, av_clue="She smiles and her voice is bright.")
    assert "missing_clue" not in check_row(omni, CFG).flags  # its audio and video clues stay null
    v = check_row(clean_row(audio_clue=None, video_clue=None, av_clue=" "), CFG)
    assert v.flags == ["missing_clue"] and v.reasons == ["missing_clue: av_clue is empty"]
    # The filter job reads av_clue where the annotation wrote it (every EMER-Coarse since omni).
    (tmp_path / "samples").mkdir()
    pq.write_table(rows_to_table([omni]), tmp_path / "samples" / "part-0.parquet")
    read, _, _ = quality.plan_inputs(CFG, str(tmp_path))
    assert "av_clue" in read and "audio_clue" in read
