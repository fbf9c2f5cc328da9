"""LLM grouping and label extraction against a local OpenAI-compatible server: retries on 429/5xx,
the on-disk cache (a rerun makes zero requests), malformed answers re-asked then reported."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from core.llm import Completer, LLMRequest
from core.llm.labels import parse_label_groups, parse_label_list
from evaluation.config import default_llm

GT = {"s1": ["happy", "joyful", "sad"], "s2": ["angry"], "s3": ["worried", "anxious"], "s4": ["calm"]}
PRED = {"s1": ["happy", "hopeful"], "s2": ["annoyed", "sad"], "s3": ["worried"], "s4": []}


def write(path: Path, data: dict, column: str = "openset") -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", column])
        for k, v in data.items():
            w.writerow([k, repr(v) if isinstance(v, list) else v])
    return path


def llm_flags(fake, cache: Path) -> list[str]:
    return [
        f"--evaluate.llm.base_url={fake.base_url}",
        f"--evaluate.llm.cache_dir={cache}",
        "--evaluate.llm.model=test-model",
        "--evaluate.llm.concurrency=3",
        "--evaluate.llm.max_retries=3",
        "--evaluate.llm.retry_backoff_s=0.01",
    ]


def expected_first_letter() -> tuple[float, float]:
    """Grouping by first letter: s1 {h, j, s} vs {h}: acc 1, rec 1/3; s2 {a} vs {a, s}: 1/2, 1;
    s3 {w, a} vs {w}: 1, 1/2; s4 empty prediction: 0, 0."""
    return (1 + 0.5 + 1 + 0) / 4, (1 / 3 + 1 + 0.5 + 0) / 4


def test_llm_grouping_retries_then_cache(emer, fake_llm, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    gt, pred = write(tmp_path / "gt.csv", GT), write(tmp_path / "pred.csv", PRED)
    fake_llm.script = [429, 500]
    argv = [
        "evaluate",
        "ov",
        "--gt",
        gt,
        "--pred",
        pred,
        "--grouping",
        "llm",
        "--json",
        "--no-report",
        *llm_flags(fake_llm, tmp_path / "cache"),
    ]
    rc, out, err = emer(*argv)
    assert rc == 0, err
    r = json.loads(out)
    acc, rec = expected_first_letter()
    assert r["accuracy"] == pytest.approx(acc) and r["recall"] == pytest.approx(rec)
    assert r["llm_failures"] == 0
    # s4's union has one label: no call; three prompts + the two scripted failures retried
    assert fake_llm.requests == 5
    rc, out2, err = emer(*argv)
    assert rc == 0, err
    assert fake_llm.requests == 5  # second run: every answer from the cache, zero requests
    assert json.loads(out2)["avg"] == r["avg"]


def test_llm_malformed_answers_reasked_then_reported(emer, fake_llm, tmp_path):
    gt, pred = write(tmp_path / "gt.csv", GT), write(tmp_path / "pred.csv", PRED)
    fake_llm.bad_once = {"annoyed"}  # s2: malformed, fine when re-asked
    fake_llm.always_bad = {"joyful"}  # s1: never readable -> exact grouping, reported
    rc, out, err = emer(
        "evaluate",
        "ov",
        "--gt",
        gt,
        "--pred",
        pred,
        "--grouping",
        "llm",
        "--json",
        "--out",
        tmp_path / "rep",
        *llm_flags(fake_llm, tmp_path / "cache"),
        "--evaluate.reask=2",
    )
    assert rc == 0, err
    r = json.loads(out)
    assert r["llm_failures"] == 1 and r["llm_failed_names"] == ["s1"]
    assert r["llm_malformed_answers"] == 4  # s2 once, s1 three times
    assert fake_llm.requests == 3 + 1 + 2
    # s1 exact: {happy, joyful, sad} vs {happy, hopeful}: acc 1/2, rec 1/3
    assert r["accuracy"] == pytest.approx((0.5 + 0.5 + 1 + 0) / 4)
    assert "llm failures: 1" in (tmp_path / "rep" / "report.md").read_text()


def test_extraction_from_descriptions(emer, fake_llm, tmp_path):
    gt = write(tmp_path / "gt.csv", GT)
    desc = {
        "s1": "He smiles; he looks happy and joyful.",
        "s2": "Her voice is angry.",
        "s3": "",
        "s4": "Calm and quiet, maybe a little sad.",
    }
    pred = write(tmp_path / "desc.csv", desc, column="description")
    rc, out, err = emer(
        "evaluate",
        "extract",
        "--pred",
        pred,
        "--output",
        tmp_path / "labels.csv",
        "--json",
        *llm_flags(fake_llm, tmp_path / "cache"),
    )
    assert rc == 0, err
    assert json.loads(out)["extraction_failures"] == 0
    with open(tmp_path / "labels.csv") as f:
        rows = {r["name"]: r["openset"] for r in csv.DictReader(f)}
    assert rows == {"s1": "['happy', 'joyful']", "s2": "['angry']", "s3": "[]", "s4": "['calm', 'sad']"}
    assert fake_llm.requests == 3  # the empty description needs no call
    # ov straight from the descriptions (extraction answers are cached now)
    rc, out, err = emer(
        "evaluate",
        "ov",
        "--gt",
        gt,
        "--pred",
        pred,
        "--grouping",
        "exact",
        "--json",
        "--no-report",
        *llm_flags(fake_llm, tmp_path / "cache"),
    )
    assert rc == 0, err
    r = json.loads(out)
    assert fake_llm.requests == 3 and r["extracted_from"] == "description"
    assert r["recall"] == pytest.approx((2 / 3 + 1 + 0 + 1) / 4)


def test_complete_records_errors_after_retries(fake_llm, tmp_path):
    fake_llm.script = [500, 500, 500]
    cfg = default_llm().replace(
        base_url=fake_llm.base_url, cache_dir=str(tmp_path), max_retries=2, retry_backoff_s=0.01
    )
    complete = Completer(cfg)
    assert complete(["Group these: ['a', 'b']"]) == [""]
    assert fake_llm.requests == 3 and len(complete.errors) == 1 and "500" in complete.errors[0]
    assert list(tmp_path.rglob("*.json")) == []  # failures are not cached


def test_client_errors_are_not_retried(fake_llm, tmp_path):
    """One retry policy for every LLM call: 400/401/404 fail at once, 429/5xx are retried."""
    for status in (400, 401, 404):
        fake_llm.requests, fake_llm.script = 0, [status]
        cfg = default_llm().replace(base_url=fake_llm.base_url, cache_dir=str(tmp_path), retry_backoff_s=0.01)
        complete = Completer(cfg)
        assert complete([f"prompt {status}"]) == [""]
        assert fake_llm.requests == 1 and f"HTTP {status}" in complete.errors[0]


def test_answer_parsers():
    assert parse_label_list("['Happy', 'sad']") == ["happy", "sad"]
    assert parse_label_list("```python\n['worried']\n```") == ["worried"]
    assert parse_label_list("surprise, nervous, dissatisfied") == ["surprise", "nervous", "dissatisfied"]
    assert parse_label_list("[happy, relieved]") == ["happy", "relieved"]
    assert parse_label_list("None") == [] and parse_label_list("[]") == []
    assert parse_label_list("") is None
    assert (
        parse_label_list("The character seems to be feeling quite conflicted about the whole thing") is None
    )
    assert parse_label_groups("Output: [['a', 'b'], ['c']]", ["a", "c"]) == [["a", "b"], ["c"]]
    assert parse_label_groups("[[a, b], [c]", ["a"]) == [["a", "b"], ["c"]]
    assert parse_label_groups("no list here", ["a"]) is None
    assert parse_label_groups("[['x']]", ["a"]) is None  # unrelated to the labels asked about


def test_cached_answers_are_per_endpoint(fake_llm, tmp_path):
    """The answer cache is keyed by the endpoint too: another server with the same model name is asked
    itself, never answered from the first one's cache (finding 15 of the hardening review)."""
    other = fake_llm.base_url.replace("127.0.0.1", "localhost")  # same server, another endpoint URL
    first = default_llm().replace(base_url=fake_llm.base_url, cache_dir=str(tmp_path), model="m")
    second = first.replace(base_url=other)
    prompt = "Group these: ['a', 'b']"
    assert Completer(first)([prompt]) == Completer(first)([prompt])
    assert fake_llm.requests == 1  # the second call came from the cache
    assert Completer(first).key(LLMRequest(prompt)) != Completer(second).key(LLMRequest(prompt))
    again = Completer(second)
    again([prompt])
    assert fake_llm.requests == 2 and again.cache_hits == 0


