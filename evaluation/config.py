"""The ``evaluate`` section of the run config: grouping, inputs, LLM endpoint, text metrics.

The LLM is configured like every other (``core.llm.LLMConfig``); its prompts are the registry's
``synonym_grouping`` (EMER 4.2), ``ov_extract`` (MER2024 2.3) and ``ov_sentiment`` (MER-UniBench),
replaceable per name with ``evaluate.llm.prompts.<name>``.
"""

from __future__ import annotations

import dataclasses

from core.config import Config, check_choice, check_range
from core.llm import LLMConfig

GROUPINGS = ("auto", "exact", "groups", "wheel", "llm")
LIST_PARSERS = ("auto", "literal", "mertools")
LANGUAGES = ("en", "zh")
SENTIMENT_MAPPINGS = ("llm", "lexicon")


def default_llm() -> LLMConfig:
    """The grouping / extraction LLM: an OpenAI-compatible endpoint, answers cached on disk."""
    return LLMConfig(
        backend="openai",
        model="gpt-4o-mini",
        max_new_tokens=1000,
        concurrency=8,
        timeout_s=60.0,
        cache_dir=".cache/evaluate-llm",
    )


@dataclasses.dataclass(frozen=True)
class EvaluateConfig(Config):
    """How predictions are scored. ``grouping=auto``: groups if given, else wheel if given, else exact."""

    grouping: str = "auto"
    groups: str = ""  # organisers' openset-synonym.zip, a folder of .npy, or name,groups table
    wheel_dir: str = ""  # folder with wheel_mapping.json (or wheel1-5.xlsx, format.csv, synonym.xlsx)
    # auto: "mertools" (the organisers' quote-splitting parser) with precomputed groups, whose groups were
    # built from that parser's pieces ("don't" -> "don", "t"); "literal" (a safe literal parser) otherwise.
    list_parser: str = "auto"
    name_column: str = "name"
    labels_column: str = "openset"
    text_column: str = "description"  # free-text descriptions (text metrics, label extraction)
    language: str = "en"  # text metrics tokenisation: en or zh
    report: bool = True  # write report.md / report.json / PNGs
    out: str = ""  # report folder; empty: next to the predictions
    reask: int = 2  # extra asks when an LLM answer holds no list
    max_failure_fraction: float = 0.5  # more LLM requests failed: exit non-zero (the report is kept)
    # the discrete (hit) and sentiment tasks: the ground-truth column (empty: emotion / sentiment),
    # how OV labels become a polarity (llm: the ov_sentiment prompt; lexicon: wheel clusters, offline)
    # and the valence threshold (positive above it, negative below minus it, neutral between).
    gt_column: str = ""
    sentiment_mapping: str = "llm"
    valence_threshold: float = 0.0
    llm: LLMConfig = dataclasses.field(default_factory=default_llm)

    def problems(self) -> list[str]:
        out: list[str] = []
        check_range(out, "evaluate.max_failure_fraction", self.max_failure_fraction, 0.0, 1.0)
        check_choice(out, "evaluate.grouping", self.grouping, GROUPINGS)
        check_choice(out, "evaluate.list_parser", self.list_parser, LIST_PARSERS)
        check_choice(out, "evaluate.language", self.language, LANGUAGES)
        check_choice(out, "evaluate.sentiment_mapping", self.sentiment_mapping, SENTIMENT_MAPPINGS)
        check_range(out, "evaluate.valence_threshold", self.valence_threshold, 0.0, 100.0)
        if self.grouping == "groups" and not self.groups:
            out.append(
                "evaluate.groups = '': must name the groups file when evaluate.grouping = 'groups' "
                "(e.g. openset-synonym.zip)"
            )
        if self.grouping == "wheel" and not self.wheel_dir:
            out.append(
                "evaluate.wheel_dir = '': must name the emotion-wheel folder when evaluate.grouping = 'wheel'"
            )
        if self.llm.backend == "vllm":  # an in-process engine would be loaded by the driver: refused
            out.append(
                "evaluate.llm.backend = 'vllm': vllm runs only as a Ray Data stage of the annotation; "
                "start `vllm serve MODEL` and set evaluate.llm.backend = 'openai' with "
                "evaluate.llm.base_url = 'http://HOST:8000/v1'"
            )
        check_range(out, "evaluate.reask", self.reask, 0, 20)
        for key in ("name_column", "labels_column", "text_column"):
            if not getattr(self, key):
                out.append(f"evaluate.{key} = '': must name a column")
        return out

    def resolved_list_parser(self) -> str:
        if self.list_parser != "auto":
            return self.list_parser
        return "mertools" if self.resolved_grouping() == "groups" else "literal"

    def resolved_grouping(self) -> str:
        if self.grouping != "auto":
            return self.grouping
        if self.groups:
            return "groups"
        return "wheel" if self.wheel_dir else "exact"
