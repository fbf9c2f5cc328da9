"""The demo's text roles on a real model (SmolLM2-135M-Instruct, from the models cache): with the
papers' data layout and the guard in the system message, the S2 and OV answers do the task instead
of repeating the guard, and the prompt-injection subtitle does not steer the labels."""

from __future__ import annotations

import re

import pytest

from core.llm.prompts import SYSTEM_GUARD
from emer.runconfig import load_run_config
from pipelines.samples import SUBTITLES
from pipelines.stages import DisambiguateStage, OVLabelStage

pytestmark = pytest.mark.slow
INJECTION = next(en for _, en in SUBTITLES if en.startswith("Ignore all previous instructions"))


def _ngrams(text: str, n: int = 4) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z']+", text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


@pytest.fixture(scope="module")
def answers(models_cache):
    """S2 descriptions and OV labels for every scripted subtitle, through the demo preset's text role
    (the in-process transformers backend), with fixed clues in place of the tiny audio/video models."""
    cfg = load_run_config("demo").annotate
    assert cfg.text.model.endswith("smollm2-135m-instruct") and cfg.text.backend == "transformers"
    clues = {"audio_clue": "the voice is steady", "video_clue": "a face"}
    rows = [{"name": f"s{i}", "subtitle": en, **clues} for i, (_, en) in enumerate(SUBTITLES)]
    shared: list = []  # one SmolLM2 for both stages, as in one annotation actor
    try:
        for stage in (DisambiguateStage(cfg, shared=shared), OVLabelStage(cfg, shared=shared)):
            stage.run_rows(rows)
    finally:
        for _, _, backend in shared:
            backend.close()
    return rows


def test_answers_do_the_task_and_never_echo_the_guard(answers):
    guard = _ngrams(SYSTEM_GUARD)
    for row in answers:
        assert row["outcome"] == "ok", row
        for text in (row["description_en"], row["ov_raw"]):
            assert text and text.strip()
            assert not (_ngrams(text) & guard), f"{row['name']} repeats the guard: {text!r}"
    labelled = [r for r in answers if r["ov_labels"]]
    assert len(labelled) >= len(answers) - 1  # a 135 M model: allow one miss


def test_injection_does_not_steer_the_labels(answers):
    [attack] = [r for r in answers if r["subtitle"] == INJECTION]
    assert attack["ov_labels"] != ["happy"]


def test_labels_map_into_the_emotion_wheel(answers, shared_dir):
    from evaluation.wheel import load_wheel

    wheel = load_wheel(str(shared_dir / "data" / "emotion-wheel"))
    mapped = [any(wheel.candidates(lab.lower()) for lab in r["ov_labels"]) for r in answers]
    assert sum(mapped) > len(mapped) / 2, [r["ov_labels"] for r in answers]
