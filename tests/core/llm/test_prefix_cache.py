"""Shared-prefix reuse in the transformers backend (``core.llm.prefix_cache``): the batch's common
prompt head runs once and is reused, and the answers are those of running every prompt whole."""

from __future__ import annotations

import pytest
from llm_fixtures import tiny_model

from core.llm import LLMConfig, LLMRequest, create_backend
from core.llm.prefix_cache import common_prefix

SYSTEM = "You label the emotions of people in film clips. Answer briefly and only with the answer."
EXAMPLES = [
    ("Subtitle: 'You broke my phone!' Which emotion?", "The person is angry."),
    ("Subtitle: 'My grandmother passed away last night.' Which emotion?", "The person is sad."),
]
SUBTITLES = [
    "I passed the exam!",
    "Why would you do this to me, after everything we went through together?",
    "Hm.",
    "There is someone outside the window, I can hear them breathing.",
    "Thank you, really, this means a lot to me.",
]


def requests(subtitles=SUBTITLES) -> list[LLMRequest]:
    ask = "Subtitle: {!r} Which emotion?"
    return [LLMRequest(prompt=ask.format(s), system=SYSTEM, examples=EXAMPLES) for s in subtitles]


def test_common_prefix_leaves_each_row_a_token_of_its_own():
    assert common_prefix([[1, 2, 3, 4], [1, 2, 5]]) == 2
    assert common_prefix([[1, 2, 3], [1, 2, 3]]) == 2
    assert common_prefix([[7, 2], [1, 2]]) == 0
    assert common_prefix([[1], [1, 2]]) == 0
    assert common_prefix([]) == 0


def answers(model: str, reuse: bool, new: int, batch: int = 3):
    cfg = LLMConfig(model=model, max_new_tokens=new, batch_size=batch, reuse_prefix=reuse, dtype="float32")
    backend = create_backend(cfg, "text")
    results = backend.generate(requests())
    assert all(r.ok for r in results), [r.error for r in results]
    return backend, [(r.text, r.prompt_tokens, r.completion_tokens) for r in results]


def test_the_shared_head_runs_once_and_changes_no_answer():
    model = tiny_model("text")
    on, reused = answers(model, True, new=8)
    _, whole = answers(model, False, new=8)
    assert reused == whole  # texts and token counts, rows of different lengths padded mid-prompt
    assert len(on.prefix.heads) == 1  # both batches (3 + 2 rows) started from one cached head
    assert on.prefix.reused_tokens >= 5 * 32
    tails = on.generate(requests(["one more"]))  # a batch of one reuses it too
    assert tails[0].ok and len(on.prefix.heads) == 1


def test_a_short_common_head_or_a_lone_row_is_run_whole():
    from core.llm.prefix_cache import PrefixCache

    cache = PrefixCache(model=None, pad_id=0, min_tokens=4)  # no model run: nothing to reuse
    assert cache.inputs([[1, 2, 3, 9], [1, 2, 3, 8]]) is None  # 3 tokens shared < 4
    assert cache.inputs([list(range(50))]) is None  # one row's own prompt is no shared head
    assert cache.reused_tokens == 0 and not cache.heads


def test_smollm2_answers_the_same_with_the_head_reused(models_cache):
    """The real check: a real instruct model's greedy answers, word for word."""
    model = str(models_cache / "smollm2-135m-instruct")
    on, reused = answers(model, True, new=16, batch=5)
    _, whole = answers(model, False, new=16, batch=5)
    assert [t for t, _, _ in reused] == [t for t, _, _ in whole]
    assert all(t.strip() for t, _, _ in reused)
    assert on.prefix.reused_tokens > 0


@pytest.mark.parametrize("bad", [0, -1])
def test_min_tokens_below_one_is_refused(bad):
    from core.llm.prefix_cache import PrefixCache

    with pytest.raises(ValueError, match="min_tokens"):
        PrefixCache(model=None, pad_id=0, min_tokens=bad)
