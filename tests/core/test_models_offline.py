"""The embedded default's models: ``${EMER_MODELS}`` in presets, and a clear error, before any worker
starts, for a model that is neither a local folder nor in the Hugging Face cache."""

from __future__ import annotations

import pytest

from core.config import ConfigError
from core.hub import ALLOW_ENV, missing_model
from emer.cli import main
from emer.runconfig import load_run_config, model_keys, require_models


def test_demo_preset_names_the_models_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("EMER_MODELS", str(tmp_path))
    cfg = load_run_config("demo")
    assert cfg.annotate.text.model == f"{tmp_path}/smollm2-135m-instruct"
    assert (cfg.annotate.audio.backend, cfg.annotate.video.backend) == ("signal", "signal")  # measured
    assert cfg.model.llm_model == f"{tmp_path}/smollm2-135m-instruct"
    assert cfg.evaluate.wheel_dir == f"{tmp_path}/emotion-wheel"
    keys = dict(model_keys(cfg, ["annotate", "model", "evaluate"]))
    assert set(keys) >= {"annotate.text.model", "model.vision_model", "model.llm_model", "evaluate.llm.model"}


def test_an_unset_variable_names_file_and_key(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("annotate:\n  text: {model: '${NO_SUCH_VAR_EMER}/m'}\n")
    with pytest.raises(ConfigError) as err:
        load_run_config(str(path))
    assert err.value.source == str(path)
    assert "annotate.text.model" in str(err.value) and "${NO_SUCH_VAR_EMER} is not set" in str(err.value)


def test_missing_models_are_named_with_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    hub_id = missing_model("annotate.text.model", "someorg/not-downloaded")
    assert hub_id and "annotate.text.model = 'someorg/not-downloaded'" in hub_id
    assert "hf download someorg/not-downloaded" in hub_id and ALLOW_ENV in hub_id
    folder = missing_model("model.llm_model", str(tmp_path / "nope"))
    assert folder and "model.llm_model" in folder and "no such folder" in folder
    assert missing_model("model.llm_model", str(tmp_path)) is None  # an existing folder is fine
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv(ALLOW_ENV, "1")
    assert missing_model("annotate.text.model", "someorg/not-downloaded") is None  # may download


def test_annotate_refuses_before_starting_ray(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("EMER_MODELS", str(tmp_path / "empty-cache"))
    rc = main(
        ["annotate", "--config", "demo", "--input", str(tmp_path), "--subtitles", "x.csv", "--output", "o"]
        + ["--annotate.video.backend=transformers", "--annotate.video.model=someorg/not-downloaded"]
    )
    err = capsys.readouterr().err
    assert rc == 2
    assert "annotate.video.model = 'someorg/not-downloaded'" in err and "hf download" in err
    assert "annotate.text.model" in err and "emer models prepare" in err  # the empty cache, too
    with pytest.raises(ConfigError):
        require_models(load_run_config("demo"), "model")
