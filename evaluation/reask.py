"""The one re-ask loop of evaluation's LLM questions (label extraction, sentiment polarity).

``ask_until_parsed`` sends one request per pending item, parses every answer and asks again, with a
reminder appended to the prompt (``suffix (attempt N)``), only the items whose answer did not parse,
at most ``reask`` more times. What never parses is returned for the caller to score and report.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TypeVar

from core.llm.base import LLMRequest

T = TypeVar("T")


def ask_until_parsed(
    pending: Sequence[int],
    request: Callable[[int], LLMRequest],
    parse: Callable[[str], T | None],
    complete: Callable[[list[LLMRequest]], list[str]],
    suffix: str,
    reask: int = 2,
) -> tuple[dict[int, T], list[int]]:
    """({item: parsed answer}, items whose answer never parsed). ``request(i)`` builds item ``i``'s
    request; ``parse`` returns None for an answer to ask again."""
    found: dict[int, T] = {}
    todo, tail = list(pending), ""
    for attempt in range(reask + 1):
        if not todo:
            break
        reqs = [dataclasses.replace(r, prompt=r.prompt + tail) for r in map(request, todo)]
        still = []
        for i, answer in zip(todo, complete(reqs)):
            value = parse(answer)
            if value is None:
                still.append(i)
            else:
                found[i] = value
        todo, tail = still, f"{suffix} (attempt {attempt + 2})"
    return found, todo
