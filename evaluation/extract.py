"""Open-vocabulary labels from free-text descriptions, with the papers' extraction prompt.

``extract_labels(descriptions, complete, overrides)`` renders the registry's ``ov_extract`` prompt
(MER2024 2.3) for each description and takes any ``complete(prompts) -> answers`` callable
(``core.llm.Completer``). Answers that hold no list are asked again; what stays unreadable becomes
an empty prediction and is reported.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from core.llm.labels import parse_label_list
from core.llm.prompts import REASK_SUFFIX, render

log = logging.getLogger(__name__)


def extract_labels(
    descriptions: Sequence[str],
    complete: Callable[[list[str]], list[str]],
    overrides: Mapping[str, str] | None = None,
    reask: int = 2,
) -> tuple[list[list[str]], list[int]]:
    """(labels per description, indices whose answer never parsed). Empty descriptions give []."""
    out: list[list[str] | None] = [None if d.strip() else [] for d in descriptions]
    pending = [i for i, v in enumerate(out) if v is None]
    suffix = ""
    for attempt in range(reask + 1):
        if not pending:
            break
        prompts = [render("ov_extract", overrides, clues=descriptions[i].strip()) + suffix for i in pending]
        still = []
        for i, answer in zip(pending, complete(prompts)):
            labels = parse_label_list(answer)
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
