"""The MER-UniBench discrete (hit rate) and sentiment tasks on a hand-written two-wheel fixture:
every expected number is computed by hand in the docstrings; the CLI runs through ``emer.cli.main``
and the LLM path against the local fake OpenAI server (``fake_llm``)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from evaluation.sentiment import parse_polarity, polarity_of, weighted_f1

WORDS = ["happy", "joyful", "sad", "angry", "worried", "surprised", "calm"]


def write_wheel(folder: Path) -> Path:
    """Two wheels (level-1 clusters named like the real ones, so the lexicon knows them):
    wheel1: happy, joyful -> happy; sad -> sad; angry -> mad; worried -> scared; surprised.
    wheel2: happy, joyful -> joy; sad *and angry* -> sad; surprised; calm -> peaceful; no worried.
    'happier' is a form of happy; 'meh' a known form that reaches no wheel word; 'neutral' and
    'xyz' are unknown."""
    w1 = {"happy": "happy", "joyful": "happy", "sad": "sad", "angry": "mad", "worried": "scared"}
    w2 = {"happy": "joy", "joyful": "joy", "sad": "sad", "angry": "sad", "calm": "peaceful"}
    w1["surprised"] = w2["surprised"] = "surprised"
    mapping = {
        "format_mapping": {**{w: [w] for w in WORDS}, "happier": ["happy"], "meh": ["meh"]},
        "raw_mapping": {w: [w] for w in WORDS},
        "wheel_map_whole": {
            "wheel1": {"level1": w1, "level2": {w: w for w in w1}},
            "wheel2": {"level1": w2, "level2": {w: w for w in w2}},
        },
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "wheel_mapping.json").write_text(json.dumps(mapping))
    return folder


def write(path: Path, column: str, data: dict) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", column])
        for k, v in data.items():
            w.writerow([k, repr(v) if isinstance(v, list) else v])
    return path


HIT_GT = {"s1": "happy", "s2": "sad", "s3": "worried", "s4": "angry", "s5": "neutral", "s6": "Happy"}
HIT_PRED = {"s1": ["joyful", "meh"], "s2": ["angry"], "s3": [], "s4": ["meh", "xyz"], "s5": ["happy"]}
HIT_PRED["s6"] = ["happier"]


def test_hit_rate_by_hand(emer, tmp_path):
    """wheel1 scores s1-s4, s6 (neutral reaches no cluster): hits s1 (happy in {happy}), s6 (happier
    -> happy); s2 sad vs {mad} miss, s3 empty miss, s4 unmapped labels ignored -> miss: 2/5 = 0.4.
    wheel2 scores s1, s2, s4, s6 (worried and neutral outside it): hits s1, s2 (angry is in sad),
    s6: 3/4 = 0.75. Hit rate (0.4 + 0.75) / 2 = 0.575. Classes: happy 1, sad (0 + 1) / 2, worried
    0 (one wheel), angry 0, neutral unscored."""
    wheel = write_wheel(tmp_path / "wheel")
    gt = write(tmp_path / "gt.csv", "emotion", HIT_GT)
    pred = write(tmp_path / "pred.csv", "openset", HIT_PRED)
    rc, out, _ = emer("evaluate", "hit", "--gt", gt, "--pred", pred, "--wheel-dir", wheel, "--json")
    assert rc == 0
    s = json.loads(out)
    assert s["hit_rate"] == pytest.approx(0.575)
    assert s["wheels"]["wheel1"] == {"hit_rate": pytest.approx(0.4), "samples": 5, "excluded": 1}
    assert s["wheels"]["wheel2"] == {"hit_rate": pytest.approx(0.75), "samples": 4, "excluded": 2}
    c = s["classes"]
    assert (c["happy"]["hit_rate"], c["happy"]["samples"]) == (1.0, 2)
    assert c["sad"]["hit_rate"] == 0.5 and c["angry"]["hit_rate"] == 0.0
    assert (c["worried"]["hit_rate"], c["worried"]["wheels_scored"]) == (0.0, 1)
    assert math.isnan(c["neutral"]["hit_rate"]) and c["neutral"]["wheels_scored"] == 0
    assert (s["unscored_samples"], s["empty_predictions"]) == (1, 1)
    md = (tmp_path / "report.md").read_text()
    assert "Hit rate: 57.50" in md and "| wheel2 | 75.00 | 4 | 2 |" in md
    assert (tmp_path / "hit.png").stat().st_size > 0
    rows = list(csv.DictReader(open(tmp_path / "hit-samples.csv")))
    assert [float(r["hit"]) for r in rows[:2]] == [1.0, 0.5]


def test_hit_needs_a_wheel_and_one_label(emer, tmp_path):
    gt = write(tmp_path / "gt.csv", "emotion", {"s1": "happy", "s2": ""})
    pred = write(tmp_path / "pred.csv", "openset", {"s1": ["happy"]})
    rc, _, err = emer("evaluate", "hit", "--gt", gt, "--pred", pred, "--no-report")
    assert rc != 0 and "--wheel-dir" in err
    wheel = write_wheel(tmp_path / "wheel")
    rc, _, err = emer("evaluate", "hit", "--gt", gt, "--pred", pred, "--wheel-dir", wheel, "--no-report")
    assert rc != 0 and "row 2" in err and "'emotion' is empty" in err


def test_hit_from_descriptions_via_extraction(emer, fake_llm, tmp_path, monkeypatch):
    """Descriptions -> labels by the ov_extract prompt (fake: the known emotion words): s1 'happy'
    hits both wheels, s2 'calm' misses wheel1 (no calm there, ignored: empty -> miss) and
    wheel2 (peaceful vs sad): (1/2 + 1/2) / 2 = 0.5."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    wheel = write_wheel(tmp_path / "wheel")
    gt = write(tmp_path / "gt.csv", "emotion", {"s1": "happy", "s2": "sad"})
    text = {"s1": "She smiles, clearly happy.", "s2": "He sits there, calm."}
    pred = write(tmp_path / "pred.csv", "description", text)
    rc, out, _ = emer(
        "evaluate", "hit", "--gt", gt, "--pred", pred, "--wheel-dir", wheel, "--json", "--no-report",
        *llm_flags(fake_llm, tmp_path / "cache"),
    )  # fmt: skip
    assert rc == 0
    s = json.loads(out)
    assert s["hit_rate"] == pytest.approx(0.5) and s["extracted_from"] == "description"


