"""The review page as a person uses it: real headless Chromium (Debian's chromium and chromedriver)
driven by selenium against ``emer review``'s app on a free port, over a small EMER-Coarse with
real clips. Play a clip, edit, accept with a key, reject with a reason, reload; a conflict between
two reviewers; a clip that is gone; a log line cut short. Skipped when Chromium is absent."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from browser_helpers import chromium, free_port, serving
from review_helpers import digest, write_coarse, write_quality

from pipelines.fine import reviewlog
from pipelines.fine.review_app import create_app

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]
webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is not installed: pip install -e '.[dev]'"
)
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

PLAY = """
const done = arguments[arguments.length - 1], v = document.getElementById('player'), t0 = performance.now();
v.muted = true;
const report = (err) => done({ready: v.readyState, t: v.currentTime, audio: v.webkitAudioDecodedByteCount,
                               err: err || (v.error && v.error.code)});
v.play().then(() => {
  const check = () => (v.currentTime > 0.3 || performance.now() - t0 > 10000)
    ? report() : setTimeout(check, 50);
  check();
}).catch((e) => report(String(e)));
"""


@pytest.fixture(scope="module")
def browser():
    with chromium() as driver:
        yield driver


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, str]:
    from pipelines.samples import generate_samples

    samples = generate_samples(tmp_path_factory.mktemp("review-clips"), n=3, seed=3, broken=False)
    return {f"s{i}": str(samples.root / "clips" / f"{n}.mp4") for i, n in enumerate(samples.clips)}


def dataset(tmp_path: Path, clips: dict[str, str], flags: dict[str, list[str]] | None = None) -> Path:
    """EMER-Coarse over ``clips`` in ``tmp_path/coarse``, with ``emer filter``'s flags if given."""
    data = tmp_path / "coarse"
    write_coarse(data, clips)
    if flags:
        write_quality(data, flags)
    return data


def decisions(data: Path, reviewer: str) -> list[dict]:
    path = data / "review" / f"{reviewer}.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def on_row(driver, name: str) -> None:
    """Wait until the page open is ``name``'s row page."""

    def there(d):
        try:
            return d.find_element(By.ID, "name").text.split()[0] == name
        except (NoSuchElementException, StaleElementReferenceException):
            return False

    WebDriverWait(driver, 10).until(there)


