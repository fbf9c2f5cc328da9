"""The vLLM annotation stage (``pipelines.vllm_stage``): config -> ``ray.data.llm`` processor, and our
pre/postprocess on real decoded clips (frames as JPEG, audio as FLAC), compared with the
``map_stages`` path (``LLMStage`` with a backend) on the same rows. Building the processor needs no
vllm (its stages import vllm in their actors only); running one needs a GPU (the ``gpu`` test)."""

from __future__ import annotations

import base64
import copy
import io
from typing import Any

import pytest
from llm_fixtures import tiny_model

from core.config import ConfigError
from core.llm.base import LLMResult
from core.schema import SAMPLE_RATE
from core.stage import FAILED, OK
from pipelines.config import AnnotateConfig, StageConfig
from pipelines.stages import (
    AudioClueStage,
    DecodeStage,
    DisambiguateStage,
    OVLabelStage,
    TranslateStage,
    VideoClueStage,
)
from pipelines.vllm_stage import (
    SKIP,
    Postprocess,
    Preprocess,
    bare_stage,
    build_stage_processor,
    processor_config,
)

TEXT_STAGES = (DisambiguateStage, TranslateStage, OVLabelStage)


def vllm_cfg(**role) -> AnnotateConfig:
    llm = {"backend": "vllm", "model": "Qwen/Qwen2-7B-Instruct", "max_new_tokens": 40, "min_new_tokens": 2}
    llm |= {"temperature": 0.3, "batch_size": 8, "concurrency": 2, "dtype": "bfloat16", **role}
    return AnnotateConfig.from_dict({"audio": llm, "video": llm, "text": llm, "video_prompt_frames": 4})


@pytest.fixture(scope="module")
def decoded(sample_clips) -> list[dict[str, Any]]:
    """Two real clips through DecodeStage (frames: JPEG bytes, audio: FLAC), with clues and a subtitle."""
    cfg = AnnotateConfig()
    rows = [
        {"name": n, "clip": str(sample_clips.root / "clips" / f"{n}.mp4")} for n in sample_clips.clips[:2]
    ]
    DecodeStage(cfg).run_rows(rows)
    assert [r["outcome"] for r in rows] == [OK, OK] and all(r["frames"] and r["audio"] for r in rows)
    for r in rows:
        r |= {"subtitle": "I can't believe it.", "audio_clue": "a raised voice", "video_clue": "a frown"}
        r |= {"description_en": "He is angry.", "description_zh": None}
    return rows


class FakeBackend:
    def __init__(self, result: LLMResult) -> None:
        self.result, self.requests = result, []

    def generate(self, requests):
        self.requests += requests
        return [self.result for _ in requests]


def map_stages_path(cls, cfg, row: dict, result: LLMResult) -> dict:
    """What the map_stages path makes of ``row``: the stage's run_rows with a backend answering ``result``."""
    stage = bare_stage(cls, cfg)
    stage.backend = FakeBackend(result)
    out = copy.deepcopy(row)
    stage.run_rows([out])
    for c in (*cls.produces, "stage", "reason"):  # rows_to_table gives these columns as null
        out.setdefault(c, None)
    return out


def engine(pre: dict, text: str = "", error: str = "") -> dict:
    """What Ray's engine stages add to a preprocessed row (a subset of their columns)."""
    junk = {"prompt": "<|im_start|>...", "request_id": 3, "num_generated_tokens": 5, "params": "..."}
    return {**pre, **junk, "generated_text": text, "__inference_error__": error}


