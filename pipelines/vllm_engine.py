"""The engine side of ``pipelines.vllm_stage``: Ray's ``ray.data.llm`` engine stage, extended.

Imported only where a processor is built (it imports ``ray.llm``'s stage classes, which import vLLM
in their actors only):

- ``StepsEngineStage``: ONE vLLM engine per model for a group of steps. Each batch runs through the
  group's steps in order inside the engine's actor (disambiguate -> translate -> ov): a step's
  requests are built from the row as the previous step left it (``Preprocess``), rendered with the
  model's chat template, generated concurrently (continuous batching) and stored (``accept``) or
  failed with the engine's error, row by row. One processor pass, one engine, one actor pool, where
  one processor per step started one engine per step (three copies of the model for three steps).
- ``CompatPrepareMultimodalStage``: Ray 2.60's PrepareMultimodal with the ``chat_utils`` alias of
  ``pipelines.vllm_compat`` installed in its actor first (vLLM >= 0.32 moved the module it imports).
- ``start_failure``: the reason a dead engine actor gives, for ``vllm_stage`` to fail the run with.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from ray.llm._internal.batch.stages.prepare_multimodal_stage import (
    PrepareMultimodalStage,
    PrepareMultimodalUDF,
)
from ray.llm._internal.batch.stages.vllm_engine_stage import vLLMEngineStage, vLLMEngineStageUDF

from core.stage import OK
from pipelines import vllm_compat
from pipelines.vllm_rows import ERROR, Preprocess

log = logging.getLogger(__name__)


class StepsEngineUDF(vLLMEngineStageUDF):
    """One vLLM engine (``vLLMEngineStageUDF`` starts it) serving every step of a group, in order."""

    def __init__(self, data_column: str, expected_input_keys: list[str], steps: Sequence, cfg: Any, **kw):
        vllm_compat.install()
        try:
            super().__init__(data_column, expected_input_keys, **kw)
        except Exception as err:  # an engine that cannot start: the run fails with this reason
            raise RuntimeError(start_reason(kw.get("model", "?"), err)) from err
        from transformers import AutoTokenizer

        self.steps = [Preprocess(cls, cfg) for cls in steps]
        self.tokenizer = AutoTokenizer.from_pretrained(self.llm.model_source)

    async def udf(self, batch: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        batch_id = uuid.uuid4()
        for pre in self.steps:
            asks = [(row, pre.messages(row)) for row in batch if row.get("outcome", OK) == OK]
            asks = [(row, m) for row, m in asks if m is not None]
            answers = await asyncio.gather(*(self._ask(pre, row, m, batch_id) for row, m in asks))
            for (row, _), (text, error) in zip(asks, answers):
                pre.answer(row, text, error)
        for row in batch:
            yield {k: v for k, v in row.items() if k != ERROR}

    async def _ask(self, pre: Preprocess, row: dict, messages: list[dict], batch_id) -> tuple[str, str]:
        try:
            prompt = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception as err:  # noqa: BLE001 - a row whose prompt cannot be rendered fails alone
            return "", f"chat template: {type(err).__name__}: {err}"
        idx = row[self.IDX_IN_BATCH_COLUMN]  # Ray's logs name a failed row by it
        request = {"prompt": prompt, "sampling_params": dict(pre.sampling), self.IDX_IN_BATCH_COLUMN: idx}
        out = await self._generate_with_error_handling(request, batch_id)
        return out.get("generated_text") or "", out.get(ERROR) or ""


class StepsEngineStage(vLLMEngineStage):
    """``vLLMEngineStage`` (placement, executor and GPU asks as Ray makes them) running ``StepsEngineUDF``."""

    fn: type = StepsEngineUDF

    def get_required_input_keys(self) -> dict[str, str]:
        return {}  # the requests are made inside the stage, step by step


class CompatPrepareMultimodalUDF(PrepareMultimodalUDF):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        vllm_compat.install()
        super().__init__(*args, **kwargs)


class CompatPrepareMultimodalStage(PrepareMultimodalStage):
    fn: type = CompatPrepareMultimodalUDF


def compat_stages(processor: Any) -> None:
    """``processor`` with Ray's PrepareMultimodal stage running ``CompatPrepareMultimodalUDF``."""
    for name, stage in list(processor.stages.items()):
        if type(stage) is PrepareMultimodalStage:
            processor.stages[name] = CompatPrepareMultimodalStage(
                fn_constructor_kwargs=stage.fn_constructor_kwargs, map_batches_kwargs=stage.map_batches_kwargs
            )


def start_reason(model: str, err: BaseException) -> str:
    """Why the engine of ``model`` did not start, with the root cause vLLM chained to its error."""
    causes, seen = [], err
    while seen is not None and len(causes) < 4:
        causes.append(f"{type(seen).__name__}: {seen}")
        seen = seen.__cause__ or seen.__context__
    return f"the vLLM engine of {model} did not start: " + " <- ".join(causes)
