"""The demo's evaluation LLM loads in a background thread (while the demo trains): ``get()`` hands
over the loaded completer, which answers; a load that fails raises its error when an answer needs
the model (answers all cached need none)."""

from __future__ import annotations

import pytest

from core.llm import LLMConfig, tiny
from emer.demo_eval import EvaluationLLM


def test_the_llm_loads_in_the_background_and_answers(tmp_path):
    model = tiny.build_tiny_text_llm(tmp_path / "text")
    cfg = LLMConfig(backend="transformers", model=model, max_new_tokens=4, cache_dir=str(tmp_path / "cache"))
    llm = EvaluationLLM(cfg)
    complete = llm.get()
    assert complete.backend() is complete._backend is not None  # loaded by the thread, not again
    [answer] = complete(["List the emotions: she smiles."])
    assert isinstance(answer, str)
    complete.close()


def test_a_load_that_fails_raises_when_an_answer_needs_the_model(tmp_path):
    model = str(tmp_path / "no-such-model")
    cfg = LLMConfig(backend="transformers", model=model, cache_dir=str(tmp_path / "cache"))
    complete = EvaluationLLM(cfg).get()
    assert complete._backend is None  # not loaded; nothing raised yet
    with pytest.raises(Exception, match="no-such-model"):
        complete(["List the emotions: she smiles."])