def test_config_maps_to_the_vllm_processor():
    cfg = vllm_cfg(max_model_len=8192, tensor_parallel_size=2, pipeline_parallel_size=1, num_gpus=1)
    video = processor_config(VideoClueStage, cfg, res=StageConfig(num_cpus=2, resources={"llm": 1}))
    assert video.model_source == "Qwen/Qwen2-7B-Instruct"
    assert (video.batch_size, video.concurrency, video.should_continue_on_error) == (8, 2, True)
    kw = video.engine_kwargs
    assert (kw["dtype"], kw["max_model_len"], kw["tensor_parallel_size"], kw["pipeline_parallel_size"]) == (
        "bfloat16",
        8192,
        2,
        1,
    )
    assert kw["limit_mm_per_prompt"] == {"image": 4}  # video_prompt_frames
    assert video.prepare_multimodal_stage["enabled"] is True
    assert video.placement_group_config["bundle_per_worker"] == {"CPU": 2.0, "GPU": 1.0, "llm": 1.0}
    audio = processor_config(AudioClueStage, cfg).engine_kwargs
    assert audio["limit_mm_per_prompt"] == {"audio": 1}
    # finding 4: CPU placement and engine settings from the role's config, as the CPU test runs it
    cpu = vllm_cfg(engine_kwargs={"enforce_eager": True}, engine_env={"VLLM_CPU_KVCACHE_SPACE": 1})
    text = processor_config(DisambiguateStage, cpu)
    assert "max_model_len" not in text.engine_kwargs and "limit_mm_per_prompt" not in text.engine_kwargs
    assert text.engine_kwargs["enforce_eager"] is True
    assert text.prepare_multimodal_stage["enabled"] is False
    assert text.placement_group_config["bundle_per_worker"] == {"CPU": 1.0, "GPU": 0.0}  # num_gpus 0
    assert text.runtime_env["env_vars"] == {"VLLM_CPU_KVCACHE_SPACE": "1"}


def test_engine_settings_are_checked():
    with pytest.raises(ConfigError) as err:
        vllm_cfg(engine_kwargs={"dtype": "half", "enforce_eager": True}, engine_env={"HOME": "/x"})
    assert "engine_kwargs.dtype: set by dtype" in str(err.value)
    assert "engine_env.HOME: only vLLM's own variables (VLLM_...)" in str(err.value)


def test_the_processor_builds_without_vllm(ray_local):
    cfg = vllm_cfg(model=tiny_model("text"))
    proc = build_stage_processor(DisambiguateStage, cfg)
    names = proc.list_stage_names()
    assert names == ["ChatTemplateStage", "TokenizeStage", "vLLMEngineStage", "DetokenizeStage"]
    # Ray's postprocess keeps success rows whole (our Postprocess follows, on every row)
    engine_row = {"name": "a", "generated_text": "x", "prompt": "p", "__inference_error__": ""}
    assert proc.postprocess({"__data": dict(engine_row)}) == engine_row
    vcfg = vllm_cfg(model=tiny_model("video"))
    vcfg = vcfg.replace(video=vcfg.video.replace(num_gpus=1.0))
    proc = build_stage_processor(VideoClueStage, vcfg, res=StageConfig(resources={"llm": 1}))
    assert proc.list_stage_names()[0] == "PrepareMultimodalStage"
    assert proc.get_stage_by_name("PrepareMultimodalStage").fn.__name__ == "CompatPrepareMultimodalUDF"
    assert type(proc.get_stage_by_name("PrepareMultimodalStage")).__name__ == "CompatPrepareMultimodalStage"
    kwargs = proc.get_stage_by_name("vLLMEngineStage").map_batches_kwargs
    assert kwargs["num_gpus"] == 1 and kwargs["resources"] == {"llm": 1}  # one GPU and `llm` per replica
    assert kwargs["max_restarts"] == 0  # finding 3: an engine that cannot start is not restarted


def test_the_text_steps_of_one_model_get_one_engine(ray_local):
    """Finding 2: the three text steps build ONE engine stage (one processor pass), CPU-placed
    from config; steps that differ only in sampling still share it."""
    from pipelines import pools
    from pipelines.vllm_stage import build_engine_processor

    cfg = vllm_cfg(model=tiny_model("text"))
    cfg = cfg.replace(ov=cfg.text.replace(max_new_tokens=8, temperature=0.0))
    groups = pools.stage_groups(cfg)
    assert [[c.name for c in g[0]] for g in groups][-1] == ["disambiguate", "translate", "ov_labels"]
    proc = build_engine_processor(groups[-1][0], cfg, res=StageConfig(num_cpus=2))
    assert proc.list_stage_names() == ["StepsEngineStage"]
    kwargs = proc.get_stage_by_name("StepsEngineStage").map_batches_kwargs
    assert (kwargs["num_cpus"], kwargs["max_restarts"]) == (2, 0) and "num_gpus" not in kwargs


