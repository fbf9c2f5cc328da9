"""The signal half of ``emer clips`` with the real models, on a generated espeak-ng episode: Silero VAD
finds the scripted utterances within 0.3 s, speaker merging joins two lines of one voice and keeps
two voices apart, and MTCNN tells one-face, two-face and no-face frames built from real photos
(scikit-image's astronaut and cameraman) and, over the episode's segments, removes the scripted ones
for the scripted reason. The models load once per module."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import torch

from core.config import ConfigError
from core.schema import SAMPLE_RATE
from pipelines.clips import faces, speakers, vad
from pipelines.episodes import FPS, HEIGHT, WIDTH, compose


def decode(path) -> tuple[np.ndarray, np.ndarray]:
    """An episode's audio (16 kHz mono float32) and all its frames (RGB uint8), each one ffmpeg run."""
    base = ["ffmpeg", "-v", "error", "-i", str(path)]
    audio = subprocess.run(
        [*base, "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "f32le", "-"], capture_output=True
    )
    video = subprocess.run([*base, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True)
    frames = np.frombuffer(video.stdout, np.uint8).reshape(-1, HEIGHT, WIDTH, 3)
    return np.frombuffer(audio.stdout, np.float32), frames


@pytest.fixture(scope="module")
def episode(episodes):
    """The episode without subtitles (two voices, every face layout), decoded."""
    ep = next(e for e in episodes if e.subtitles is None)
    audio, frames = decode(ep.video)
    return ep, audio, frames


@pytest.fixture(scope="module")
def vad_segments(episode):
    return vad.speech_segments(episode[1], SAMPLE_RATE)


@pytest.fixture(scope="module")
def face_filter():
    return faces.FaceFilter(faces.FaceFilterConfig(frames=3))


def test_vad_finds_the_scripted_utterances_within_0_3_s(episode, vad_segments):
    ep, audio, _ = episode
    assert abs(len(audio) / SAMPLE_RATE - ep.duration_s) < 0.1
    script = [(u.start, u.end) for u in ep.utterances]
    assert len(vad_segments) == len(script), (vad_segments, script)
    errors = [max(abs(s - us), abs(e - ue)) for (s, e), (us, ue) in zip(vad_segments, script)]
    assert max(errors) <= 0.3, list(zip(vad_segments, script))  # measured: at most 0.14 s


def test_the_batched_vad_gives_the_streaming_models_probabilities(episode):
    """The whole-track pass (stft + encoder batched, the LSTM cell as one nn.LSTM) against the
    TorchScript model called one 32 ms window at a time, as the wheel's own loop does."""
    track = episode[1][: 4 * SAMPLE_RATE].copy()
    silero = vad._load()
    batched = silero.probs(track)
    silero.model.reset_states()
    with torch.no_grad():
        streamed = [
            silero.model(
                torch.from_numpy(np.pad(track[i : i + 512], (0, max(0, i + 512 - len(track))))), 16000
            )
            for i in range(0, len(track), 512)
        ]
    streamed = np.array([float(p) for p in streamed])
    assert batched.shape == streamed.shape and np.abs(batched - streamed).max() < 1e-4
    assert batched.max() > 0.9 and batched.min() < 0.1  # speech and silence both present


def test_vad_on_silence_and_bad_input():
    assert vad.speech_segments(np.zeros(3 * SAMPLE_RATE, np.float32)) == []
    assert vad.speech_segments(np.zeros(100, np.float32)) == []
    with pytest.raises(ValueError, match="shape"):
        vad.speech_segments(np.zeros((2, 16000), np.float32))
    with pytest.raises(ValueError, match="rate 0"):
        vad.speech_segments(np.zeros(16000, np.float32), rate=0)
    with pytest.raises(ConfigError) as info:
        vad.VadConfig.from_dict({"threshold": 2, "min_silence_s": -1})
    assert len(info.value.problems) == 2 and "threshold = 2" in str(info.value)


def test_speaker_merging_joins_one_voice_and_keeps_two_voices_apart(episode, vad_segments):
    """espeak-ng's en+f3 (pitch 70) and en-us (pitch 45) through resemblyzer's GE2E encoder, measured
    (2026-12, 4 sentences per voice): one voice with itself 0.83-0.88, en+f3 against en-us at most
    0.67 (en-us against en-gb up to 0.93: espeak's voices share one synthesiser, so the episode uses
    the pair that differs most). The default threshold 0.75 lies between. In the episode: the two
    lines of voice B 0.5 s apart joined at 0.853; voice A's line then voice B's 0.55 s later: 0.604."""
    ep, audio, _ = episode
    cfg = speakers.SpeakerConfig()
    merged = speakers.merge_same_speaker(
        vad_segments, audio, SAMPLE_RATE, speakers.SpeakerEncoder(), cfg.threshold, cfg.max_gap_s
    )
    u = ep.utterances
    assert [s.method for s in merged] == ["vad"] * (len(u) - 1)  # one join: the "joined" line
    first = merged[0]
    assert abs(first.start - u[0].start) < 0.3 and abs(first.end - u[1].end) < 0.3
    assert first.speaker_similarity >= cfg.threshold
    apart = next(s for s in merged if abs(s.start - u[3].start) < 0.3)  # B, 0.55 s after A's line
    assert u[2].speaker != u[3].speaker and apart.speaker_similarity < cfg.threshold
    assert all(s.speaker_similarity is None for s in merged if s.start > u[3].end)  # pauses too long


def test_mtcnn_tells_one_two_and_no_face_frames_from_real_photos(face_filter):
    frames = np.stack(
        [
            compose("one", ["astronaut"]),
            compose("two", ["astronaut", "cameraman"]),
            compose("none", ["coffee"]),
            compose("one", ["cameraman"], "right"),
        ]
    )
    found = face_filter.faces(frames)
    assert [len(f) for f in found] == [1, 2, 0, 1]
    assert found[3][0][0][0] > WIDTH / 2  # the cameraman stands in the right half
    assert all(score >= 0.9 for f in found for _, score in f)
    with pytest.raises(ValueError, match="frames of shape"):
        face_filter.check(frames[0])


def test_the_face_filter_removes_the_scripted_segments_of_the_episode(episode, face_filter):
    """Each scripted line (joined lines as one) through the filter, 3 frames sampled from the decoded
    video: two faces, no face and a change of person are removed, with their numbers."""
    ep, _, frames = episode
    lines = [u for u in ep.utterances if u.expect != "joined"]
    for i, u in enumerate(lines):
        end = ep.utterances[1].end if i == 0 else u.end  # the first line is joined to the next
        times = faces.sample_times(u.start, end, face_filter.cfg.frames)
        verdict = face_filter.check(frames[[min(int(t * FPS), len(frames) - 1) for t in times]])
        assert verdict.identity_method == "track"
        if u.expect in ("kept", "too short"):  # the duration filter is the job's
            assert verdict.reason is None and verdict.same_person is True, (u, verdict)
            assert verdict.faces_per_frame == [1, 1, 1] and verdict.one_face_fraction == 1.0
        elif u.expect == "not one face":
            assert verdict.faces_per_frame == [2, 2, 2] and verdict.one_face_fraction == 0.0
            assert verdict.reason.startswith("one face in 0 of 3 sampled frames (needs >= 0.5)")
        elif u.expect == "no face":
            assert verdict.reason == "no face in any sampled frame (3 sampled)"
        else:
            assert u.expect == "different people" and verdict.same_person is False
            assert verdict.reason.startswith("faces of different people (track jump ")
            assert verdict.identity_score > face_filter.cfg.max_track_jump
    assert {u.expect for u in lines} == {"kept", "too short", "not one face", "no face", "different people"}


def test_face_filter_config_names_every_problem(tmp_path):
    with pytest.raises(ConfigError) as info:
        faces.FaceFilterConfig.from_dict(
            {"detector": "yunet", "yunet_model": str(tmp_path / "nope.onnx"), "identity": "embedding"}
        )
    text = str(info.value)
    assert f"yunet_model = '{tmp_path / 'nope.onnx'}': no such file" in text
    assert "embedding_model is empty: set it to the path of an InceptionResnetV1 state dict" in text
    with pytest.raises(ConfigError, match="identity = 'face'"):
        faces.FaceFilterConfig(identity="face")
    assert faces.sample_times(2.0, 4.0, 4) == [2.25, 2.75, 3.25, 3.75]