def text_of(driver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def keys(driver, *typed: str) -> None:
    webdriver.ActionChains(driver).send_keys(*typed).perform()


def play_and_edit(browser, text: str) -> None:
    """Play the open row's clip (with its audio), then replace the description and save."""
    played = browser.execute_async_script(PLAY)
    assert played["ready"] >= 2 and played["t"] > 0.3 and played["audio"] > 0, played
    box = browser.find_element(By.ID, "description")
    box.clear()
    box.send_keys(text)
    browser.find_element(By.ID, "save").click()


def test_play_edit_accept_reject_and_reload(browser, clips, tmp_path):
    data = dataset(tmp_path, clips, {"s0": [], "s1": [], "s2": ["short_description"]})
    coarse, edited = digest(data / "samples"), "The person frowns and sounds tense."
    with serving(create_app(str(data), "alice"), free_port()) as url:
        browser.get(url + "/")
        on_row(browser, "s2")  # the flagged row comes first
        assert "short_description" in text_of(browser, "quality")
        play_and_edit(browser, edited)
        on_row(browser, "s0")
        assert text_of(browser, "progress") == "1 of 3 reviewed"
        keys(browser, "a")  # accept with the shortcut
        on_row(browser, "s1")
        keys(browser, "r")  # asks for the reason, then Enter rejects
        assert browser.switch_to.active_element.get_attribute("id") == "reason"
        keys(browser, "no face in view", Keys.ENTER)
        on_row(browser, "s2")
        browser.refresh()
        on_row(browser, "s2")
        assert text_of(browser, "progress") == "3 of 3 reviewed"
        assert browser.find_element(By.ID, "description").get_attribute("value") == edited
    got = [
        (d["name"], d["action"], (d["after"] or {}).get("description_en"), d["reason"])
        for d in decisions(data, "alice")
    ]
    assert got == [
        ("s2", "edit", edited, ""),
        ("s0", "accept", "In s0 the person is calm.", ""),
        ("s1", "reject", None, "no face in view"),
    ]
    assert digest(data / "samples") == coarse


def test_a_stale_save_shows_the_conflict_and_writes_nothing(browser, clips, tmp_path):
    data = dataset(tmp_path, clips)
    with (
        serving(create_app(str(data), "bob"), free_port()) as bob,
        serving(create_app(str(data), "alice"), free_port()) as alice,
    ):
        browser.get(bob + "/row/s1")  # bob opens the row ...
        on_row(browser, "s1")
        bob_tab = browser.current_window_handle
        browser.switch_to.new_window("tab")  # ... alice edits it in her page meanwhile
        browser.get(alice + "/row/s1")
        browser.find_element(By.ID, "description").send_keys(" Alice adds: she smiles.")
        browser.find_element(By.ID, "save").click()
        on_row(browser, "s2")
        browser.close()
        browser.switch_to.window(bob_tab)
        browser.find_element(By.ID, "description").send_keys(" Bob adds: he shouts.")
        browser.find_element(By.ID, "save").click()
        WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.ID, "conflict"))
        assert "changed by alice (edit" in text_of(browser, "conflict")
        assert text_of(browser, "their-description") == "In s1 the person is calm. Alice adds: she smiles."
        browser.find_element(By.ID, "reload").click()
        on_row(browser, "s1")
        assert "Alice adds" in browser.find_element(By.ID, "description").get_attribute("value")
    assert decisions(data, "bob") == [] and [d["action"] for d in decisions(data, "alice")] == ["edit"]


def test_a_gone_clip_is_named_and_the_row_still_decided(browser, clips, tmp_path):
    moved = tmp_path / "s0-moved.mp4"
    shutil.copy(clips["s0"], moved)
    data = dataset(tmp_path, {"s0": str(moved), "s1": clips["s1"]})
    moved.unlink()
    with serving(create_app(str(data), "alice"), free_port()) as url:
        browser.get(url + "/row/s0")
        on_row(browser, "s0")
        assert text_of(browser, "clip-missing") == f"clip no longer exists: {moved}"
        assert not browser.find_elements(By.TAG_NAME, "video")
        browser.find_element(By.ID, "accept").click()
        on_row(browser, "s1")
    assert [(d["name"], d["action"]) for d in decisions(data, "alice")] == [("s0", "accept")]


def test_a_line_cut_short_shows_a_banner_and_keeps_the_decisions(browser, clips, tmp_path):
    data = dataset(tmp_path, clips)
    row = {"name": "s0", "description_en": "In s0 the person is calm.", "ov_labels": ["calm", "neutral"]}
    fields = reviewlog.fields_of(row)
    reviewlog.append(
        str(data),
        reviewlog.Decision("alice", "s0", "accept", reviewlog.content_hash(row), fields, fields),
        row,
    )
    log = data / "review" / "alice.jsonl"
    log.write_text(log.read_text() + '{"v": 1, "reviewer": "alice", "name": "s1", "acti')  # a crash mid-write
    with serving(create_app(str(data), "alice"), free_port()) as url:
        browser.get(url + "/")
        on_row(browser, "s1")  # s0 is still decided: the queue opens on the next row
        banner = text_of(browser, "log-problems")
        assert "review/alice.jsonl line 2: not a complete decision" in banner
        assert text_of(browser, "progress") == "1 of 3 reviewed"
        keys(browser, "a")
        on_row(browser, "s2")
        assert text_of(browser, "progress") == "2 of 3 reviewed"
    logs, problems = reviewlog.read_logs(str(data))
    assert [(d.name, d.action) for d in logs["alice"]] == [("s0", "accept"), ("s1", "accept")] and len(
        problems
    ) == 1