def test_video_and_audio_messages_from_decoded_clips(decoded):
    import soundfile as sf

    cfg = vllm_cfg()
    row = copy.deepcopy(decoded[0])
    pre = Preprocess(VideoClueStage, cfg)(row)
    assert pre["__inference_error__"] == "" and pre["sampling_params"] == {
        "max_tokens": 40,
        "min_tokens": 2,
        "temperature": 0.3,
    }
    want = bare_stage(VideoClueStage, cfg).request(copy.deepcopy(decoded[0]))
    user = pre["messages"][-1]
    assert user["role"] == "user" and pre["messages"][:-1] == (
        [{"role": "system", "content": want.system}] if want.system else []
    )
    images = [p for p in user["content"] if p["type"] == "image_url"]
    assert len(images) == 4 == cfg.video_prompt_frames < len(decoded[0]["frames"])
    sent = [base64.b64decode(p["image_url"]["url"].split(",", 1)[1]) for p in images]
    assert all(p["image_url"]["url"].startswith("data:image/jpeg;base64,") for p in images)
    assert sent == want.frames and user["content"][-1] == {"type": "text", "text": want.prompt}

    pre = Preprocess(AudioClueStage, cfg)(copy.deepcopy(decoded[0]))
    (audio,) = [p for p in pre["messages"][-1]["content"] if p["type"] == "input_audio"]
    assert audio["input_audio"]["format"] == "wav"
    wave, rate = sf.read(io.BytesIO(base64.b64decode(audio["input_audio"]["data"])), dtype="float32")
    assert rate == SAMPLE_RATE and wave.ndim == 1
    assert abs(wave.size / SAMPLE_RATE - decoded[0]["audio_s"]) < 0.05


@pytest.mark.parametrize("cls", [AudioClueStage, VideoClueStage, *TEXT_STAGES], ids=lambda c: c.name)
def test_postprocess_gives_the_columns_of_the_map_stages_path(decoded, cls):
    cfg = vllm_cfg()
    row = copy.deepcopy(decoded[1])
    pre = Preprocess(cls, cfg)(copy.deepcopy(row))
    answer = "happy, surprised" if cls is OVLabelStage else "He looks angry."
    got = Postprocess(cls, cfg)(engine(pre, text=f"  {answer}\n"))
    want = map_stages_path(cls, cfg, row, LLMResult(text=answer))
    assert got == want and got["outcome"] == OK
    if cls is OVLabelStage:
        assert got["ov_labels"] == ["happy", "surprised"]


@pytest.mark.parametrize("steps", [(OVLabelStage,), TEXT_STAGES], ids=["one step", "three steps"])
def test_after_a_shared_engine_the_answers_in_the_row_stay(decoded, steps):
    """A group of one text step runs on a shared engine too: the answer its actor wrote into the row
    is kept (one stage used to be read as a per-stage processor's ``generated_text``: empty)."""
    from pipelines.vllm_rows import COLUMNS, ERROR, Admit

    cfg = vllm_cfg()
    row = Admit()(copy.deepcopy(decoded[1]))
    for cls in steps:  # what StepsEngineUDF does, step by step, with the engine's answers
        pre = Preprocess(cls, cfg)
        assert pre.messages(row) is not None
        pre.answer(row, "happy, surprised" if cls is OVLabelStage else "He looks angry.")
    row.pop(ERROR)
    got = Postprocess(list(steps), cfg, shared=True)(row)
    assert (got["ov_raw"], got["ov_labels"]) == ("happy, surprised", ["happy", "surprised"])
    assert got["outcome"] == OK
    assert COLUMNS not in got and set(decoded[1]) <= set(got)
    with pytest.raises(ValueError, match="shared=True"):
        Postprocess(list(TEXT_STAGES), cfg)


