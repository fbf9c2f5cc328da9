"""MER-NOISE's per-clip arithmetic (``pipelines.clips.noise``): the SNR set and measured back, the
per-clip draw (deterministic, in range), the noise looped to length, the blur filter, the config."""

from __future__ import annotations

import numpy as np
import pytest

from core.config import ConfigError
from pipelines.clips.noise import (
    NoiseConfig,
    blur_filter,
    clip_seed,
    draw,
    mix_at_snr,
    noise_window,
    power,
    relative_name,
)

FILES = ["noise/a.wav", "noise/b.wav", "noise/c.wav"]


def _independent_snr(signal: np.ndarray, mix: np.ndarray, gain: float) -> float:
    """The SNR of a mix, from the mix itself: (mix / gain - signal) is the noise that was added."""
    added = mix.astype(np.float64) / gain - signal
    return 10 * np.log10(np.mean(signal.astype(np.float64) ** 2) / np.mean(added**2))


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("target", [5.0, 7.31, 10.0])
def test_mix_sets_the_snr_and_measures_it_back(channels, target):
    rng = np.random.default_rng(1)
    signal = (0.2 * rng.standard_normal((16000, channels))).astype(np.float32)
    noise = (0.05 * rng.standard_normal(16000)).astype(np.float32)
    mix, measured, gain = mix_at_snr(signal, noise, target)
    assert mix.shape == signal.shape and mix.dtype == np.float32
    assert abs(measured - target) < 0.1
    assert abs(_independent_snr(signal, mix, gain) - target) < 0.1


def test_a_mix_that_would_clip_is_scaled_as_a_whole_and_keeps_its_snr():
    t = np.arange(16000) / 16000
    signal = (0.95 * np.sin(2 * np.pi * 220 * t))[:, None].astype(np.float32)
    noise = np.random.default_rng(2).standard_normal(16000).astype(np.float32)
    mix, measured, gain = mix_at_snr(signal, noise, 5.0)
    assert gain < 1.0 and np.max(np.abs(mix)) <= 0.99 + 1e-6
    assert abs(_independent_snr(signal, mix, gain) - 5.0) < 0.1


def test_silent_audio_or_silent_noise_is_refused_with_a_reason():
    with pytest.raises(ValueError, match="audio track is silent"):
        mix_at_snr(np.zeros((100, 1), np.float32), np.ones(100, np.float32), 5.0)
    with pytest.raises(ValueError, match="noise window is silent"):
        mix_at_snr(np.ones((100, 1), np.float32), np.zeros(100, np.float32), 5.0)


def test_the_draw_is_the_clips_own_deterministic_and_in_range():
    cfg = NoiseConfig()
    draws = [draw(cfg, f"clip_{i:03d}", FILES) for i in range(300)]
    assert draws[7] == draw(cfg, "clip_007", FILES)  # same run seed and name: the same draw
    assert all(5.0 <= d.snr_db <= 10.0 and 0.0 <= d.offset < 1.0 for d in draws)
    assert {d.blur_factor for d in draws} == {1, 2, 4}
    assert {d.noise_file for d in draws} == set(FILES)
    assert len({round(d.snr_db, 6) for d in draws}) == len(draws)
    other = draw(cfg.replace(seed=1), "clip_007", FILES)
    assert other.clip_seed != draws[7].clip_seed and other.snr_db != draws[7].snr_db
    assert clip_seed(0, "clip_007") == draws[7].clip_seed  # a sha256, not Python's salted hash()


def test_noise_is_looped_or_trimmed_to_the_clip_from_its_offset():
    noise = np.array([1.0, 2.0, 3.0], np.float32)
    window, start = noise_window(noise, 8, 0.5)
    assert start == 1 and window.tolist() == [2, 3, 1, 2, 3, 1, 2, 3]
    long = np.arange(100, dtype=np.float32)
    window, start = noise_window(long, 10, 0.95)
    assert start == 95 and window.tolist() == [95, 96, 97, 98, 99, 0, 1, 2, 3, 4]
    assert power(window) > 0


def test_blur_filter_goes_down_by_the_factor_and_back_to_the_size():
    assert blur_filter(1, 160, 128) == "scale=160:128:flags=bilinear"
    assert blur_filter(4, 160, 128) == "scale=40:32:flags=area,scale=160:128:flags=bilinear"
    assert blur_filter(64, 100, 50).startswith("scale=2:2:flags=area")


def test_relative_names_of_noise_files():
    assert relative_name("/data/musan/speech/a/x.wav", "/data/musan/speech/") == "a/x.wav"
    assert relative_name("s3://b/noise/x.wav", "s3://b/noise") == "x.wav"


def test_config_problems_are_collected_with_their_keys():
    with pytest.raises(ConfigError) as err:
        NoiseConfig.from_dict({"snr_db": [10, 5], "blur_factors": [0, 2], "noise_extensions": ["wav"]})
    text = str(err.value)
    assert "noise.snr_db" in text and "noise.blur_factors" in text and "noise.noise_extensions" in text
