"""``emer noise`` end to end on the session Ray: three sample clips and three broken ones, a noise
folder of speech (espeak-ng, 22.05 kHz) and a synthetic stereo babble at 44.1 kHz. The SNR is measured
back from the decoded files, the blur from the frames' high frequencies; reruns are byte-identical,
resume skips finished clips, bad clips are recorded, and the noisy folder lists like the clean one."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
from clip_copies import link_clip

from pipelines.clips.noise import NoiseConfig, snr_db
from pipelines.clips.noise_job import NoiseStage, list_noise, run_noise
from pipelines.clips.noise_media import decode_audio, probe
from pipelines.config import AnnotateConfig
from pipelines.inputs import build_listing

GOOD = ("sample_00000000", "sample_00000001", "sample_00000002")
BAD = {"broken_empty": "0 bytes", "broken_noaudio": "no audio stream", "broken_random": "cannot open"}


@pytest.fixture(scope="module")
def inputs(sample_clips, tmp_path_factory):
    root = tmp_path_factory.mktemp("noise-in")
    clips, noise = root / "clips", root / "noise"
    clips.mkdir()
    noise.mkdir()
    for name in (*GOOD, *BAD):
        link_clip(sample_clips.root / "clips" / f"{name}.mp4", clips / f"{name}.mp4")
    rng = np.random.default_rng(0)
    babble = np.stack([np.convolve(rng.standard_normal(44100 * 3), np.ones(8) / 8, "same")] * 2, axis=1)
    sf.write(noise / "babble.wav", 0.1 * babble, 44100)
    if shutil.which("espeak-ng"):
        text = "The weather report for tomorrow says light wind in the morning and clouds later on."
        subprocess.run(["espeak-ng", "-w", str(noise / "talk.wav"), text], check=True, capture_output=True)
    return {"clips": str(clips), "noise": str(noise), "subtitles": str(sample_clips.subtitles), "root": root}


@pytest.fixture(scope="module")
def noisy(ray_local, inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("noise-out") / "run"
    manifest = run_noise(NoiseConfig(), inputs["clips"], str(out), inputs["noise"], inputs["subtitles"])
    return out, manifest


def _table(path) -> dict[str, dict]:
    with open(path, newline="") as f:
        return {r["name"]: r for r in csv.DictReader(f)}


def _frames(path: str) -> np.ndarray:
    import av

    with av.open(path) as c:
        return np.stack([f.to_ndarray(format="gray").astype(np.float64) for f in c.decode(video=0)])


def _high_share(frames: np.ndarray) -> float:
    """Share of the frames' spectral energy above 1/8 cycles per pixel (fine detail)."""
    spec = np.abs(np.fft.rfft2(frames - frames.mean(axis=(1, 2), keepdims=True))) ** 2
    fy = np.abs(np.fft.fftfreq(frames.shape[1]))[:, None]
    fx = np.fft.rfftfreq(frames.shape[2])[None, :]
    return float(spec[:, np.maximum(fy, fx) > 0.125].sum() / spec.sum())


def test_every_clip_gets_a_recorded_snr_measured_back_from_the_files(noisy, inputs):
    out, manifest = noisy
    assert manifest["counts"] == {"inputs": 6, "noisy": 3, "failed": 3, "listing_failed": 0}
    table = _table(out / "noise.csv")
    assert sorted(table) == list(GOOD)
    for name, row in table.items():
        drawn, gain = float(row["snr_db"]), float(row["gain"])
        assert 5.0 <= drawn <= 10.0 and abs(float(row["measured_snr_db"]) - drawn) < 0.1
        assert row["noise_file"] in {"babble.wav", "talk.wav"} and float(row["noise_offset_s"]) >= 0
        clean_path, noisy_path = f"{inputs['clips']}/{name}.mp4", str(out / "clips" / f"{name}.mp4")
        clean, mixed = (
            decode_audio(clean_path, probe(clean_path), 60),
            decode_audio(noisy_path, probe(noisy_path), 60),
        )
        assert probe(noisy_path).rate == probe(clean_path).rate == int(row["sample_rate"])
        assert mixed.shape == clean.shape  # the clip's own rate and length are kept
        assert abs(snr_db(clean, mixed / gain - clean) - drawn) < 0.3  # through AAC both ways


def test_the_blur_removes_fine_detail_by_factor_and_factor_one_keeps_the_frames(noisy, inputs):
    out, _ = noisy
    table = _table(out / "noise.csv")
    assert {int(r["blur_factor"]) for r in table.values()} == {1, 2, 4}  # seed 0 draws each once here
    kept = {}
    for name, row in table.items():
        clean, blurred = _frames(f"{inputs['clips']}/{name}.mp4"), _frames(str(out / "clips" / f"{name}.mp4"))
        assert blurred.shape == clean.shape
        kept[int(row["blur_factor"])] = _high_share(blurred) / _high_share(clean)
        if row["blur_factor"] == "1":
            psnr = 10 * np.log10(255**2 / np.mean((clean - blurred) ** 2))
            assert psnr > 40, f"factor 1 re-encode PSNR {psnr:.1f} dB"
    assert kept[1] > 0.9 and kept[2] < 0.5 and kept[4] < 0.25 and kept[4] < kept[2]