def test_an_engine_error_fails_the_row_like_a_failed_request(decoded):
    cfg = vllm_cfg()
    row = copy.deepcopy(decoded[1])
    pre = Preprocess(DisambiguateStage, cfg)(copy.deepcopy(row))
    error = "ValueError: the prompt (9000 tokens) is longer than max_model_len (8192)"
    got = Postprocess(DisambiguateStage, cfg)(engine(pre, error=error))
    want = map_stages_path(DisambiguateStage, cfg, row, LLMResult(error=f"vllm: {error}"))
    assert got == want
    assert got["outcome"] == FAILED and got["stage"] == "disambiguate"
    assert got["reason"] == f"disambiguate LLM (vllm:Qwen/Qwen2-7B-Instruct): vllm: {error}"
    assert "messages" not in got and "prompt" not in got and "generated_text" not in got


def test_rows_that_need_no_engine_skip_it_untouched(decoded):
    cfg = vllm_cfg()
    failed = {**copy.deepcopy(decoded[0]), "outcome": FAILED, "stage": "decode", "reason": "boom"}
    pre = Preprocess(DisambiguateStage, cfg)(copy.deepcopy(failed))
    assert pre["__inference_error__"] == SKIP and "messages" not in pre
    assert Postprocess(DisambiguateStage, cfg)(pre) == {**failed, "description_en": "He is angry."}
    # a request the endpoint backends refuse (frames not JPEG) fails at preprocess with their reason
    bad = {**copy.deepcopy(decoded[0]), "frames": [b"not a jpeg"]}
    pre = Preprocess(VideoClueStage, cfg)(copy.deepcopy(bad))
    assert pre["__inference_error__"] == SKIP
    out = Postprocess(VideoClueStage, cfg)(pre)
    assert (out["outcome"], out["stage"], out["video_clue"]) == (FAILED, "video_clue", "a frown")
    assert out["reason"] == "video LLM (vllm:Qwen/Qwen2-7B-Instruct): bad input: frame 0 is not JPEG bytes"
    # translate = none: no request, the row goes on as it was
    none = vllm_cfg().replace(translate="none")
    pre = Preprocess(TranslateStage, none)(copy.deepcopy(decoded[0]))
    assert pre["__inference_error__"] == SKIP
    assert Postprocess(TranslateStage, none)(pre)["outcome"] == OK


def fake_processor(cls, cfg, **config):
    """The stage's processor with a CPU stand-in for vLLM: it answers 'images=<n> <prompt head>', or
    an error for prompts holding 'FAIL' (as the engine does with should_continue_on_error)."""
    from ray.llm._internal.batch.processor.base import Processor
    from ray.llm._internal.batch.stages.base import StatefulStage, StatefulStageUDF

    from pipelines.vllm_stage import keep

    class Echo(StatefulStageUDF):
        async def udf(self, rows):
            for r in rows:
                user = r["messages"][-1]["content"]  # Ray Data may hand lists over as numpy arrays
                parts = [{"type": "text", "text": user}] if isinstance(user, str) else list(user)
                text = parts[-1]["text"]
                images = sum(1 for p in parts if p["type"] == "image_url")
                yield {
                    self.IDX_IN_BATCH_COLUMN: r[self.IDX_IN_BATCH_COLUMN],
                    "generated_text": f"images={images} {text[:12]}",
                    "__inference_error__": "RuntimeError: engine says no" if "FAIL" in text else "",
                    "params": str(r["sampling_params"]),
                }

    stages = [StatefulStage(fn=Echo)]
    return Processor(processor_config(cls, cfg, **config), stages, Preprocess(cls, cfg), keep)


