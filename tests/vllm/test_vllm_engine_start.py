"""Finding 3: an engine that cannot start fails the run with its error, promptly, where Ray Data
restarted the actor forever (the job hung). The model: the tiny text checkpoint with its weights file
removed (a mis-set model folder): vLLM's engine core fails while loading it."""

from __future__ import annotations

import shutil
import time

import pytest

from pipelines.config import AnnotateConfig, StageConfig
from pipelines.stages import DisambiguateStage
from pipelines.vllm_stage import vllm_stages

pytestmark = pytest.mark.vllm


@pytest.mark.timeout(300)
def test_an_engine_that_cannot_start_fails_the_run_with_its_error(ray_local, tmp_path):
    from core.llm.tiny import build_tiny_text_llm

    model = tmp_path / "no-weights"
    shutil.copytree(build_tiny_text_llm(tmp_path / "tiny"), model)
    (model / "model.safetensors").unlink()
    llm = {"backend": "vllm", "model": str(model), "dtype": "float32", "max_model_len": 256, "concurrency": 1}
    cfg = AnnotateConfig.from_dict({"text": {**llm, "engine_kwargs": {"enforce_eager": True}}})
    row = {"name": "a", "subtitle": "hi", "audio_clue": "x", "video_clue": "y", "outcome": "ok"}
    ds = vllm_stages(ray_local.data.from_items([row]), [DisambiguateStage], cfg, StageConfig())
    start = time.perf_counter()
    with pytest.raises(Exception) as err:
        ds.take_all()
    message = str(err.value)
    assert f"the vLLM engine of {model} did not start" in message, message[-2000:]
    print(f"failed after {time.perf_counter() - start:.1f} s: {message[-600:]}")
