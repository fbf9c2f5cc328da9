"""``emer annotate`` and ``emer samples`` through the real CLI entry point."""

from __future__ import annotations

import json
import os

import pytest
import yaml
from annotate_helpers import all_inputs, check_every_name_once
from clip_copies import link_clip
from llm_fixtures import fake_openai_server

from emer.cli import main

FAST = ["--annotate.stop_after=check", "--annotate.stages.decode.actors=1"]


@pytest.mark.timeout(300)
def test_annotate_command_then_retry_failed(s3, ray_local, sample_clips, tmp_path, capsys):
    out = tmp_path / "out"
    args = [
        "annotate",
        "--input",
        str(sample_clips.root / "clips"),
        "--subtitles",
        str(sample_clips.subtitles),
        "--output",
        str(out),
        *FAST,
    ]
    assert main(args) == 0
    assert "14 inputs -> 8 samples, 3 rejected, 3 failed" in capsys.readouterr().out
    check_every_name_once(str(out), all_inputs(sample_clips))
    resolved = (out / "config.yaml").read_text()
    assert "annotate:" in resolved and "stop_after: check" in resolved and "storage:" in resolved

    # A resume under another output-affecting setting is refused, naming the key; nothing is written.
    manifest_before = (out / "manifest.json").read_text()
    assert main([*args, "--annotate.min_duration_s=1.0"]) == 2
    err = capsys.readouterr().err
    assert "cannot resume the annotation in" in err and "min_duration_s: 2.0 -> 1.0" in err
    assert (out / "manifest.json").read_text() == manifest_before
    assert (out / "config.yaml").read_text() == resolved

    # the broken inputs fail again: no row recovered
    assert main([*args, "--retry-failed", "--max-failure-fraction", "0.75"]) == 1
    assert "none of the 6 rows processed gave a sample" in capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["this_run"]["attempted"] == 6 and manifest["this_run"]["skipped_finished"] == 8
    assert manifest["counts"]["ok"] == 8
    # The saved config is the config that ran: the flags are in it, as in the manifest.
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["annotate"] == manifest["config"]
    assert (saved["annotate"]["retry_failed"], saved["annotate"]["max_failure_fraction"]) == (True, 0.75)
    check_every_name_once(str(out), all_inputs(sample_clips))


def test_annotate_command_reports_bad_input(tmp_path, capsys):
    subs = tmp_path / "s.csv"
    subs.write_text("name,chinese,english\n")
    code = main(
        [
            "annotate",
            "--input",
            str(tmp_path / "missing"),
            "--subtitles",
            str(subs),
            "--output",
            str(tmp_path / "o"),
            *FAST,
        ]
    )
    assert code == 2 and "no such folder" in capsys.readouterr().err
    code = main(
        [
            "annotate",
            "--input",
            str(tmp_path),
            "--subtitles",
            str(subs),
            "--output",
            str(tmp_path / "o"),
            "--annotate.frames=0",
        ]
    )
    assert code == 2 and "annotate.frames = 0" in capsys.readouterr().err


@pytest.mark.timeout(300)
def test_more_failures_than_allowed_exit_non_zero_and_keep_the_rows(
    s3, ray_local, sample_clips, tmp_path, capsys
):
    """Before: exit 0 however many rows failed. 3 of the 14 sample inputs fail (21 %)."""
    out = tmp_path / "out"
    args = [
        "annotate",
        "--input",
        str(sample_clips.root / "clips"),
        "--subtitles",
        str(sample_clips.subtitles),
    ]
    rc = main([*args, "--output", str(out), *FAST, "--max-failure-fraction=0.1"])
    assert rc == 1
    err = capsys.readouterr().err
    assert (
        "annotate: 3 of 14 rows failed (21%, allowed 10%" in err and "the 8 finished samples are kept" in err
    )
    assert json.loads((out / "manifest.json").read_text())["counts"]["ok"] == 8
    check_every_name_once(str(out), all_inputs(sample_clips))


