"""Open-vocabulary labels from free-text descriptions, with the papers' extraction prompt.

``extract_labels(descriptions, complete, prompt)`` takes any ``complete(prompts) -> answers``
callable (``evaluation.llm.OpenAIComplete`` or an annotation backend). Answers that hold no list
are asked again; what stays unreadable becomes an empty prediction and is reported.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from evaluation.llm import REASK_SUFFIX, parse_label_answer

log = logging.getLogger(__name__)


def extract_labels(
    descriptions: Sequence[str], complete: Callable[[list[str]], list[str]], prompt: str, reask: int = 2
) -> tuple[list[list[str]], list[int]]:
    """(labels per description, indices whose answer never parsed). Empty descriptions give []."""
    out: list[list[str] | None] = [None if d.strip() else [] for d in descriptions]
    pending = [i for i, v in enumerate(out) if v is None]
    suffix = ""
    for attempt in range(reask + 1):
        if not pending:
            break
        answers = complete([prompt.format(description=descriptions[i].strip()) + suffix for i in pending])
        still = []
        for i, answer in zip(pending, answers):
            labels = parse_label_answer(answer)
            if labels is None:
                still.append(i)
            else:
                out[i] = labels
        pending, suffix = still, f"{REASK_SUFFIX} (attempt {attempt + 2})"
    if pending:
        log.warning(
            "label extraction: %d of %d answers held no list; scored as empty predictions",
            len(pending),
            len(descriptions),
        )
    return [v if v is not None else [] for v in out], pending
