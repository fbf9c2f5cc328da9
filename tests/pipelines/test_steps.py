"""The one table of annotation steps (``pipelines.steps``): the config sections, the run's roles, the
pools and the provenance all come from it, and a text step added by one entry (its prompt in the
registry) runs in a real annotation and fills its column."""

from __future__ import annotations

import dataclasses

import pytest
from annotate_helpers import all_inputs, check_every_name_once, openai_config

from core.config import ConfigError
from core.llm.prompts import PROMPTS
from emer.runconfig import load_run_config
from pipelines import steps
from pipelines.annotate import run_annotation
from pipelines.config import RESUME_IGNORED, AnnotateConfig, StagesConfig
from pipelines.pools import stage_groups


def test_every_config_section_and_role_comes_from_the_table():
    stage_fields = {f.name for f in dataclasses.fields(StagesConfig)}
    llm_fields = {f.name for f in dataclasses.fields(AnnotateConfig)}
    assert stage_fields == {"decode", "text", *steps.names()}
    assert set(steps.names()) <= llm_fields and steps.text_steps() == (
        "disambiguate",
        "translate_en_zh",
        "translate_zh_en",
        "ov",
    )
    assert {f"{s}.num_gpus" for s in steps.names()} <= RESUME_IGNORED
    for clues, translate in (("separate", "en_zh"), ("omni", "zh_en"), ("separate", "none")):
        cfg = AnnotateConfig(clues=clues, translate=translate)
        run = steps.run_steps(cfg)
        assert cfg.roles() == [s.name for s in run]
        assert all(s.stage.role_for(cfg) == s.name for s in run)  # the class runs the entry's step
    assert AnnotateConfig(stop_after="check").roles() == []
    assert [steps.kind_of(s) for s in ("audio", "video", "omni", "ov")] == ["audio", "video", "omni", "text"]


def test_the_old_stage_keys_still_work_and_gpus_have_one_place():
    run = load_run_config("demo", ["annotate.stages.ov.num_cpus=2", "annotate.stages.audio.max_actors=3"])
    ov, text = run.annotate.stages.of("ov"), run.annotate.stages.text
    assert ov.num_cpus == 2.0 and ov.batch_size == text.batch_size  # the rest inherited from text
    assert run.annotate.stages.audio.bounds() == (1, 3)
    with pytest.raises(
        ConfigError, match=r"annotate.stages.video.num_gpus = 1.0: .*annotate.<role>.num_gpus"
    ):
        load_run_config("demo", ["annotate.stages.video.num_gpus=1"])


@pytest.fixture
def text_clue_step():
    """A text step added at test time by one entry: the subtitle's emotion clue (the registry's
    ``text_clue`` prompt, EMER Table 6's text LLM) before S2."""
    step = steps.text_step("text_clue", "text_clue", {"text": "subtitle"}, "text_clue")
    steps.register(step, after="video")
    yield step
    steps.unregister(step.name)
    assert "text_clue" not in steps.names()


def test_a_registered_step_joins_roles_and_shares_the_text_pool(text_clue_step):
    cfg = AnnotateConfig.from_dict({"stages": {"text": {"num_cpus": 0.5}}})
    assert cfg.roles() == ["audio", "video", "text_clue", "disambiguate", "translate_en_zh", "ov"]
    assert cfg.llm("text_clue") == cfg.text and cfg.stages.of("text_clue") == cfg.stages.text
    names = [[cls.name for cls in stages] for stages, _, _ in stage_groups(cfg)]
    assert names[-1] == ["text_clue", "disambiguate", "translate", "ov_labels"]  # one loaded model
    assert text_clue_step.kind == "text" and text_clue_step.outputs == ("text_clue",)
    with pytest.raises(ValueError, match="exists already"):
        steps.register(text_clue_step)
    with pytest.raises(ValueError, match="built in"):
        steps.unregister("ov")


@pytest.mark.timeout(900)
def test_a_text_step_added_by_one_entry_fills_its_column(text_clue_step, ray_local, sample_clips, tmp_path):
    from llm_fixtures import fake_openai_server

    clips, subs, out = str(sample_clips.root / "clips"), str(sample_clips.subtitles), str(tmp_path / "out")
    instruction = PROMPTS["text_clue"].instruction[:60]
    with fake_openai_server() as server:
        manifest = run_annotation(openai_config(server.url, translate="none"), clips, subs, out)
        asked = [c["prompt"] for c in server.calls if c["prompt"].startswith(instruction)]
    samples, _ = check_every_name_once(out, all_inputs(sample_clips))
    assert samples and len(asked) >= len(samples)
    assert all(r["text_clue"].startswith("echo images=0 audio=0: ") for r in samples.values())
    made = manifest["provenance"]["text_clue"]
    assert (made["role"], made["prompt"], made["model"]) == ("text_clue", "text_clue", "fake-mllm")