def test_bad_clips_are_recorded_with_reasons(noisy):
    out, _ = noisy
    failures = _table(out / "failures.csv")
    assert sorted(failures) == sorted(BAD)
    for name, words in BAD.items():
        assert words in failures[name]["reason"] and failures[name]["clip"].endswith(f"{name}.mp4")
    assert not (out / "clips" / "broken_noaudio.mp4").exists()


def test_the_noisy_folder_lists_like_the_clean_one(noisy, inputs):
    out, _ = noisy
    cfg = AnnotateConfig()
    clean = build_listing(inputs["clips"], inputs["subtitles"], cfg)
    listed = build_listing(str(out / "clips"), str(out / "subtitles.csv"), cfg)
    assert [r["name"] for r in listed.rows] == list(GOOD)
    subtitles = {r["name"]: r["subtitle"] for r in clean.rows}
    assert all(r["subtitle"] == subtitles[r["name"]] for r in listed.rows)


def test_a_rerun_skips_finished_clips_and_redoes_one_without_its_marker(noisy, inputs):
    out, _ = noisy
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / "clips").iterdir()}
    (out / "params" / f"{GOOD[1]}.json").unlink()  # its clip written, its marker not (a crash between)
    again = run_noise(NoiseConfig(), inputs["clips"], str(out), inputs["noise"], inputs["subtitles"])
    assert (again["this_run"]["skipped_finished"], again["this_run"]["attempted"]) == (2, 4)  # 1 + 3 bad
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / "clips").iterdir()}
    assert {n: v for n, v in after.items() if n != f"{GOOD[1]}.mp4"} == {
        n: v for n, v in before.items() if n != f"{GOOD[1]}.mp4"
    }
    redone = after[f"{GOOD[1]}.mp4"]
    assert redone[0] != before[f"{GOOD[1]}.mp4"][0] and redone[1] == before[f"{GOOD[1]}.mp4"][1]
    assert again["counts"]["noisy"] == 3 and len(_table(out / "noise.csv")) == 3
    with pytest.raises(ValueError, match=r"other settings \(seed differ"):
        run_noise(NoiseConfig(seed=1), inputs["clips"], str(out), inputs["noise"], inputs["subtitles"])


def test_another_output_gets_byte_identical_clips_and_params(noisy, inputs, tmp_path):
    """The per-clip work outside Ray (the stage in this process) into a second folder."""
    out, _ = noisy
    other = str(tmp_path / "other")
    files = sorted(str(p) for p in (inputs["root"] / "noise").iterdir())
    stage = NoiseStage(NoiseConfig(), noise_files=files, noise_dir=inputs["noise"], output=other)
    rows = [{"name": n, "clip": f"{inputs['clips']}/{n}.mp4"} for n in GOOD]
    stage.run_rows(rows)
    assert [r["outcome"] for r in rows] == ["ok"] * 3
    for name in GOOD:
        mine, theirs = tmp_path / "other" / "params" / f"{name}.json", out / "params" / f"{name}.json"
        assert mine.read_text().replace(other, "") == theirs.read_text().replace(str(out), "")
        assert (tmp_path / "other" / "clips" / f"{name}.mp4").read_bytes() == (
            out / "clips" / f"{name}.mp4"
        ).read_bytes()


def test_cli_all_failing_exits_one_and_an_empty_noise_dir_names_the_flag(ray_local, emer, inputs, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = emer(
        "noise", "--input", inputs["clips"], "--output", str(tmp_path / "o"), "--noise-dir", str(empty)
    )
    assert code == 2 and "--noise-dir" in err and "no noise files" in err
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in BAD:
        link_clip(inputs["root"] / "clips" / f"{name}.mp4", bad / f"{name}.mp4")
    code, out, err = emer(
        "noise", "--input", str(bad), "--output", str(tmp_path / "o2"), "--noise-dir", inputs["noise"]
    )
    assert code == 1 and "3 of 3 clips failed" in err
    assert "0 noisy, 3 failed" in out
    assert json.loads((tmp_path / "o2" / "manifest.json").read_text())["counts"]["failed"] == 3


def test_clips_and_noise_on_s3_give_the_same_noisy_clip(s3, noisy, inputs):
    """The per-clip work with the clip, the noise files and the output all on S3 (moto)."""
    from core import storage

    out, _ = noisy
    base = f"s3://{s3.bucket}/noise-test"
    name = GOOD[0]
    storage.write_bytes(f"{base}/in/{name}.mp4", (inputs["root"] / "clips" / f"{name}.mp4").read_bytes())
    for p in sorted((inputs["root"] / "noise").iterdir()):
        storage.write_bytes(f"{base}/noise/{p.name}", p.read_bytes())
    files = list_noise(NoiseConfig(), f"{base}/noise")
    stage = NoiseStage(NoiseConfig(), noise_files=files, noise_dir=f"{base}/noise", output=f"{base}/out")
    rows = [{"name": name, "clip": f"{base}/in/{name}.mp4"}]
    stage.run_rows(rows)
    assert rows[0]["outcome"] == "ok", rows[0].get("reason")
    assert storage.read_bytes(f"{base}/out/clips/{name}.mp4") == (out / "clips" / f"{name}.mp4").read_bytes()
    params = json.loads(storage.read_text(f"{base}/out/params/{name}.json"))
    assert params["noise_file"] == _table(out / "noise.csv")[name]["noise_file"]
