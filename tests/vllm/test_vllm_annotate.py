"""``emer annotate`` with the demo's text steps on ``backend: vllm`` (SmolLM2, CPU engine), the clue
roles on a scripted OpenAI-compatible server: every input once, the provenance says vllm."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipelines"))  # the annotate helpers

pytestmark = pytest.mark.vllm


@pytest.mark.timeout(600)  # ~3 min idle; engine starts take minutes under load
def test_emer_annotate_with_a_vllm_text_role(emer, ray_local, sample_clips, smollm2, tmp_path):
    import json

    from annotate_helpers import all_inputs, check_every_name_once
    from llm_fixtures import fake_openai_server

    out = tmp_path / "out"
    with fake_openai_server() as server:
        clue = {"backend": "openai", "model": "fake-mllm", "base_url": server.url, "api_key_env": ""}
        text = {"backend": "vllm", "max_model_len": 2048, "concurrency": 1, "max_new_tokens": 24}
        text["engine_kwargs"] = {"enforce_eager": True}
        preset = {"annotate": {"audio": clue, "video": clue, "text": text}}
        (tmp_path / "vllm.yaml").write_text(yaml.safe_dump(preset))
        rc, stdout, stderr = emer(
            "annotate",
            "--config",
            f"demo,{tmp_path / 'vllm.yaml'}",
            "--input",
            sample_clips.root / "clips",
            "--subtitles",
            sample_clips.subtitles,
            "--output",
            out,
        )
    assert rc == 0, stderr[-3000:]
    samples, failures = check_every_name_once(str(out), all_inputs(sample_clips))
    assert samples and all(r["description_en"] and r["ov_raw"] for r in samples.values())
    manifest = json.loads((out / "manifest.json").read_text())
    steps = manifest["provenance"]
    for stage in ("disambiguate", "translate", "ov_labels"):
        assert steps[stage]["backend"] == "vllm" and steps[stage]["model"] == smollm2, steps[stage]
    assert steps["audio_clue"]["backend"] == "openai"
