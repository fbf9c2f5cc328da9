"""Per-role models (one LLM config per step, the text steps inheriting ``text``), the omni role, row
provenance and the resume guard, through real annotation runs against a local OpenAI-style server."""

from __future__ import annotations

import json

import pytest
from annotate_helpers import all_inputs, check_every_name_once, openai_config
from clip_copies import link_clip

from core import storage
from core.config import ConfigError
from core.fingerprint import ResumeMismatch
from core.llm import prompts
from emer.runconfig import load_run_config
from pipelines.annotate import run_annotation
from pipelines.config import AnnotateConfig
from pipelines.pools import stage_asks, stage_groups


def _groups(cfg: AnnotateConfig) -> list[list[str]]:
    return [[cls.__name__ for cls in stages] for stages, _, _ in stage_groups(cfg)]


def test_text_steps_inherit_text_and_override_their_own_keys():
    cfg = AnnotateConfig.from_dict(
        {
            "text": {"model": "base", "max_new_tokens": 99, "prompts": {"disambiguate": "Say it."}},
            "ov": {"model": "labeler", "temperature": 0.5},
            "audio": {"batch_size": 2},  # a partial section keeps the role's own default model
        }
    )
    ov, dis = cfg.llm("ov"), cfg.llm("disambiguate")
    assert (ov.model, ov.max_new_tokens, ov.temperature) == ("labeler", 99, 0.5)
    assert ov.prompts == {"disambiguate": "Say it."}  # inherited, like every key it does not set
    assert cfg.disambiguate is None and dis == cfg.text  # a step not given runs ``text`` itself
    assert cfg.audio.model == "Qwen/Qwen2-Audio-7B-Instruct" and cfg.audio.batch_size == 2
    assert cfg.roles() == ["audio", "video", "disambiguate", "translate_en_zh", "ov"]
    assert _groups(cfg) == [
        ["DecodeStage", "CheckStage"],
        ["AudioClueStage"],
        ["VideoClueStage"],
        ["DisambiguateStage", "TranslateStage"],  # same model and resources: one pool, one model
        ["OVLabelStage"],
    ]
    zh = AnnotateConfig.from_dict({"translate": "zh_en", "translate_zh_en": {"model": "mt"}})
    assert zh.roles()[3] == "translate_zh_en" and zh.model_ids()["translate_zh_en"] == "transformers:mt"


def test_the_omni_role_replaces_the_two_clue_models_and_needs_an_engine_that_takes_both():
    cfg = AnnotateConfig.from_dict({"clues": "omni", "omni": {"backend": "openai"}})
    assert cfg.roles() == ["omni", "disambiguate", "translate_en_zh", "ov"]
    assert cfg.omni.model == "Qwen/Qwen2.5-Omni-7B"
    assert _groups(cfg)[1] == ["OmniClueStage"]
    with pytest.raises(ConfigError) as err:
        AnnotateConfig.from_dict({"clues": "omni", "omni": {"backend": "transformers"}, "clues_x": 1})
    text = str(err.value)
    assert "annotate.omni.backend = 'transformers'" in text and "clues_x: unknown key" in text


def test_the_cluster_preset_puts_model_roles_on_gpu_nodes_and_endpoints_anywhere():
    run = load_run_config(["emer-coarse", "cluster"], [])
    asks = stage_asks(run.annotate)
    assert asks["decode"] == {"gpus": 0.0, "resources": {"decode": 1.0}}
    for role in ("audio", "video", "translate_en_zh"):  # in-process models: one GPU on a GPU node
        assert asks[role] == {"gpus": 1.0, "resources": {"llm": 1.0}}, role
    for role in ("disambiguate", "ov"):  # GPT-3.5 over HTTP: no GPU, no GPU-node slot
        assert asks[role] == {"gpus": 0.0, "resources": {}}, role
    assert run.annotate.model_ids()["disambiguate"] == "openai:gpt-3.5-turbo"
    assert run.annotate.model_ids()["translate_en_zh"] == "transformers:Qwen/Qwen2-7B-Instruct"


def _per_role(url: str, **extra) -> AnnotateConfig:
    roles = {r: {"model": f"m-{r}"} for r in ("disambiguate", "translate_en_zh", "ov")}
    return openai_config(url, **{**roles, **extra})


def _models(server, marker: str) -> set[str]:
    return {c["body"]["model"] for c in server.calls if marker in c["prompt"]}


