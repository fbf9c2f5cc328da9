"""Shared-prefix reuse for the transformers backend's batched text generation.

The requests of one text step share a long head: the system message, the few-shot turns and the
start of the instruction (``core.llm.base.conversation``); on CPU its prefill is most of a batch's
cost. ``PrefixCache`` runs the model over the longest token prefix the rows of a batch have in
common once, keeps its key/value cache (the last ``keep`` heads), and each batch then generates
from a copy repeated over its rows, running only the rows' own tails through the model. The padding
sits between the head and each tail: the attention mask hides it and generate derives position ids
from the mask, so every row sees the positions of its unpadded prompt (what a batch of one sees).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any


def common_prefix(rows: Sequence[Sequence[int]]) -> int:
    """Length of the token prefix all ``rows`` share, leaving each at least one token of its own."""
    if not rows:
        return 0
    limit = min(len(r) for r in rows) - 1
    first = rows[0]
    n = 0
    while n < limit and all(r[n] == first[n] for r in rows):
        n += 1
    return n


class PrefixCache:
    """Key/value caches of prompt heads for ``model``, reused by every batch that starts with one."""

    def __init__(self, model: Any, pad_id: int, min_tokens: int = 32, keep: int = 4) -> None:
        if min_tokens < 1 or keep < 1:
            raise ValueError(f"min_tokens = {min_tokens}, keep = {keep}: both must be >= 1")
        self.model, self.pad_id = model, pad_id
        self.min_tokens, self.keep = min_tokens, keep
        self.heads: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self.reused_tokens = 0  # prompt tokens not run again thanks to a cached head (for logs/tests)

    def head(self, ids: tuple[int, ...]) -> Any:
        """The cache of ``ids`` run through the model once (the ``keep`` latest kept)."""
        import torch

        if ids in self.heads:
            self.heads.move_to_end(ids)
            return self.heads[ids]
        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([ids], device=self.model.device), use_cache=True)
        self.heads[ids] = out.cache
        while len(self.heads) > self.keep:
            self.heads.popitem(last=False)
        return out.cache

    def cached_head(self, rows: Sequence[Sequence[int]]) -> tuple[int, ...] | None:
        """The latest cached head every row starts with (and goes past), or None."""
        for ids in reversed(self.heads):
            n = len(ids)
            if all(len(r) > n and tuple(r[:n]) == ids for r in rows):
                return ids
        return None

    def inputs(self, rows: Sequence[Sequence[int]]) -> dict[str, Any] | None:
        """``generate`` inputs for the token ``rows`` (``input_ids``, ``attention_mask``, ``cache``:
        the shared head's cache repeated per row), or None when they share under ``min_tokens``.
        A cached head the rows start with is reused as it is (a batch of one row too)."""
        import torch

        head = self.cached_head(rows)
        if head is None:  # a new head: what two or more rows share (one row's own prompt is no head)
            n = common_prefix(rows) if len(rows) > 1 else 0
            if n < self.min_tokens:
                return None
            head = tuple(rows[0][:n])
        n = len(head)
        cache = copy.deepcopy(self.head(head))
        cache.batch_repeat_interleave(len(rows))
        width = max(len(r) for r in rows) - n
        ids, mask = [], []
        for r in rows:
            pad = width - (len(r) - n)
            ids.append([*r[:n], *[self.pad_id] * pad, *r[n:]])
            mask.append([1] * n + [0] * pad + [1] * (len(r) - n))
        self.reused_tokens += n * len(rows)
        device = self.model.device
        return {
            "input_ids": torch.tensor(ids, device=device),
            "attention_mask": torch.tensor(mask, device=device),
            "cache": cache,
        }