def test_rows_go_through_a_ray_data_llm_processor(ray_local, decoded):
    import ray

    from pipelines.vllm_stage import vllm_stages

    cfg = vllm_cfg(batch_size=2, concurrency=1)
    rows = copy.deepcopy(decoded)
    rows[1]["subtitle"] = "FAIL here"
    rows.append(
        {**copy.deepcopy(decoded[0]), "name": "earlier", "outcome": FAILED, "stage": "check", "reason": "x"}
    )
    ds = ray.data.from_items(rows)
    out = {
        r["name"]: r
        for r in vllm_stages(ds, [VideoClueStage, DisambiguateStage], cfg, build=fake_processor).take_all()
    }
    a, b, early = out[decoded[0]["name"]], out[decoded[1]["name"]], out["earlier"]
    assert a["outcome"] == OK and a["video_clue"].startswith("images=4 ")  # video_prompt_frames
    assert a["description_en"].startswith("images=0 ")  # the text stage sends no media
    assert b["outcome"] == FAILED and b["stage"] == "disambiguate" and "engine says no" in b["reason"]
    assert b["video_clue"].startswith("images=4 ")  # the first pass answered before the second failed
    assert (early["outcome"], early["reason"], early["video_clue"]) == (FAILED, "x", "a frown")
    keys = {frozenset(r) for r in out.values()}
    assert len(keys) == 1 and not {"messages", "prompt", "generated_text", "__inference_error__"} & next(
        iter(keys)
    )


@pytest.mark.gpu
def test_a_tiny_vllm_processor_end_to_end(ray_local, decoded):
    pytest.importorskip("vllm")
    import ray

    from pipelines.vllm_stage import vllm_stages

    cfg = vllm_cfg(model=tiny_model("text"), dtype="float32", max_model_len=1024, concurrency=1, batch_size=2)
    rows = [{k: v for k, v in r.items() if k not in ("frames", "audio")} for r in decoded]
    rows.append({**rows[0], "name": "earlier_failure", "outcome": FAILED, "stage": "decode", "reason": "x"})
    out = {r["name"]: r for r in vllm_stages(ray.data.from_items(rows), TEXT_STAGES, cfg).take_all()}
    assert set(out) == {r["name"] for r in rows}
    assert out["earlier_failure"]["reason"] == "x" and out["earlier_failure"]["ov_labels"] is None
    for r in decoded:
        assert out[r["name"]]["outcome"] == OK and isinstance(out[r["name"]]["ov_raw"], str)


@pytest.mark.timeout(600)
def test_an_annotation_run_with_the_omni_role_on_vllm(ray_local, sample_clips, tmp_path, monkeypatch):
    """build_pipeline's vllm branch end to end: the omni clue from a ray.data.llm processor (CPU
    stand-in engine), the text steps on an endpoint, every input once, the same columns."""
    from annotate_helpers import all_inputs, check_every_name_once, openai_config
    from llm_fixtures import fake_openai_server

    from pipelines import pools, vllm_stage
    from pipelines.annotate import run_annotation

    monkeypatch.setattr(vllm_stage, "build_stage_processor", fake_processor)
    monkeypatch.setattr(pools, "MEDIA_CPU_STAGES", ())  # the stand-in has no CPU stages to count
    out = str(tmp_path / "out")
    with fake_openai_server() as server:
        omni = {"backend": "vllm", "model": "Qwen/Qwen2.5-Omni-7B", "num_gpus": 0, "batch_size": 4}
        cfg = openai_config(server.url, clues="omni", omni={**omni, "concurrency": 1})
        manifest = run_annotation(cfg, str(sample_clips.root / "clips"), str(sample_clips.subtitles), out)
        asked = [c["prompt"] for c in server.calls if "Audio-video clues: " in c["prompt"]]
    samples, _ = check_every_name_once(out, all_inputs(sample_clips))
    assert samples and all(r["av_clue"].startswith("images=8 ") for r in samples.values())
    assert all(r["audio_clue"] is None and r["description_en"] for r in samples.values())
    assert any('"images=8 ' in p for p in asked)  # the engine's answer reached the S2 prompt
    assert manifest["provenance"]["av_clue"]["backend"] == "vllm"
