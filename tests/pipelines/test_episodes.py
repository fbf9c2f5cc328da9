"""The long episodes ``emer clips`` starts from (``pipelines.episodes``, written by ``emer samples``):
real H.264/AAC videos as long as their script, an ``.srt`` with the script's times for one episode
only, ``episodes.json`` with every line and face layout; deterministic for a seed; a rerun keeps the
videos. The VAD and face tests on their content are in ``test_clips_signals.py``."""

from __future__ import annotations

import json
import re
import shutil

import av

from emer.cli import main
from pipelines.episodes import FPS, HEIGHT, WIDTH, plan_episodes, srt_text

CUE = re.compile(r"(\d+):(\d\d):(\d\d),(\d{3}) --> (\d+):(\d\d):(\d\d),(\d{3})\n(.+)")


def seconds(h: str, m: str, s: str, ms: str) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def test_the_episode_files_match_their_script(episodes):
    assert [e.name for e in episodes] == ["episode_vad", "episode_srt"]
    for ep in episodes:
        with av.open(str(ep.video)) as container:
            video, audio = container.streams.video[0], container.streams.audio[0]
            assert (video.codec_context.name, audio.codec_context.name) == ("h264", "aac")
            assert (video.width, video.height, int(video.average_rate)) == (WIDTH, HEIGHT, FPS)
            assert abs(float(container.duration / av.time_base) - ep.duration_s) < 0.15
        assert 15 <= ep.duration_s <= 40 and ep.utterances[-1].end < ep.duration_s
        assert ep.faces[0].start == 0 and ep.faces[-1].end == ep.duration_s
        assert all(a.end == b.start for a, b in zip(ep.faces, ep.faces[1:]))  # the layout covers it all
        assert all(a.end < b.start for a, b in zip(ep.utterances, ep.utterances[1:]))
        assert any(u.end - u.start < 2 for u in ep.utterances)  # one line the duration filter removes
    vad_ep, srt_ep = episodes
    assert vad_ep.subtitles is None and not vad_ep.video.with_suffix(".srt").exists()
    assert {u.speaker for u in vad_ep.utterances} == {"A", "B"}
    assert {f.layout for f in vad_ep.faces} == {"one", "two", "none"}
    cues = CUE.findall(srt_ep.subtitles.read_text(encoding="utf-8"))
    assert [(seconds(*c[:4]), seconds(*c[4:8]), c[8]) for c in cues] == [
        (u.start, u.end, u.text) for u in srt_ep.utterances
    ]
    info = json.loads((vad_ep.video.parent / "episodes.json").read_text())
    assert info["seed"] == 0 and [e["name"] for e in info["episodes"]] == ["episode_vad", "episode_srt"]
    assert info["episodes"][1]["subtitles"] == "episode_srt.srt"
    assert info["episodes"][0]["utterances"][1]["expect"] == "joined"


def test_the_script_is_deterministic_and_its_pauses_follow_the_seed(episodes, tmp_path):
    again = [e for e, _ in plan_episodes(episodes[0].video.parent, seed=0)]
    assert [e.script() for e in again] == [e.script() for e in episodes]
    other = [e for e, _ in plan_episodes(tmp_path, seed=1)]
    assert [u.text for u in other[0].utterances] == [u.text for u in episodes[0].utterances]
    assert [u.start for u in other[0].utterances] != [u.start for u in episodes[0].utterances]
    assert srt_text(other[1].utterances) != srt_text(episodes[1].utterances)


def test_samples_command_writes_the_episodes_and_keeps_them_on_a_rerun(
    episodes, sample_clips, tmp_path, capsys
):
    out = tmp_path / "samples"  # as a first `emer samples OUT --n 8` left it (the session's copies)
    shutil.copytree(sample_clips.root, out)
    shutil.copytree(episodes[0].video.parent, out / "episodes")
    before = {p.name: p.stat().st_mtime_ns for p in (out / "episodes").glob("*.mp4")}
    assert main(["samples", str(out), "--n", "8"]) == 0
    printed = capsys.readouterr().out
    total = sum(e.duration_s for e in episodes)
    assert f"samples: 2 episodes (12 scripted lines, {total:.1f} s) in {out / 'episodes'}" in printed
    assert sorted(p.name for p in (out / "episodes").iterdir()) == [
        "episode_srt.mp4",
        "episode_srt.srt",
        "episode_vad.mp4",
        "episodes.json",
    ]
    assert {p.name: p.stat().st_mtime_ns for p in (out / "episodes").glob("*.mp4")} == before