# gt: t1 pos, t2 neg (-1.5), t3 neg, t4 neutral (0), t5 pos (2), t6 pos (0.3 > 0), t7 neg
SENT_GT = {"t1": "positive", "t2": "-1.5", "t3": "Negative", "t4": "0", "t5": "2", "t6": "0.3"}
SENT_GT["t7"] = "negative"
SENT_PRED = {"t1": ["happy"], "t2": ["sad", "happy"], "t3": ["angry", "worried"], "t4": ["happy"]}
SENT_PRED.update({"t5": ["surprised"], "t6": ["calm"], "t7": ["sad"]})


def sentiment(emer, tmp_path, *flags: str) -> dict:
    gt = write(tmp_path / "gt.csv", "sentiment", SENT_GT)
    pred = write(tmp_path / "pred.csv", "openset", SENT_PRED)
    rc, out, _ = emer("evaluate", "sentiment", "--gt", gt, "--pred", pred, "--json", *flags)
    assert rc == 0
    return json.loads(out)


def test_sentiment_lexicon_by_hand(emer, tmp_path):
    """Lexicon votes over both wheels: t1 +2 pos; t2 sad/happy tie -> neutral; t3 mad, scared, sad
    -> neg; t4 pos; t5 surprised -> no vote -> neutral; t6 peaceful -> pos; t7 neg.
    Scored (gt not neutral): t1 t2 t3 t5 t6 t7; positive? true T F F T T F, pred T F F F T F.
    Accuracy 5/6. F1(T): tp 2, fp 0, fn 1 -> 4/5; F1(F): tp 3, fp 1, fn 0 -> 6/7; supports 3, 3:
    WAF (4/5 + 6/7) / 2 = 29/35."""
    s = sentiment(emer, tmp_path, "--mapping", "lexicon", "--wheel-dir", write_wheel(tmp_path / "w"))
    assert s["accuracy"] == pytest.approx(5 / 6)
    assert s["weighted_f1"] == pytest.approx(29 / 35)
    assert (s["samples"], s["neutral_gt_excluded"], s["mapping"]) == (6, 1, "lexicon")
    assert s["confusion"]["positive"] == {"positive": 2, "negative": 0, "neutral": 1}
    assert s["confusion"]["neutral"] == {"positive": 1, "negative": 0, "neutral": 0}
    md = (tmp_path / "report.md").read_text()
    assert "**lexicon** (offline wheel-cluster lexicon (ours)" in md and "| 82.86 | 83.33 |" in md