@pytest.mark.timeout(900)
def test_each_step_calls_its_own_model_and_rows_record_what_made_them(ray_local, sample_clips, tmp_path):
    clips, subs = str(sample_clips.root / "clips"), str(sample_clips.subtitles)
    part = tmp_path / "part"  # the first run sees three clips; the accepted mix adds the rest
    part.mkdir()
    for name in ("sample_00000000", "sample_00000003", "sample_00000004"):
        link_clip(sample_clips.root / "clips" / f"{name}.mp4", part / f"{name}.mp4")
    out = str(tmp_path / "out")
    with fake_server() as server:
        cfg = _per_role(server.url)
        first = run_annotation(cfg, str(part), subs, out)
        assert _models(server, "Audio clues: ") == {"m-disambiguate"}
        assert _models(server, "into Chinese") == {"m-translate_en_zh"}
        assert _models(server, "output only the clearly identifiable") == {"m-ov"}
        samples, _ = check_every_name_once(out, sorted(p.stem for p in part.iterdir()))
        steps = first["provenance"]
        assert list(steps) == ["audio_clue", "video_clue", "disambiguate", "translate", "ov_labels"]
        assert steps["ov_labels"]["model"] == "m-ov" and steps["ov_labels"]["prompt"] == "ov_extract"
        assert steps["translate"]["role"] == "translate_en_zh"
        assert steps["disambiguate"]["sampling"] == {
            "temperature": 0.0,
            "max_new_tokens": 64,
            "min_new_tokens": 0,
        }
        assert len({s["prompt_hash"] for s in steps.values()}) == 5
        prints = {r["config_fingerprint"] for r in samples.values()}
        assert len(prints) == 1 and first["row_fingerprints"] == {prints.pop(): len(samples)}
        card = storage.read_text(storage.join(out, "README.md"))
        assert "| ov_labels | ov | openai | m-ov |" in card and steps["ov_labels"]["prompt_hash"] in card

        # A new default prompt (new emer code) alters outputs: the resume is refused, naming it.
        ov = prompts.PROMPTS["ov_extract"]
        try:
            prompts.PROMPTS["ov_extract"] = ov.__class__(**{**ov.__dict__, "instruction": "List emotions."})
            with pytest.raises(ResumeMismatch) as err:
                run_annotation(cfg, str(part), subs, out)
        finally:
            prompts.PROMPTS["ov_extract"] = ov
        assert "provenance.ov_labels.prompt_hash" in str(err.value) and "--on-config-change" in str(err.value)
        # A changed step model (a config key) is refused too; resources and batch sizes may change.
        changed = _per_role(server.url, ov={"model": "m-ov2"})
        with pytest.raises(ResumeMismatch) as err:
            run_annotation(changed, str(part), subs, out)
        assert 'ov.model: "m-ov" -> "m-ov2"' in str(err.value)
        neutral = _per_role(server.url, stages={"text": {"batch_size": 3, "num_cpus": 0.5}})
        assert run_annotation(neutral, str(part), subs, out)["this_run"]["attempted"] == 0

        # new: a sibling output under the new settings; accept: the mix, each row keeps its print.
        fresh = run_annotation(changed, str(part), subs, out, on_change="new")
        assert fresh["output"].startswith(out + "-") and fresh["counts"]["ok"] == first["counts"]["ok"] == 3
        assert _models(server, "output only the clearly identifiable") == {"m-ov", "m-ov2"}
        mixed = run_annotation(changed, clips, subs, out, on_change="accept")
    assert mixed["output"] == out and mixed["this_run"]["attempted"] == len(all_inputs(sample_clips)) - 3
    samples, _ = check_every_name_once(out, all_inputs(sample_clips))
    assert sorted(mixed["row_fingerprints"].values()) == [3, len(samples) - 3]
    saved = json.loads(storage.read_text(storage.join(out, "manifest.json")))
    assert saved["provenance"]["ov_labels"]["model"] == "m-ov2"


@pytest.mark.timeout(900)
def test_the_omni_role_hears_and_sees_each_clip_in_one_request(ray_local, sample_clips, tmp_path):
    clips, subs = str(sample_clips.root / "clips"), str(sample_clips.subtitles)
    out = str(tmp_path / "omni")
    with fake_server() as server:
        llm = {"backend": "openai", "model": "m-omni", "base_url": server.url, "api_key_env": ""}
        cfg = openai_config(server.url, clues="omni", omni={**llm, "num_gpus": 0})
        manifest = run_annotation(cfg, clips, subs, out)
        omni = [c for c in server.calls if c["body"]["model"] == "m-omni"]
        disamb = [c["prompt"] for c in server.calls if "Audio-video clues: " in c["prompt"]]
    samples, _ = check_every_name_once(out, all_inputs(sample_clips))
    assert len(omni) >= len(samples) > 0
    assert all(_parts(c["body"]) == {"image_url": 8, "input_audio": 1, "text": 1} for c in omni)
    assert all("acoustic information" in c["prompt"] for c in omni)
    row = samples["sample_00000004"]
    assert row["av_clue"].startswith("echo images=8 audio=1") and row["audio_clue"] is None
    assert disamb and all("Video clues" not in p for p in disamb)
    assert list(manifest["provenance"])[0] == "av_clue"
    assert manifest["provenance"]["disambiguate"]["prompt"] == "disambiguate_av"


def _parts(body: dict) -> dict[str, int]:
    content = body["messages"][-1]["content"]
    return {t: sum(p["type"] == t for p in content) for t in ("image_url", "input_audio", "text")}


def fake_server():
    from llm_fixtures import fake_openai_server

    return fake_openai_server()
