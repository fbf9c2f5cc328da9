"""Open-vocabulary labels from free-text descriptions, with the papers' extraction prompt.

``extract_labels(descriptions, complete, llm)`` renders the registry's ``ov_extract`` prompt
(MER2024 2.3; ``llm.prompts`` may replace it, ``llm.examples`` add few-shot turns) for each description
and takes any ``complete(requests) -> answers`` callable (``core.llm.Completer``). Answers that hold
no list are asked again; what stays unreadable becomes an empty prediction and is reported. An answer
to the official AffectGPT OV-label question (``The character's emotional state is a, b.``) is read
directly (``core.llm.labels.parse_ov_answer``), without asking the LLM.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from core.llm.base import LLMConfig, LLMRequest, request_for
from core.llm.labels import parse_label_list, parse_ov_answer
from core.llm.prompts import REASK_SUFFIX
from evaluation.reask import ask_until_parsed

log = logging.getLogger(__name__)


def extract_labels(
    descriptions: Sequence[str],
    complete: Callable[[list[LLMRequest]], list[str]],
    llm: LLMConfig | None = None,
    reask: int = 2,
) -> tuple[list[list[str]], list[int]]:
    """(labels per description, indices whose answer never parsed). Empty descriptions give []."""
    out: list[list[str] | None] = [None if d.strip() else [] for d in descriptions]
    for i, d in enumerate(descriptions):
        direct = parse_ov_answer(d) if out[i] is None else None
        if direct is not None:
            out[i] = direct
    cfg = llm or LLMConfig()
    found, pending = ask_until_parsed(
        [i for i, v in enumerate(out) if v is None],
        lambda i: request_for(cfg, "ov_extract", {"clues": descriptions[i].strip()}),
        parse_label_list,
        complete,
        REASK_SUFFIX,
        reask,
    )
    out = [found.get(i, v) for i, v in enumerate(out)]
    if pending:
        log.warning(
            "label extraction: %d of %d answers held no list; scored as empty predictions",
            len(pending),
            len(descriptions),
        )
    return [v if v is not None else [] for v in out], pending