def test_sentiment_valence_threshold(emer, tmp_path):
    """--valence-threshold 0.5 makes t6 (0.3) neutral: scored t1 t2 t3 t5 t7, true T F F T F, pred
    T F F F F: accuracy 4/5; F1(T) tp 1 fn 1 -> 2/3 (support 2), F1(F) tp 3 fp 1 -> 6/7 (support
    3): WAF (2 * 2/3 + 3 * 6/7) / 5 = 82/105."""
    wheel = write_wheel(tmp_path / "w")
    s = sentiment(emer, tmp_path, "--mapping", "lexicon", "--wheel-dir", wheel, "--valence-threshold", "0.5")
    assert (s["accuracy"], s["samples"]) == (pytest.approx(4 / 5), 5)
    assert s["weighted_f1"] == pytest.approx(82 / 105)


def llm_flags(fake, cache: Path) -> list[str]:
    return [
        f"--evaluate.llm.base_url={fake.base_url}",
        f"--evaluate.llm.cache_dir={cache}",
        "--evaluate.llm.model=test-model",
        "--evaluate.llm.retry_backoff_s=0.01",
    ]


def test_sentiment_llm_with_malformed_answers(emer, fake_llm, tmp_path, monkeypatch):
    """Fake LLM: majority of known words. 'surprised' is malformed once (re-asked: neutral), 'calm'
    always (3 asks, then scored neutral and reported). Preds: t1 pos, t2 neutral, t3 neg, t4 pos,
    t5 neutral, t6 neutral (failed), t7 neg. Scored true T F F T T F, pred T F F F F F: accuracy
    4/6; F1(T) tp 1 fn 2 -> 1/2, F1(F) tp 3 fp 2 -> 3/4; WAF 5/8."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    fake_llm.bad_once, fake_llm.always_bad = {"surprised"}, {"calm"}
    s = sentiment(emer, tmp_path, "--no-report", *llm_flags(fake_llm, tmp_path / "cache"))
    assert s["accuracy"] == pytest.approx(4 / 6) and s["weighted_f1"] == pytest.approx(5 / 8)
    assert (s["mapping"], s["llm_failures"], s["llm_failed_names"]) == ("llm", 1, ["t6"])
    calm = [p for p in fake_llm.prompts if "['calm']" in p]
    assert len(calm) == 3 and calm[0].startswith("Please assume the role") and "nothing else" in calm[1]
    assert all("Emotion words: " in p for p in fake_llm.prompts)


def test_polarity_helpers():
    assert [polarity_of(v) for v in ("Positive", " neutral ", "-0.2", 0, 1.5, "n/a")] == [
        "positive", "neutral", "negative", "neutral", "positive", None,
    ]  # fmt: skip
    assert polarity_of(0.4, 0.5) == "neutral" and polarity_of(-0.6, 0.5) == "negative"
    assert parse_polarity("Output: Negative.") == "negative"
    assert parse_polarity("positive or negative") is None and parse_polarity("") is None
    # true T T F, pred T F F: F1(T) 2/3 (support 2), F1(F) 2/3 (support 1) -> 2/3; all-wrong -> 0
    assert weighted_f1([True, True, False], [True, False, False]) == pytest.approx(2 / 3)
    assert weighted_f1([True, False], [False, True]) == 0.0