def test_a_wrong_key_fails_the_command_and_stops_early(emer, fake_llm, tmp_path):
    """Before: every request answered 401, the scores were computed from empty answers, exit 0.
    Now: the report is still written, the command exits 1 with a summary, and after
    ``stop_after_fatal`` refusals in a row no more requests are sent."""
    gt, pred = write(tmp_path / "gt.csv", GT), write(tmp_path / "pred.csv", PRED)
    fake_llm.script = [401] * 50
    argv = ["evaluate", "ov", "--gt", gt, "--pred", pred, "--grouping", "llm", "--out", tmp_path / "r"]
    flags = [*llm_flags(fake_llm, tmp_path / "cache"), "--evaluate.llm.concurrency=1"]
    rc, _, err = emer(*argv, *flags, "--evaluate.llm.stop_after_fatal=2")
    assert rc == 1, err
    assert re.search(r"evaluate ov: (\d+) of \1 LLM requests failed \(100%", err)  # asks and re-asks
    assert fake_llm.requests == 2  # none sent after the second refusal
    assert (tmp_path / "r" / "report.json").exists()  # results written all the same


def test_max_failure_fraction_flag(emer, fake_llm, tmp_path):
    gt, pred = write(tmp_path / "gt.csv", GT), write(tmp_path / "pred.csv", PRED)
    argv = ["evaluate", "ov", "--gt", gt, "--pred", pred, "--grouping", "llm", "--no-report"]
    flags = [*llm_flags(fake_llm, tmp_path / "cache"), "--evaluate.llm.max_retries=0"]
    fake_llm.script = [500]  # one of the three grouping requests fails (then its re-ask succeeds)
    rc, _, err = emer(*argv, *flags, "--evaluate.llm.concurrency=1", "--max-failure-fraction=0.2")
    assert rc == 1 and "1 of 4 LLM requests failed (25%, allowed 20%" in err
    fake_llm.requests, fake_llm.script = 0, [500]
    fresh = f"--evaluate.llm.cache_dir={tmp_path / 'cache2'}"  # not from the first run's cache
    rc, _, err = emer(*argv, *flags, fresh, "--evaluate.llm.concurrency=1", "--max-failure-fraction=0.5")
    assert rc == 0, err