@pytest.mark.timeout(300)
def test_inputs_refused_while_listing_count_against_the_budget(ray_local, sample_clips, tmp_path, capsys):
    """Before: 6 of 10 inputs failed (refused while listing) and the run exited 0; a folder of only
    bad names ended "2 inputs -> 0 samples, 2 failed" with exit 0."""
    clips, subs = tmp_path / "clips", str(sample_clips.subtitles)
    clips.mkdir()
    for name in sample_clips.clips[:4]:
        link_clip(sample_clips.root / "clips" / f"{name}.mp4", clips / f"{name}.mp4")
    for i in range(6):  # names no sample id may have
        (clips / f"bad name {i}.mp4").write_bytes(b"x")
    out = tmp_path / "out"
    args = ["annotate", "--input", str(clips), "--subtitles", subs, *FAST]
    assert main([*args, "--output", str(out)]) == 1
    std = capsys.readouterr()
    assert "10 inputs -> 4 samples, 0 rejected, 6 failed" in std.out
    assert "annotate: 6 of 10 rows failed (60%, allowed 50%" in std.err
    assert "the 4 finished samples are kept" in std.err
    check_every_name_once(str(out), [*sample_clips.clips[:4], *(f"bad name {i}" for i in range(6))])

    only_bad = tmp_path / "only_bad"
    only_bad.mkdir()
    for name in ("bad name", "-rf"):
        (only_bad / f"{name}.mp4").write_bytes(b"x")
    out = tmp_path / "out_bad"
    assert main(["annotate", "--input", str(only_bad), "--subtitles", subs, *FAST, "--output", str(out)]) == 1
    std = capsys.readouterr()
    assert "2 inputs -> 0 samples, 0 rejected, 2 failed" in std.out
    assert "annotate: 2 of 2 rows failed (100%" in std.err
    check_every_name_once(str(out), ["bad name", "-rf"])  # the rows are kept

    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out_empty"
    assert main(["annotate", "--input", str(empty), "--subtitles", subs, *FAST, "--output", str(out)]) == 1
    assert "the output holds no samples (0 inputs" in capsys.readouterr().err


def role_flags(url: str, env: str) -> list[str]:
    out = []
    for role in ("audio", "video", "text"):
        out += [
            f"--annotate.{role}.backend=openai",
            f"--annotate.{role}.model=fake-mllm",
            f"--annotate.{role}.base_url={url}",
            f"--annotate.{role}.api_key_env={env}",
            f"--annotate.{role}.max_retries=0",
            f"--annotate.{role}.concurrency=2",
            f"--annotate.stages.{role}.num_cpus=0.5",
        ]
    return out


@pytest.mark.timeout(400)
def test_a_wrong_key_stops_the_run_early_then_it_resumes(
    s3, ray_local, sample_clips, tmp_path, capsys, monkeypatch
):
    """Before: a wrong key failed every row one by one (two requests per clip) and the run exited 0."""
    clips = tmp_path / "clips"
    clips.mkdir()
    for name in sample_clips.clips:  # good clips only: every row reaches the LLM stages
        link_clip(sample_clips.root / "clips" / f"{name}.mp4", clips / f"{name}.mp4")
    out = tmp_path / "out"
    # The workers of the session's Ray hold AWS_SECRET_ACCESS_KEY (from the s3 fixture): the key sent.
    args = [
        "annotate",
        "--input",
        str(clips),
        "--subtitles",
        str(sample_clips.subtitles),
        "--output",
        str(out),
    ]
    with fake_openai_server() as server:
        server.require_key = "right-key"  # not the key sent: every request is refused
        flags = [*role_flags(server.url, "AWS_SECRET_ACCESS_KEY"), "--annotate.stages.decode.actors=1"]
        rc = main([*args, *flags, "--annotate.stop_after_fatal=3"])
        assert rc == 1
        err = capsys.readouterr().err
        assert "annotate stopped early: 3 in a row failed with:" in err and "HTTP 401" in err
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["this_run"]["stopped_early"]
        # each role's backend stops sending after 3 refusals (+1 in flight): 16 calls without the stop
        assert len(server.calls) <= 8, len(server.calls)
        server.require_key = os.environ["AWS_SECRET_ACCESS_KEY"]  # the key is right now
        assert main([*args, *flags, "--retry-failed"]) == 0  # fixed: the resume finishes every clip
    samples, failures = check_every_name_once(str(out), list(sample_clips.clips))
    assert set(samples) == set(sample_clips.clips) and not failures
