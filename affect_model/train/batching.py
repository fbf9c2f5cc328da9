"""Length-aware batching: batches of samples of similar token length, so a batch pads less.

The idea of Hugging Face's ``LengthGroupedSampler``, written small: shuffle the indices (seeded), cut
them into buckets of ``bucket_batches x batch_size`` samples, sort each bucket by length (longest
first), cut it into batches and shuffle the batches; the batch holding the longest sample goes first
(an out-of-memory shows at the first step, not hours in). Every index appears exactly once per epoch,
and the order depends on the seed (and epoch) only.

Training reads Ray Data shards as a stream, so ``grouped_batches`` applies this to bounded buffers of
rows (numpy column chunks) and collates each batch one ahead in a thread (``prefetch``). Inference
uses ``describe_in_length_order``: rows sorted by prompt length, results put back in input order.
``padding_stats`` and ``per_sample_loss`` measure what batching changes (padding) and what it must
not (each sample's loss). Ray-free and model-agnostic.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
import torch

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")
IGNORE = -100


def length_grouped_batches(
    lengths: Sequence[int],
    batch_size: int,
    bucket_batches: int = 50,
    seed: int | Sequence[int] = 0,
    drop_last: bool = False,
) -> list[list[int]]:
    """Index batches of similar length (see the module docstring); ``seed`` may be a tuple such as
    ``(seed, epoch)``. ``drop_last`` leaves out the one short batch (of the last bucket)."""
    if batch_size < 1 or bucket_batches < 1:
        raise ValueError(f"batch_size = {batch_size}, bucket_batches = {bucket_batches}: must be >= 1")
    rng = np.random.default_rng(seed)
    lengths = np.asarray(lengths)
    order = rng.permutation(len(lengths))
    bucket = batch_size * bucket_batches
    batches: list[list[int]] = []
    for start in range(0, len(order), bucket):
        chunk = order[start : start + bucket]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size].tolist() for i in range(0, len(chunk), batch_size)]
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    if not batches:
        return []
    longest = max(range(len(batches)), key=lambda b: max(lengths[i] for i in batches[b]))
    first = batches.pop(longest)
    return [first] + [batches[i] for i in rng.permutation(len(batches))]


class LengthGroupedSampler:
    """A batch sampler (``torch.utils.data.DataLoader(batch_sampler=...)``) over known lengths;
    ``set_epoch`` changes the order deterministically."""

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        bucket_batches: int = 50,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        self.lengths = list(lengths)
        self.batch_size, self.bucket_batches = batch_size, bucket_batches
        self.seed, self.drop_last, self.epoch = seed, drop_last, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        seed = (self.seed, self.epoch)
        yield from length_grouped_batches(
            self.lengths, self.batch_size, self.bucket_batches, seed, self.drop_last
        )

    def __len__(self) -> int:
        n, b = len(self.lengths), self.batch_size
        return n // b if self.drop_last else -(-n // b)


def naive_batches(n: int, batch_size: int, drop_last: bool = False) -> list[list[int]]:
    """Consecutive index batches in data order (the baseline grouping is compared with)."""
    stop = n - n % batch_size if drop_last else n
    return [list(range(i, min(i + batch_size, stop))) for i in range(0, stop, batch_size)]


def take_rows(columns: dict[str, Any], index: Sequence[int]) -> dict[str, Any]:
    """The rows ``index`` of a column batch (dict of numpy arrays or lists), in that order."""
    idx = np.asarray(index, dtype=np.int64)
    return {k: v[idx] if isinstance(v, np.ndarray) else [v[i] for i in idx] for k, v in columns.items()}


def prefetch(fn: Callable[[T], R], items: Iterable[T], ahead: int = 1) -> Iterator[R]:
    """``fn`` over ``items`` in one background thread, at most ``ahead`` results ahead of the consumer
    (bounded memory, unlike ``Executor.map``); results come in input order."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="emer-collate") as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) > ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def grouped_batches(
    chunks: Iterable[dict[str, Any]],
    lengths: Callable[[dict[str, Any]], Sequence[int]],
    collate: Callable[[dict[str, Any]], R],
    batch_size: int,
    bucket_batches: int,
    seed: int,
    drop_last: bool = True,
) -> Iterator[R]:
    """Collated batches of similar length from a stream of column chunks (each a bounded buffer of
    rows, e.g. ``bucket_batches x batch_size``); chunk ``c`` is grouped with seed ``(seed, c)``."""

    def plans() -> Iterator[dict[str, Any]]:
        for c, chunk in enumerate(chunks):
            order = length_grouped_batches(lengths(chunk), batch_size, bucket_batches, (seed, c), drop_last)
            yield from (take_rows(chunk, index) for index in order)

    yield from prefetch(collate, plans())


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Index batches in order of length (longest first): the inference grouping, no randomness."""
    order = np.argsort(-np.asarray(lengths), kind="stable").tolist()
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def describe_in_length_order(
    rows: Sequence[T], lengths: Sequence[int], batch_size: int, describe: Callable[[list[T]], list[R]]
) -> list[R]:
    """``describe`` over batches of rows of similar length; the results come back in ``rows``' order."""
    out: list[Any] = [None] * len(rows)
    for index in length_sorted_batches(lengths, batch_size):
        for i, result in zip(index, describe([rows[i] for i in index]), strict=True):
            out[i] = result
    return out


def padding_stats(batch: dict[str, Any]) -> dict[str, float]:
    """``pad_frac``: padded share of the text positions (``attention_mask`` == 0); ``media_pad_frac``:
    padded share of the frame / clip slots (``frame_mask`` / ``clip_mask``), when the batch has them."""
    mask = batch["attention_mask"]
    out = {"pad_frac": 1.0 - float(mask.sum()) / max(1, mask.numel())}
    media = [batch[k] for k in ("frame_mask", "clip_mask") if torch.is_tensor(batch.get(k))]
    if media:
        total = sum(m.numel() for m in media)
        out["media_pad_frac"] = 1.0 - sum(float(m.sum()) for m in media) / max(1, total)
    return out


def per_sample_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each row's mean next-token cross-entropy over its answer tokens (labels != -100), ``[B]``:
    what batching must not change (the causal-LM loss of one sample alone)."""
    logits, labels = logits[:, :-1].float(), labels[:, 1:]
    loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE, reduction="none"
    ).view(labels.shape)
    counts = (labels != IGNORE).sum(dim=1).clamp(min=1)
    return loss.sum(dim=1) / counts


def mean_padding(stats: Sequence[dict[str, float]]) -> dict[str, float]:
    """The mean of ``padding_stats`` over a step's micro-batches (empty: nothing)."""
    keys = {k for s in stats for k in s}
    return {k: sum(s.get(k, 0.0) for s in stats) / len(stats) for k in sorted(keys)} if stats else {}
