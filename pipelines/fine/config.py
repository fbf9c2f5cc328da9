"""``FilterConfig``: the ``filter`` section of the run config (the EMER-Fine quality rules).

Low-level rules (MER-Caption's first filter): description length in words, a repeated n-gram, an
empty audio or video clue, the description's languages, empty OV labels and labels outside every
emotion-wheel cluster (with ``wheel_dir``). The high-level rule: the agreement of the description's
OV labels with an independent label set (``reference_uri``, or a discrete-label column of the data)
under the wheel grouping, below ``min_agreement``; with neither, and ``signal_reference`` on, the
measured signals of a ``signal``-role annotation (the face expression classifier's top label, the
voice's arousal: ``pipelines.fine.signal_ref``). ``skip_rules`` turns rules off by id; ``pool`` is the
job's actor pool (``core.resources.Resources``, one fixed actor by default).
"""

from __future__ import annotations

import dataclasses

from core.config import Config, check_range
from core.resources import Resources

RULES = (
    "too_short",
    "too_long",
    "repeated_ngram",
    "missing_clue",
    "language_en",
    "language_zh",
    "no_labels",
    "off_wheel",
    "low_agreement",
)
ERROR_RULE = "error"  # a row the stage could not check (its reason says why)


@dataclasses.dataclass(frozen=True)
class FilterConfig(Config):
    """Thresholds of the quality rules; a row passes when no rule fires."""

    min_words: int = 8  # description_en shorter than this: too_short
    max_words: int = 200  # longer than this: too_long
    ngram: int = 3  # n of the repeated n-gram rule (words, lower-cased)
    ngram_repeats: int = 3  # one n-gram occurring this many times or more: repeated_ngram
    min_ascii_share: float = 0.9  # share of description_en's letters that are ASCII
    min_cjk_share: float = 0.5  # share of description_zh's letters that are CJK characters
    require_zh: bool = True  # an empty description_zh fires language_zh (off when translate=none)
    wheel_dir: str = ""  # emotion-wheel folder (wheel_mapping.json); "" = no wheel rule, exact matching
    max_off_wheel_share: float = 0.5  # more of a row's labels than this reach no cluster: off_wheel
    reference_uri: str = ""  # CSV/Parquet with name + reference_column: the independent label set
    reference_column: str = ""  # "" = openset in the reference file, else the data's emotion column
    min_agreement: float = 0.25  # label agreement (set-level Avg) below this: low_agreement
    signal_reference: bool = True  # no reference labels: agree with face_expressions / audio_features
    skip_rules: list[str] = dataclasses.field(default_factory=list)  # rule ids not applied
    batch_size: int = 256  # rows per batch of the Ray job
    pool: Resources = Resources(actors=1)  # the Ray job's actor pool: what each actor asks, how many

    def problems(self) -> list[str]:
        out: list[str] = []
        check_range(out, "filter.min_words", self.min_words, 0, None)
        if self.max_words < self.min_words:
            out.append(f"filter.max_words = {self.max_words}: must be >= filter.min_words ({self.min_words})")
        check_range(out, "filter.ngram", self.ngram, 1, 20)
        check_range(out, "filter.ngram_repeats", self.ngram_repeats, 2, None)
        for key in ("min_ascii_share", "min_cjk_share", "max_off_wheel_share", "min_agreement"):
            check_range(out, f"filter.{key}", getattr(self, key), 0.0, 1.0)
        unknown = [r for r in self.skip_rules if r not in RULES]
        if unknown:
            out.append(
                f"filter.skip_rules = {self.skip_rules!r}: unknown rule(s) {unknown}; "
                f"known: {', '.join(RULES)}"
            )
        check_range(out, "filter.batch_size", self.batch_size, 1, 1_000_000)
        return out

    def active(self, rule: str) -> bool:
        return rule not in self.skip_rules
