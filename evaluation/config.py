"""The ``evaluate`` section of the run config: grouping, inputs, LLM endpoint, text metrics.

The default prompts are the ones the papers define (EMER / AffectGPT section 4.2 for grouping,
MER2024 section 2.3 for open-vocabulary label extraction); they are configurable defaults.
"""

from __future__ import annotations

import dataclasses

from cluster.config import Config, check_choice, check_range

GROUPINGS = ("auto", "exact", "groups", "wheel", "llm")
LIST_PARSERS = ("auto", "literal", "mertools")
LANGUAGES = ("en", "zh")

# EMER (seed 001, section 4.2) / AffectGPT (seed 000, section 2): the synonym-grouping prompt.
GROUPING_PROMPT = (
    "Please assume the role of an expert in the field of emotions. We provide a set of emotions. "
    "Please group the emotions, with each group containing emotions with the same meaning. "
    "Directly output the results. The output format should be a list containing multiple lists. "
    "Input: {labels} Output:"
)

# MER2024 (seed 004, section 2.3) / EMER Table 2 #4: open-vocabulary label extraction.
EXTRACT_PROMPT = (
    "Please assume the role of an expert in the field of emotions. We provide clues that may be related "
    "to the emotions of the characters. Based on the provided clues, please identify the emotional states "
    "of the main characters. Please separate different emotional categories with commas and output only "
    "the clearly identifiable emotional categories in a list format. If none are identified, please "
    "output an empty list. Clues: {description} Output:"
)


@dataclasses.dataclass(frozen=True)
class LLMConfig(Config):
    """An OpenAI-compatible chat endpoint used for ``llm`` grouping and OV label extraction."""

    base_url: str = ""  # empty: the OpenAI API (or $OPENAI_BASE_URL)
    model: str = "gpt-4o-mini"
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    max_retries: int = 4  # client retries on 408/409/429/5xx with backoff
    timeout: float = 60.0  # seconds per request
    reask: int = 2  # extra asks when an answer is malformed
    temperature: float = 0.0
    max_tokens: int = 1000
    cache_dir: str = ".cache/evaluate-llm"  # answers keyed by a hash of the request; local or s3://

    def problems(self) -> list[str]:
        out: list[str] = []
        check_range(out, "evaluate.llm.concurrency", self.concurrency, 1, 256)
        check_range(out, "evaluate.llm.max_retries", self.max_retries, 0, 50)
        check_range(out, "evaluate.llm.reask", self.reask, 0, 20)
        check_range(out, "evaluate.llm.timeout", self.timeout, 0.1, None)
        check_range(out, "evaluate.llm.temperature", self.temperature, 0.0, 2.0)
        check_range(out, "evaluate.llm.max_tokens", self.max_tokens, 1, None)
        if self.base_url and not self.base_url.startswith(("http://", "https://")):
            out.append(f"evaluate.llm.base_url = {self.base_url!r}: must start with http:// or https://")
        if not self.model:
            out.append("evaluate.llm.model = '': must name a model, e.g. gpt-4o-mini")
        if not self.cache_dir:
            out.append("evaluate.llm.cache_dir = '': must be a folder (answers are cached there)")
        return out


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
    grouping_prompt: str = GROUPING_PROMPT
    extract_prompt: str = EXTRACT_PROMPT
    llm: LLMConfig = dataclasses.field(default_factory=LLMConfig)

    def problems(self) -> list[str]:
        out: list[str] = []
        check_choice(out, "evaluate.grouping", self.grouping, GROUPINGS)
        check_choice(out, "evaluate.list_parser", self.list_parser, LIST_PARSERS)
        check_choice(out, "evaluate.language", self.language, LANGUAGES)
        if self.grouping == "groups" and not self.groups:
            out.append(
                "evaluate.groups = '': must name the groups file when evaluate.grouping = 'groups' "
                "(e.g. openset-synonym.zip)"
            )
        if self.grouping == "wheel" and not self.wheel_dir:
            out.append(
                "evaluate.wheel_dir = '': must name the emotion-wheel folder when evaluate.grouping = 'wheel'"
            )
        if "{labels}" not in self.grouping_prompt:
            out.append("evaluate.grouping_prompt: must contain the placeholder {labels}")
        if "{description}" not in self.extract_prompt:
            out.append("evaluate.extract_prompt: must contain the placeholder {description}")
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
