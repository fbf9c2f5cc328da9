"""LLMConfig validation, request checks and the backend factory."""

from __future__ import annotations

import numpy as np
import pytest

from core.config import ConfigError, dump_yaml, load
from core.llm import LLMConfig, LLMRequest, LLMResult, create_backend
from core.llm.backends import VLLM_ONLY_IN_ANNOTATION


def test_defaults_are_valid_and_round_trip_yaml(tmp_path):
    cfg = LLMConfig(prompts={"ov_extract": "List the emotions."})
    path = tmp_path / "llm.yaml"
    path.write_text(dump_yaml(cfg))
    assert load(LLMConfig, path) == cfg
    assert load(LLMConfig, path, ["backend=openai", "concurrency=16"]).concurrency == 16


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as err:
        LLMConfig.from_dict(
            {
                "backend": "tgi",
                "batch_size": 0,
                "temperature": 3,
                "min_new_tokens": 900,
                "max_new_tokens": 10,
                "prompts": {"nope": "x", "audio_clue": " "},
                "dtype": "int8",
            }
        )
    text = str(err.value)
    for part in (
        "backend = 'tgi': must be one of 'transformers', 'openai', 'vllm'",
        "batch_size = 0",
        "temperature = 3.0",
        "min_new_tokens = 900: must be <= max_new_tokens (10)",
        "prompts.nope: unknown prompt name",
        "prompts.audio_clue = '': must be an instruction",
        "dtype = 'int8'",
    ):
        assert part in text
    assert len(err.value.problems) == 7


def test_a_pasted_key_is_not_echoed():
    with pytest.raises(ConfigError) as err:
        LLMConfig(api_key_env="sk-live-abcdef123456")
    assert "sk-live-abcdef123456" not in str(err.value)
    assert "api_key_env: must be the name of an environment variable" in str(err.value)


def test_an_env_name_with_a_trailing_newline_is_rejected():
    with pytest.raises(ConfigError, match="api_key_env: must be the name"):
        LLMConfig(api_key_env="OPENAI_API_KEY\n")


def test_request_repr_hides_media():
    req = LLMRequest(
        prompt="describe", frames=[b"\xff\xd8\xff" * 1000] * 8, audio=np.zeros(32000, np.float32), id="clip_7"
    )
    text = repr(req)
    assert "frames=8" in text and "audio=2.00s" in text and "clip_7" in text and len(text) < 120


def test_result_ok():
    assert LLMResult(text="x").ok and not LLMResult(error="boom").ok and not LLMResult().ok


def test_unknown_input_kind_and_vllm_outside_annotation():
    with pytest.raises(ValueError, match="kind 'speech'"):
        create_backend(LLMConfig(backend="openai", api_key_env=""), "speech")
    # vllm is a Ray Data stage of the annotation, never an in-process backend: the error says what to do
    with pytest.raises(ValueError, match="vllm serve") as err:
        create_backend(LLMConfig(backend="vllm"), "text")
    assert str(err.value) == VLLM_ONLY_IN_ANNOTATION and "backend = 'openai'" in str(err.value)


def test_vllm_engine_fields_are_checked():
    with pytest.raises(ConfigError) as err:
        LLMConfig(backend="vllm", max_model_len=-1, tensor_parallel_size=0, pipeline_parallel_size=0)
    text = " | ".join(err.value.problems)
    for key in ("max_model_len = -1", "tensor_parallel_size = 0", "pipeline_parallel_size = 0"):
        assert key in text
    assert LLMConfig(backend="vllm", max_model_len=4096, tensor_parallel_size=2).problems() == []


def test_request_accepts_array_of_frames():
    frames = np.array([b"\xff\xd8\xffa", b"\xff\xd8\xffb"], dtype=object)  # as Ray Data delivers them
    req = LLMRequest(prompt="x", frames=frames)
    assert req.frames == [b"\xff\xd8\xffa", b"\xff\xd8\xffb"]


def test_evaluate_llm_on_vllm_is_a_config_error_naming_the_fix():
    from evaluation.config import EvaluateConfig

    with pytest.raises(ConfigError) as err:
        EvaluateConfig(llm=LLMConfig(backend="vllm"))
    (problem,) = err.value.problems
    assert problem.startswith("evaluate.llm.backend = 'vllm'") and "vllm serve" in problem
