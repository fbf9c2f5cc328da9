"""The papers' loop from EMER-Coarse to EMER-Fine, end to end, as a team runs it: ``emer annotate``
(the demo's model classes, tiny weights) -> ``emer filter`` -> ``emer review`` driven in a real
headless Chromium (accept, edit, reject) -> ``emer export fine`` -> ``emer train --stage 2`` on that
export. Skipped with a reason where Chromium is absent."""

from __future__ import annotations

import csv
import json

import pytest
from browser_helpers import chromium, serving
from train_helpers import history, run_config

from core.config import dump_yaml
from core.llm import tiny
from emer.cli import main
from pipelines.fine.review_app import create_app

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
EDITED = "The person frowns and speaks sharply, so the person seems angry."


def annotate(sample_clips, out, tmp_path) -> None:
    models = {role: tiny.BUILDERS[role](tmp_path / "llm" / role) for role in ("audio", "video", "text")}
    flags = [
        f"--annotate.{role}.{key}={value}"
        for role, path in models.items()
        for key, value in (("model", path), ("max_new_tokens", 6), ("min_new_tokens", 2))
    ]
    clips, subs = str(sample_clips.root / "clips"), str(sample_clips.subtitles)
    args = ["annotate", "--input", clips, "--subtitles", subs, "--output", str(out)]
    assert main([*args, "--annotate.stages.decode.actors=1", *flags]) == 0


def review(out) -> dict[str, str]:
    """In the browser: edit the first row of the queue, reject the second, accept the next five,
    leave the last one unreviewed. Returns {name: what was done}."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    done: dict[str, str] = {}
    with chromium() as browser, serving(create_app(str(out), "alice")) as url:

        def name_on_page(d) -> str | None:
            try:
                return d.find_element(By.ID, "name").text.split()[0]
            except (NoSuchElementException, StaleElementReferenceException, IndexError):
                return None  # the next page is loading

        def opened(previous: str | None = None) -> str:
            """Wait for the row page after ``previous`` to be open; its sample name."""
            WebDriverWait(browser, 15).until(lambda d: name_on_page(d) not in (None, previous))
            return name_on_page(browser)

        browser.get(url + "/")
        first = opened()
        box = browser.find_element(By.ID, "description")
        box.clear()
        box.send_keys(EDITED)
        browser.find_element(By.ID, "save").click()
        done[first] = "edit"
        second = opened(first)
        browser.find_element(By.TAG_NAME, "body").send_keys("r")
        browser.switch_to.active_element.send_keys("gibberish description", Keys.ENTER)
        done[second] = "reject"
        name = opened(second)
        for _ in range(5):
            browser.find_element(By.TAG_NAME, "body").send_keys("a")
            done[name] = "accept"
            name = opened(name)  # the page moves on to the next undecided row
        browser.refresh()
        assert browser.find_element(By.ID, "progress").text == "7 of 8 reviewed"
    return done


def test_filter_review_export_then_stage_two(ray_local, sample_clips, tiny_cfg, tmp_path):
    out = tmp_path / "emer-coarse"
    annotate(sample_clips, out, tmp_path)

    assert main(["filter", "--data", str(out), "--reference", str(sample_clips.reference)]) == 0
    summary = json.loads((out / "quality" / "summary.json").read_text())
    assert summary["rows"] == 8 and 0 <= summary["passed"] <= 8
    assert "## Quality filters" in (out / "README.md").read_text()

    done = review(out)
    decisions = [json.loads(x) for x in (out / "review" / "alice.jsonl").read_text().splitlines()]
    assert {d["name"]: d["action"] for d in decisions} == done and len(decisions) == 7

    fine = tmp_path / "emer-fine.csv"
    assert main(["export", "fine", "--data", str(out), "--output", str(fine)]) == 0
    with open(fine, newline="", encoding="utf-8") as f:
        rows = {r["name"]: r for r in csv.DictReader(f)}
    kept = {n for n, a in done.items() if a != "reject"}
    assert set(rows) == kept  # accepted and edited rows; the rejected and the unreviewed are out
    [edited] = [n for n, a in done.items() if a == "edit"]
    assert rows[edited]["english"] == EDITED

    cfg = run_config(
        tiny_cfg,
        stage=2,
        fine_uri=str(fine),
        fine_media_uri=str(out / "samples"),
        storage_path=str(tmp_path / "runs"),
        max_steps=2,
    )
    config_file = tmp_path / "stage2.yaml"
    config_file.write_text(dump_yaml(cfg))
    assert main(["train", "--stage", "2", "--config", str(config_file)]) == 0
    # (no capsys here: this test may be the one that starts the session's Ray, whose log thread
    # must not be bound to a per-test capture that closes)
    from affect_model.train.data import read_fine_csv, split_fine  # heavy: torch

    assert len(split_fine(read_fine_csv(str(fine)))[0]) == 5
    run = history(cfg.train.run_uri)
    assert len(run["steps"]) == 2 and run["steps"][-1]["step"] == 2  # 6 EMER-Fine rows: 5 train, 1 test
