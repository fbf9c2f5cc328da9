"""Optional vLLM paths (need ``pip install 'emer[vllm]'``; vLLM is not installed in the CPU dev setup).

``VLLMBackend``: an in-process ``vllm.LLM`` behind the same ``generate(requests)`` interface, fed
OpenAI-format chat messages (media as data URLs). ``build_vllm_processor``: a ``ray.data.llm``
processor for whole-dataset batch inference on GPU clusters (rows need a ``prompt`` column; frames /
audio columns optional), for pipelines that want Ray's own vLLM engine scheduling. Neither path is
exercised by the CPU test suite beyond the missing-extra error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from core.llm.base import LLMBackend, LLMConfig, LLMRequest, LLMResult
from core.llm.openai_backend import chat_messages

logger = logging.getLogger(__name__)

MISSING = (
    "the vllm backend needs the optional extra: pip install 'emer[vllm]' (vLLM, GPU only); "
    "or set backend to 'transformers' or 'openai'"
)


def require_vllm():
    try:
        import vllm
    except ImportError as err:
        raise ImportError(f"{MISSING} ({err})") from err
    return vllm


def _sampling(vllm, cfg: LLMConfig):
    return vllm.SamplingParams(
        max_tokens=cfg.max_new_tokens, min_tokens=cfg.min_new_tokens, temperature=cfg.temperature
    )


class VLLMBackend(LLMBackend):
    """``vllm.LLM(cfg.model)`` loaded once; ``tensor_parallel_size`` from ``cfg.num_gpus``."""

    def __init__(self, cfg: LLMConfig, role: str) -> None:
        super().__init__(cfg, role)
        vllm = require_vllm()
        self._vllm = vllm
        self._llm = vllm.LLM(
            model=cfg.model,
            tensor_parallel_size=max(1, int(cfg.num_gpus)),
            limit_mm_per_prompt={"image": 64, "audio": 1} if role != "text" else None,
        )

    def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        results: list[LLMResult | None] = [None] * len(requests)
        batch, where = [], []
        for i, req in enumerate(requests):
            problem = self.check_request(req)
            try:
                msgs = chat_messages(req) if problem is None else None
            except ValueError as err:
                problem = f"bad input: {err}"
            if problem is not None:
                results[i] = LLMResult(error=problem)
            else:
                batch.append(msgs)
                where.append(i)
        self.record([r for r in results if r is not None])  # requests refused before generate
        if batch:
            began = time.perf_counter()
            try:
                outs = self._llm.chat(batch, _sampling(self._vllm, self.cfg), use_tqdm=False)
                for i, out in zip(where, outs):
                    results[i] = LLMResult(
                        text=out.outputs[0].text.strip(),
                        prompt_tokens=len(out.prompt_token_ids or []),
                        completion_tokens=len(out.outputs[0].token_ids),
                    )
            except Exception as err:  # noqa: BLE001 - the batch's rows fail as data
                for i in where:
                    results[i] = LLMResult(error=f"vllm generate failed: {type(err).__name__}: {err}")
            self.record([results[i] for i in where], time.perf_counter() - began)
        return [r if r is not None else LLMResult(error="internal: no result") for r in results]


def build_vllm_processor(cfg: LLMConfig, role: str):
    """A ``ray.data.llm`` processor: ``processor(ds)`` maps rows with ``prompt`` (+ ``frames`` /
    ``audio``) to rows with ``text`` and ``error`` columns added."""
    require_vllm()
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    config = vLLMEngineProcessorConfig(
        model_source=cfg.model,
        batch_size=cfg.batch_size,
        concurrency=cfg.concurrency,
        engine_kwargs={"tensor_parallel_size": max(1, int(cfg.num_gpus))},
        prepare_multimodal_stage=role != "text",
        should_continue_on_error=True,
    )
    sampling = {
        "max_tokens": cfg.max_new_tokens,
        "min_tokens": cfg.min_new_tokens,
        "temperature": cfg.temperature,
    }

    def pre(row: dict) -> dict:
        req = LLMRequest(prompt=row["prompt"], frames=row.get("frames"), audio=row.get("audio"))
        return {**row, "messages": chat_messages(req), "sampling_params": sampling}

    def post(row: dict) -> dict:
        text = row.get("generated_text")
        err = row.get("__inference_error__")
        return {
            **row,
            "text": text.strip() if text else None,
            "error": str(err) if err else (None if text else "vllm: empty output"),
        }

    return build_processor(config, preprocess=pre, postprocess=post)
