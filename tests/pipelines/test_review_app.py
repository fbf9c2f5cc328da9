"""The review page without a browser (FastAPI's TestClient): the startup errors of ``emer review``,
the token and loopback rules, decisions into the log, conflicts, the queue order with quality
flags, clips with Range requests (local and s3://) and the agreement figure; and the attacks of
issue #23: oversized and non-UTF-8 bodies, clips outside the clip folder, cross-site posts without
an Origin, a loopback address other than 127.0.0.1, a save over another reviewer's rejection."""

from __future__ import annotations

import json
import re

import pytest
import uvicorn
from fastapi.testclient import TestClient
from markupsafe import escape
from review_helpers import digest, write_coarse, write_quality

from core import storage
from emer.cli import main
from pipelines.fine import reviewlog
from pipelines.fine.review_app import MAX_BODY, BadForm, create_app, read_form
from pipelines.fine.review_data import parse_labels

LOCAL = "http://127.0.0.1:8377"
TOKEN = "t0ken-for-the-review-tests"


@pytest.fixture
def data(tmp_path):
    clip = tmp_path / "clips" / "a.mp4"
    clip.parent.mkdir()
    clip.write_bytes(bytes(range(256)) * 4)  # 1024 bytes: enough to check ranges
    root = tmp_path / "coarse"
    write_coarse(root, {"a": str(clip), "b": str(clip), "c": str(tmp_path / "clips" / "gone.mp4")})
    return root


def client(data, reviewer="alice", base_url=LOCAL, **kw) -> TestClient:
    return TestClient(create_app(str(data), reviewer, **kw), base_url=base_url)


def base_of(html: str) -> str:
    return re.search(r'name="base" value="(\w+)"', html).group(1)


def log_lines(data, reviewer="alice") -> list[dict]:
    path = data / "review" / f"{reviewer}.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_no_emer_coarse_is_one_clear_error_with_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for path in (tmp_path / "nothing", tmp_path / "empty"):
        assert main(["review", "--data", str(path), "--reviewer", "alice"]) == 2
        err = capsys.readouterr().err
        assert f"{path}: no EMER-Coarse here" in err and "run `emer annotate` first" in err
    assert "the folder does not exist" in main_err(tmp_path / "nothing", capsys)


def main_err(path, capsys, *flags) -> str:
    assert main(["review", "--data", str(path), *flags]) == 2
    return capsys.readouterr().err


def test_bad_host_token_and_reviewer_refuse_to_start(data, capsys, monkeypatch):
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("must not serve"))
    monkeypatch.delenv("EMER_REVIEW_TOKEN", raising=False)
    err = main_err(data, capsys, "--host", "0.0.0.0", "--reviewer", "alice")
    assert "--host 0.0.0.0 is not a loopback address" in err and "--token" in err
    assert "use at least 16" in main_err(data, capsys, "--host", "0.0.0.0", "--token", "short")
    assert "reviewer '../x'" in main_err(data, capsys, "--reviewer", "../x")
    assert not (data / "review").exists()


def test_token_from_the_environment_lets_it_bind_any_address(data, monkeypatch):
    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(kw, app=app))
    monkeypatch.setenv("EMER_REVIEW_TOKEN", TOKEN)
    monkeypatch.setenv("USER", "carol")
    assert main(["review", "--data", str(data), "--host", "0.0.0.0", "--port", "9000"]) == 0
    assert served["host"] == "0.0.0.0" and served["port"] == 9000
    c = TestClient(served["app"], base_url="http://10.0.0.5:9000")
    assert c.get("/row/a").status_code == 401
    assert 'reviewer <b id="reviewer">carol</b>' in c.get("/row/a", headers={"X-Emer-Token": TOKEN}).text


