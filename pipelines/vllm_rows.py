"""The row side of the vLLM stages (``pipelines.vllm_stage``): our rows in and out of ``ray.data.llm``.

``Preprocess`` turns a row into the chat ``messages`` and ``sampling_params`` of one step (or marks it
``SKIP``: not "ok", missing columns, no request needed, a request that cannot be made, which fails
the row with the reason); ``Postprocess`` turns the engine's answer back into our columns
(``accept``) or fails the row with the engine's error; ``Admit`` is the shared engine's preprocess
(``pipelines.vllm_engine`` asks each step itself, with ``Preprocess.messages`` and ``answer``).
The stage classes of ``pipelines.stages`` are used without a backend (``bare_stage``), so both the
vLLM and the ``map_stages`` paths give the same columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.llm.base import LLMConfig, request_problem
from core.llm.openai_backend import chat_messages
from core.stage import OK, fail
from pipelines.stages import LLMStage

SKIP = "emer:skip"  # __inference_error__ of rows that bypass the engine (Ray skips error rows)
ERROR = "__inference_error__"
COLUMNS = "__emer_columns"  # the row's own columns, kept by postprocess (Ray adds many of its own)
PASSES = ("messages", "sampling_params", ERROR, COLUMNS)


def bare_stage(cls: type[LLMStage], cfg: Any) -> LLMStage:
    """An instance of ``cls`` for ``request`` / ``accept`` only: no ``setup``, hence no backend."""
    stage = cls.__new__(cls)
    stage.cfg, stage.options, stage._shared = cfg, {}, []
    stage.configure()
    return stage


def sampling_params(llm: LLMConfig) -> dict[str, Any]:
    """vLLM ``SamplingParams`` kwargs from the role config."""
    return {
        "max_tokens": llm.max_new_tokens,
        "min_tokens": llm.min_new_tokens,
        "temperature": llm.temperature,
    }


class Preprocess:
    """Row -> the row plus vLLM chat ``messages`` and ``sampling_params`` (or ``SKIP``); also what the
    shared engine of ``pipelines.vllm_engine`` asks per step: ``messages(row)``, ``answer(row, ...)``."""

    def __init__(self, cls: type[LLMStage], cfg: Any) -> None:
        self.stage = bare_stage(cls, cfg)
        self.sampling = sampling_params(self.stage.llm_cfg)

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        row.setdefault("outcome", OK)
        messages = self.messages(row) if row["outcome"] == OK else None
        row[COLUMNS] = [c for c in row if c not in PASSES]  # after request(): it may fill a column
        if messages is None:
            return {**row, ERROR: SKIP}
        return {**row, "messages": messages, "sampling_params": dict(self.sampling), ERROR: ""}

    def messages(self, row: dict[str, Any]) -> list[dict] | None:
        """The chat messages of this step for ``row``; None when it needs no request, or when it
        cannot be made (then the row is failed with the reason)."""
        st = self.stage
        missing = [c for c in st.needs if c not in row]
        if missing:
            fail(row, st.name, f"stage {st.name} needs columns {missing} that no earlier stage made")
            return None
        try:
            req = st.request(row)
        except Exception as err:  # noqa: BLE001 - a row whose input cannot be prepared fails alone
            fail(row, st.name, f"cannot build the {st.role} request: {type(err).__name__}: {err}")
            return None
        if req is None:
            return None
        problem = request_problem(req, st.kind)
        if problem is None:
            try:
                return chat_messages(req)
            except ValueError as err:
                problem = f"bad input: {err}"
        fail(row, st.name, f"{st.role} LLM ({model_name(st.llm_cfg)}): {problem}")
        return None

    def answer(self, row: dict[str, Any], text: str, error: str = "") -> None:
        """The engine's answer into ``row`` (``accept``), or the row failed with the engine's error."""
        st = self.stage
        if error:
            fail(row, st.name, f"{st.role} LLM ({model_name(st.llm_cfg)}): vllm: {error}")
        else:
            st.accept(row, (text or "").strip())


class Postprocess:
    """Engine output -> our columns: ``accept(row, text)``, or the row failed with the engine's error.

    It runs after the processor, on every row: error and skipped rows bypass Ray's own postprocess,
    which therefore keeps rows whole (``keep``), so that a block's rows all have the same columns.
    After a shared engine (``shared``: its steps, one or more, answered into the row already) it only
    gives every row their columns."""

    def __init__(
        self, cls: type[LLMStage] | Sequence[type[LLMStage]], cfg: Any, shared: bool = False
    ) -> None:
        classes = list(cls) if isinstance(cls, (list, tuple)) else [cls]
        if not shared and len(classes) != 1:
            raise ValueError(f"{len(classes)} stages: one processor answers one stage (or give shared=True)")
        self.answers = None if shared else Preprocess(classes[0], cfg)
        self.produces = [c for k in classes for c in k.produces]

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        error = row.get(ERROR) or ""
        if self.answers is None:  # a shared engine answered every step into the row itself
            return {c: row.get(c) for c in dict.fromkeys([*row[COLUMNS], *self.produces, "stage", "reason"])}
        own = {c: row.get(c) for c in row[COLUMNS]}
        if error != SKIP and own.get("outcome", OK) == OK:
            self.answers.answer(own, row.get("generated_text") or "", error)
        for c in (*self.produces, "stage", "reason"):
            own.setdefault(c, None)
        return own


class Admit:
    """The shared engine's preprocess: which columns are the row's own, and ``SKIP`` for rows that are
    not "ok" (the engine stage then passes them through untouched)."""

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        row.setdefault("outcome", OK)
        columns = [c for c in row if c not in PASSES]
        return {**row, COLUMNS: columns, ERROR: "" if row["outcome"] == OK else SKIP}


def model_name(llm: LLMConfig) -> str:
    return f"{llm.backend}:{llm.model}"


def keep(row: dict[str, Any]) -> dict[str, Any]:
    """The processor's own postprocess: the row as the engine left it (``Postprocess`` follows)."""
    return row
