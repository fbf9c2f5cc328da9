"""The demo's evaluation LLM loads in a background thread (while the demo trains): ``get()`` hands
over the loaded completer, which answers; a load that fails raises its error at ``get()``."""

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


def test_a_load_that_fails_raises_at_get(tmp_path):
    llm = EvaluationLLM(LLMConfig(backend="transformers", model=str(tmp_path / "no-such-model")))
    with pytest.raises(Exception, match="no-such-model"):
        llm.get()
