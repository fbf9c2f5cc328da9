"""The audio clue step on a real vLLM engine: a dummy-weight Qwen2-Audio (head_dim 32, 30-s Whisper
chunks: what vLLM's CPU backend takes; built by ``emer models prepare`` in ``.venv``, whose
transformers saves the weight names vLLM maps) receiving real decoded audio through Ray's PrepareMultimodal
stage, which needs the ``chat_utils`` compatibility hook (finding 1) to import on vLLM >= 0.32."""

from __future__ import annotations

import copy

import pytest

from core.stage import OK
from pipelines.config import AnnotateConfig, StageConfig
from pipelines.stages import AudioClueStage, DecodeStage
from pipelines.vllm_stage import vllm_stages

pytestmark = pytest.mark.vllm


def test_the_hook_aliases_chat_utils_where_vllm_moved_it():
    import importlib

    from pipelines import vllm_compat

    assert vllm_compat.install() in ("aliased", "native")
    old = importlib.import_module(vllm_compat.OLD)
    assert callable(old.parse_chat_messages_async)  # what Ray 2.60's PrepareMultimodal imports


@pytest.mark.timeout(600)  # ~2-3 min idle; engine starts take minutes under load
def test_the_audio_clue_from_real_decoded_audio(ray_local, sample_clips, models_cache):
    model = models_cache / "tiny-qwen2-audio-vllm"  # `emer models prepare` builds it (make test does)
    if not (model / ".tiny_complete").is_file():
        pytest.skip(f"no {model}: run `emer models prepare` in .venv (make test does)")
    model = str(model)
    rows = [
        {"name": n, "clip": str(sample_clips.root / "clips" / f"{n}.mp4")} for n in sample_clips.clips[:2]
    ]
    DecodeStage(AnnotateConfig()).run_rows(rows)
    assert all(r["outcome"] == OK and r["audio"] for r in rows)
    llm = {"backend": "vllm", "model": model, "dtype": "float32", "max_model_len": 2048, "concurrency": 1}
    llm |= {"max_new_tokens": 6, "min_new_tokens": 2, "engine_kwargs": {"enforce_eager": True}}
    cfg = AnnotateConfig.from_dict({"audio": llm})
    ds = vllm_stages(ray_local.data.from_items(copy.deepcopy(rows)), [AudioClueStage], cfg, StageConfig())
    out = {r["name"]: r for r in ds.take_all()}
    assert set(out) == {r["name"] for r in rows}
    for r in out.values():
        assert r["outcome"] == OK, r.get("reason")
        assert isinstance(r["audio_clue"], str) and r["audio_clue"].strip()  # gibberish, but tokens