def test_every_request_needs_the_token_once_set(data):
    c = client(data, token=TOKEN, host="0.0.0.0", base_url="http://10.0.0.5:8377")
    for path in ("/", "/row/a", "/clip/a", "/stats", "/static/review.js"):
        assert c.get(path, follow_redirects=False).status_code == 401, path
    assert c.get("/row/a", headers={"X-Emer-Token": TOKEN + "x"}).status_code == 401
    first = c.get(f"/row/b?token={TOKEN}", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/row/b"  # the token leaves the URL
    assert "httponly" in first.headers["set-cookie"].lower()
    assert c.get("/row/a").status_code == 200 and c.get("/clip/a").status_code == 200  # the cookie now
    other = TestClient(c.app, base_url="http://10.0.0.5:8377")  # no cookie
    assert other.post("/row/a", data={"base": "x", "action": "accept"}).status_code == 401
    assert not log_lines(data)


def test_loopback_page_refuses_other_hosts_and_cross_site_posts(data):
    assert client(data, base_url="http://attacker.example:8377").get("/row/a").status_code == 403
    c = client(data)
    base = base_of(c.get("/row/a").text)
    form = {
        "base": base,
        "action": "accept",
        "description_en": "In a the person is calm.",
        "ov_labels": "calm, neutral",
    }
    r = c.post("/row/a", data=form, headers={"Origin": "http://attacker.example"})
    assert r.status_code == 403 and not log_lines(data)
    assert c.post("/row/a", data=form, headers={"Origin": LOCAL}, follow_redirects=False).status_code == 303
    assert [x["action"] for x in log_lines(data)] == ["accept"]


def test_decisions_go_to_the_log_and_emer_coarse_is_never_written(data):
    before = digest(data / "samples")
    c = client(data)
    page = c.get("/row/a").text
    assert "0</b> of <b>3</b> reviewed" in page and "Audio clue of a" in page and "Subtitle of a." in page
    form = {"base": base_of(page), "action": "edit", "description_en": "In a the person is\r\nangry."}
    r = c.post("/row/a", data={**form, "ov_labels": "Angry, annoyed，angry, "}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/row/b"
    page = c.get("/row/b").text
    r = c.post("/row/b", data={"base": base_of(page), "action": "reject", "reason": " "})
    assert r.status_code == 400 and "a rejection needs a reason" in r.text and len(log_lines(data)) == 1
    r = c.post("/row/b", data={"base": base_of(page), "action": "reject", "reason": "no face"})
    page = c.get("/row/a").text  # the edit is what the page shows now
    assert "In a the person is\nangry." in page and 'value="angry, annoyed"' in page
    c.post(
        "/row/a",
        data={
            "base": base_of(page),
            "action": "accept",
            "description_en": "In a the person is\nangry.",
            "ov_labels": "angry, annoyed",
        },
    )
    got = [(x["name"], x["action"], x["after"], x["reason"]) for x in log_lines(data)]
    edited = {"description_en": "In a the person is\nangry.", "ov_labels": ["angry", "annoyed"]}
    assert got == [("a", "edit", edited, ""), ("b", "reject", None, "no face"), ("a", "accept", edited, "")]
    assert "2</b> of <b>3</b> reviewed" in c.get("/row/c").text
    assert digest(data / "samples") == before


def test_a_stale_save_is_a_conflict_showing_their_change(data):
    alice, bob = client(data, "alice"), client(data, "bob")
    base = base_of(bob.get("/row/a").text)  # bob opens the row, then alice edits it
    alice.post(
        "/row/a", data={"base": base, "action": "edit", "description_en": "Alice's text.", "ov_labels": "sad"}
    )
    r = bob.post(
        "/row/a", data={"base": base, "action": "edit", "description_en": "Bob's text.", "ov_labels": "x"}
    )
    assert r.status_code == 409
    assert (
        "changed by alice (edit" in r.text and "Alice&#39;s text." in r.text and "Bob&#39;s text." in r.text
    )
    assert 'id="reload" class="button" href="/row/a"' in r.text
    assert log_lines(data, "bob") == [] and "Alice&#39;s text." in bob.get("/row/a").text


def test_flagged_rows_come_first_with_their_reasons(data):
    write_quality(data, {"a": [], "b": [], "c": ["short_description"]})
    c = client(data)
    assert c.get("/", follow_redirects=False).headers["location"] == "/row/c"
    page = c.get("/row/c").text
    assert (
        'class="flag">short_description' in page and "short_description: why short_description fired" in page
    )
    assert page.index(">c</a>") < page.index(">a</a>") < page.index(">b</a>")
    assert "quality: <b>passed</b>" in c.get("/row/a").text


def test_no_quality_folder_means_no_quality_block_and_name_order(tmp_path, data):
    c = client(data)
    assert c.get("/", follow_redirects=False).headers["location"] == "/row/a"
    assert 'id="quality"' not in c.get("/row/a").text


def test_clips_are_served_with_ranges_and_a_gone_clip_is_named(data, tmp_path):
    c, whole = client(data), bytes(range(256)) * 4
    r = c.get("/clip/a")
    assert r.status_code == 200 and r.content == whole and r.headers["accept-ranges"] == "bytes"
    r = c.get("/clip/a", headers={"Range": "bytes=10-19"})
    assert (
        r.status_code == 206
        and r.content == whole[10:20]
        and r.headers["content-range"] == "bytes 10-19/1024"
    )
    assert c.get("/clip/a", headers={"Range": "bytes=-4"}).content == whole[-4:]
    assert c.get("/clip/a", headers={"Range": "bytes=1000-"}).content == whole[1000:]
    assert c.get("/clip/a", headers={"Range": "bytes=5000-"}).status_code == 416
    gone = str(tmp_path / "clips" / "gone.mp4")
    r = c.get("/clip/c")
    assert r.status_code == 404 and r.text == f"clip no longer exists: {gone}"
    page = c.get("/row/c").text
    assert f"clip no longer exists: {gone}" in page and "<video" not in page and 'id="accept"' in page


def test_an_s3_dataset_serves_its_clips_and_takes_decisions(s3):
    data = s3.uri("review-s3/coarse")
    clip = s3.uri("review-s3/clips/a.mp4")
    storage.write_bytes(clip, b"0123456789" * 100)
    write_coarse(data, {"a": clip})
    c = TestClient(create_app(data, "alice"), base_url=LOCAL)
    r = c.get("/clip/a", headers={"Range": "bytes=990-"})
    assert r.status_code == 206 and r.content == b"0123456789"
    page = c.get("/row/a").text
    assert "<video" in page
    c.post("/row/a", data={"base": base_of(page), "action": "reject", "reason": "blurry"})
    logs, problems = reviewlog.read_logs(data)
    assert not problems and [(d.name, d.action, d.reason) for d in logs["alice"]] == [
        ("a", "reject", "blurry")
    ]


def test_agreement_of_two_reviewers_is_shown(data):
    c = client(data)
    assert 'id="agreement"' not in c.get("/row/a").text and 'id="no-agreement"' in c.get("/stats").text
    rows = {
        n: {"name": n, "description_en": f"In {n} the person is calm.", "ov_labels": ["calm", "neutral"]}
        for n in "abc"
    }
    for who, verdicts in (("alice", "aar"), ("bob", "arr")):  # accept and reject leave the fields as they are
        for (n, row), v in zip(rows.items(), verdicts):
            fields = reviewlog.fields_of(row)
            action, after = ("accept", fields) if v == "a" else ("reject", None)
            seen = reviewlog.newest(reviewlog.read_logs(str(data))[0]).get(n)  # bob opens it after alice
            decision = reviewlog.Decision(who, n, action, reviewlog.state_hash(row, seen), fields, after, "r")
            reviewlog.append(str(data), decision, row)
    header = c.get("/row/a").text
    assert "agreement alice–bob: 66.67% (κ 0.4)" in header and "on 3 rows" in header
    stats = c.get("/stats").text
    assert "<td>alice – bob</td><td>3</td><td>2</td>" in stats and "<td>0.4</td>" in stats


def test_labels_are_split_trimmed_lowered_and_deduplicated():
    assert parse_labels(" Happy, joyful，happy;  very  sad\n") == ["happy", "joyful", "very sad"]
    assert parse_labels("") == []


# ---------------------------------------------------------------- issue #23


def form_of(page: str, **fields) -> dict:
    return {"base": base_of(page), "action": "accept", "description_en": "In a the person is calm.",
            "ov_labels": "calm, neutral", **fields}  # fmt: skip


def test_a_save_from_a_page_opened_before_a_rejection_is_a_conflict(data):
    alice, bob = client(data, "alice"), client(data, "bob")
    bobs_page = bob.get("/row/a").text  # bob opens the row, then alice rejects it (fields unchanged)
    r = alice.post("/row/a", data=form_of(alice.get("/row/a").text, action="reject", reason="no face"))
    assert [x["action"] for x in log_lines(data)] == ["reject"]
    r = bob.post("/row/a", data=form_of(bobs_page, action="edit", description_en="Bob's text."))
    assert r.status_code == 409 and "changed by alice (reject" in r.text and "no face" in r.text
    assert log_lines(data, "bob") == []
    r = bob.post("/row/a", data=form_of(bob.get("/row/a").text, action="edit", description_en="Bob's text."),
                 follow_redirects=False)  # fmt: skip
    assert r.status_code == 303  # after a reload bob sees the rejection and may overrule it


@pytest.mark.parametrize(
    "body, status, words",
    [
        (b"action=accept&description_en=" + b"x" * (MAX_BODY + 1), 413, f"over {MAX_BODY} bytes"),
        (b"action=accept&description_en=" + b"y" * 20_000_000, 413, f"over {MAX_BODY} bytes"),
        (b"action=accept&description_en=" + b"z" * 20_000, 400, "description_en has 20000 characters"),
        (b"action=reject&reason=" + b"r" * 3_000, 400, "reason has 3000 characters"),
        (b"action=edit&ov_labels=" + b"sad%2C+" * 400, 400, "ov_labels has 2000 characters"),
        (b"action=accept&description_en=caf\xe9", 400, "not UTF-8"),
        (b"action=accept&description_en=caf%E9", 400, "not UTF-8"),
        (b"&".join([b"f%d=1" % i for i in range(40)]), 400, "40 fields"),
    ],
    ids=["over-cap", "20MB", "long-description", "long-reason", "long-labels", "latin1", "pct-latin1",
         "many-fields"],
)  # fmt: skip
def test_oversized_and_bad_bodies_are_refused(data, body, status, words):
    c = client(data)
    body = body.replace(b"action=", b"base=" + base_of(c.get("/row/a").text).encode() + b"&action=", 1)
    r = c.post("/row/a", content=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == status and words in r.text
    assert not log_lines(data)


def test_a_body_is_never_read_past_the_cap():
    import asyncio

    sent = []

    async def endless():  # a 150 MB body sent in chunks, without a Content-Length
        for _ in range(150 * 16):
            sent.append(64 * 1024)
            yield b"d" * (64 * 1024)

    with pytest.raises(BadForm) as err:
        asyncio.run(read_form(endless(), None))
    assert err.value.status == 413 and sum(sent) <= MAX_BODY + 64 * 1024
    with pytest.raises(BadForm):  # an announced length over the cap: nothing is read
        asyncio.run(read_form(endless(), str(150 * 2**20)))
    assert sum(sent) <= MAX_BODY + 64 * 1024


@pytest.fixture
def hostile(tmp_path, data):
    """A second dataset over the same clip folder whose rows name files a page must not serve."""
    clips = tmp_path / "clips"
    (tmp_path / "secret.mp4").write_bytes(b"outside the clip folder")
    (clips / "link.mp4").symlink_to(tmp_path / "secret.mp4")
    (clips / "notes.txt").write_text("not media")
    root = tmp_path / "hostile"
    rows = {"ok": str(clips / "a.mp4"), "passwd": "/etc/passwd", "dotdot": f"{clips}/../secret.mp4",
            "link": str(clips / "link.mp4"), "txt": str(clips / "notes.txt"), "none": ""}  # fmt: skip
    write_coarse(root, rows, clip_dir=str(clips))
    return root


@pytest.mark.parametrize(
    "name, words",
    [("passwd", "not a video or audio file"), ("dotdot", "outside the dataset's clip folder"),
     ("link", "outside the dataset's clip folder"), ("txt", "not a video or audio file")],
)  # fmt: skip
def test_clips_outside_the_clip_folder_are_refused(hostile, name, words):
    c = client(hostile)
    r = c.get(f"/clip/{name}")
    assert r.status_code == 403 and words in r.text and b"root:" not in r.content
    assert b"outside the clip folder" not in r.content
    page = c.get(f"/row/{name}").text
    assert "<video" not in page and escape(words) in page
    assert c.get("/clip/ok").status_code == 200 and c.get("/clip/none").status_code == 404


def test_without_a_known_clip_folder_no_clip_is_served(data, tmp_path, monkeypatch):
    (data / "manifest.json").unlink()
    r = client(data).get("/clip/a")
    assert r.status_code == 403 and "give emer review --clips DIR" in r.text
    (data / "manifest.json").write_text(json.dumps({"input": "clips-relative-to-another-folder"}))
    assert "give emer review --clips DIR" in client(data).get("/clip/a").text
    assert client(data, clips=str(tmp_path / "clips")).get("/clip/a").status_code == 200
    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(kw, app=app))
    assert main(["review", "--data", str(data), "--reviewer", "al", "--clips", str(tmp_path / "clips")]) == 0
    assert TestClient(served["app"], base_url=LOCAL).get("/clip/a").status_code == 200


@pytest.mark.parametrize(
    "headers, status",
    [
        ({"Referer": "http://attacker.example/page"}, 403),
        ({"Sec-Fetch-Site": "cross-site"}, 403),
        ({"Sec-Fetch-Site": "same-site"}, 403),
        ({"Origin": "null"}, 403),
        ({"Origin": LOCAL, "Referer": "http://attacker.example/"}, 403),
        ({"Referer": LOCAL + "/row/a"}, 303),
        ({"Origin": LOCAL, "Sec-Fetch-Site": "same-origin"}, 303),
        ({"Sec-Fetch-Site": "none"}, 303),
        ({}, 303),  # a script on this machine (no token: loopback only), documented
    ],
    ids=["foreign-referer", "cross-site", "same-site", "null-origin", "mixed", "own-referer",
         "same-origin", "none", "no-headers"],
)  # fmt: skip
def test_cross_site_posts_are_refused_by_referer_and_fetch_metadata(data, headers, status):
    c = client(data)
    r = c.post("/row/a", data=form_of(c.get("/row/a").text), headers=headers, follow_redirects=False)
    assert r.status_code == status, r.text
    assert len(log_lines(data)) == (status == 303)
    if status == 403:
        assert "refused" in r.text


def test_a_loopback_address_other_than_127_0_0_1_is_served_and_printed(data, capsys, monkeypatch):
    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(kw, app=app))
    monkeypatch.delenv("EMER_REVIEW_TOKEN", raising=False)
    assert (
        main(["review", "--data", str(data), "--reviewer", "al", "--host", "127.0.0.2", "--port", "9001"])
        == 0
    )
    url = re.search(r"on (http://\S+/)", capsys.readouterr().out).group(1)
    assert url == "http://127.0.0.2:9001/" and served["host"] == "127.0.0.2"
    assert TestClient(served["app"], base_url=url).get("/row/a").status_code == 200
    assert TestClient(served["app"], base_url="http://localhost:9001").get("/row/a").status_code == 200
    assert TestClient(served["app"], base_url="http://127.0.0.3:9001").get("/row/a").status_code == 403
    assert main(["review", "--data", str(data), "--reviewer", "al", "--host", "::1", "--port", "9002"]) == 0
    assert "on http://[::1]:9002/" in capsys.readouterr().out


def test_the_manifest_names_the_clip_folder_absolute_for_a_page_started_anywhere(data, tmp_path, monkeypatch):
    from pipelines.card import write_manifest_and_card
    from pipelines.config import AnnotateConfig
    from pipelines.inputs import Listing
    from pipelines.sink import OutputState

    monkeypatch.chdir(tmp_path)  # `emer annotate --input clips` from tmp_path
    listing = Listing([], [], [], [], 0)
    write_manifest_and_card(AnnotateConfig(), listing, OutputState(), {}, "clips", "s.csv", str(data))
    assert json.loads((data / "manifest.json").read_text())["input"] == str(tmp_path / "clips")
    monkeypatch.chdir(data)  # the page started elsewhere still serves the clips
    assert client(data).get("/clip/a").status_code == 200
