"""The one parser of LLM label answers: OV-extraction lists and synonym-grouping lists of lists.

Answers come as JSON or Python list literals, bare comma lists, Chinese punctuation (，、；【】“”),
bullets or numbered lines, with prose around them, code fences or a reasoning block. The result is
lower-cased, stripped of quotes/bullets/trailing punctuation, de-duplicated in first-seen order;
"[]", "none", "无" and the like give []. Literals are read with ``json`` / ``ast.literal_eval``
(data only, no code runs); ``eval`` is never used.
"""

from __future__ import annotations

import ast
import json
import re
import unicodedata

# Characters NFKC leaves alone, mapped to their ASCII role.
_TRANSLATE = str.maketrans(
    {
        "【": "[",
        "】": "]",
        "〔": "[",
        "〕": "]",
        "〖": "[",
        "〗": "]",
        "［": "[",
        "］": "]",
        "，": ",",
        "、": ",",
        "﹐": ",",
        "；": ";",
        "﹔": ";",
        "：": ":",
        "“": '"',
        "”": '"',
        "„": '"',
        "‟": '"',
        "«": '"',
        "»": '"',
        "「": '"',
        "」": '"',
        "『": '"',
        "』": '"',
        "‘": "'",
        "’": "'",
        "‚": "'",
        "‛": "'",
        "‹": "'",
        "›": "'",
        "`": "'",
        "´": "'",
        "。": ".",
        "！": "!",
        "？": "?",
        "（": "(",
        "）": ")",
    }
)
_QUOTES = "\"'"
_SEPARATORS = re.compile(r"[,;\n|]+")
_BULLET = re.compile(r"^\s*(?:[-*•·●▪◦‣+>]+|\(?\d{1,3}[.)](?!\d)|\(\d{1,3}\)|[a-z][.)]\s)\s*", re.I)
_FENCE = re.compile(r"```[a-zA-Z]*")
_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")
_NULL = re.compile(
    r"^(?:none|null|nil|n/?a|nothing|empty(?: list)?|unknown|no(?:ne)? (?:clear |clearly identifiable |"
    r"obvious |specific )?(?:emotions?|emotional (?:states?|categories)|labels?)(?: (?:identified|found|"
    r"detected))?|no|无|没有|空|空列表|无明显情绪)$"
)
_PAREN = re.compile(r"\([^()]*\)")
_MAX_WORDS = 4  # a longer item is prose, not a label
_MAX_LITERAL = 20000  # longer answers skip the literal readers


# The official AffectGPT code's answer to its OV-label question (MERTools base_dataset.py): a model
# trained with model.target ovlabel / hybrid answers in this sentence, read back by parse_ov_answer.
OV_ANSWER = "The character's emotional state is {}."
_OV_ANSWER = re.compile(r"^\s*The character's emotional state is (.*?)\.?\s*(?:###.*)?$", re.S)


def format_ov_answer(labels: list[str]) -> str:
    """The official OV-label answer sentence for ``labels``."""
    return OV_ANSWER.format(", ".join(str(x).strip() for x in labels if str(x).strip()))


def parse_ov_answer(text: str | None) -> list[str] | None:
    """The labels of an official OV-label answer, or None when ``text`` is not one (e.g. a description)."""
    match = _OV_ANSWER.match(str(text or ""))
    return None if match is None else parse_ov_labels(match.group(1))


def parse_ov_labels(text: str | None) -> list[str]:
    """Emotion labels in ``text`` (an LLM's list answer): lower-cased, unique, in first-seen order."""
    return parse_label_list(text) or []


def parse_label_list(text: str | None) -> list[str] | None:
    """Like ``parse_ov_labels``, but None when ``text`` holds no list at all (empty, or prose such as
    a sentence instead of labels): the caller may ask again."""
    if not text or not isinstance(text, str) or not text.strip():
        return None
    norm = _normalize(text)
    items = _from_literal(norm)
    if items is None:
        items = _from_segments(norm)
    if items is None:
        items = _split(_after_colon(norm))
        if any(len(_PAREN.sub(" ", item).split()) > _MAX_WORDS for item in items):
            return None
    return _clean_all(items)


def parse_label_groups(text: str | None, labels: list[str] | None = None) -> list[list[str]] | None:
    """Groups in a synonym-grouping answer (a list of lists); None when there is no such list, or
    when it shares no label with ``labels`` (the labels that were asked about)."""
    if not text or not isinstance(text, str):
        return None
    norm = _normalize(text)
    start, end = norm.find("["), norm.rfind("]")
    if not 0 <= start < end:
        return None
    body = norm[start : end + 1]
    value = _from_literal_raw(body)
    if isinstance(value, (list, tuple)) and value and all(isinstance(g, (list, tuple)) for g in value):
        groups = [_clean_all([s for v in g for s in _flatten(v)]) for g in value]
    else:
        groups = [_clean_all(_from_literal(f"[{seg}]") or _split(seg)) for seg in _SEGMENT.findall(body)]
    groups = [g for g in groups if g]
    if not groups or (labels is not None and not set(labels) & {x for g in groups for x in g}):
        return None
    return groups


def _normalize(text: str) -> str:
    text = _FENCE.sub("\n", _THINK.sub(" ", text))
    # translate before NFKC too: NFKC turns some quote marks (´) into combining sequences
    return unicodedata.normalize("NFKC", text.translate(_TRANSLATE)).translate(_TRANSLATE).strip()


def _from_literal(text: str) -> list[str] | None:
    """The whole answer as a JSON / Python literal: a list, a dict of lists, or a lone string."""
    value = _from_literal_raw(text)
    return None if value is _NO_LITERAL else _flatten(value)


_NO_LITERAL = object()


def _from_literal_raw(text: str) -> object:
    if len(text) > _MAX_LITERAL:
        return _NO_LITERAL
    for loader in (json.loads, ast.literal_eval):
        try:
            return loader(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return _NO_LITERAL


def _flatten(value: object) -> list[str]:
    if isinstance(value, str):
        return _split(value)
    if isinstance(value, dict):
        return [s for v in value.values() for s in _flatten(v)]
    if isinstance(value, (list, tuple, set)):
        return [s for v in value for s in _flatten(v)]
    return []


def _from_segments(text: str) -> list[str] | None:
    """Items of every innermost ``[...]`` group (the answer's list inside prose), or None if none."""
    segments = _SEGMENT.findall(text)
    if not segments:
        return None
    items: list[str] = []
    for seg in segments:
        parsed = _from_literal(f"[{seg}]")
        items += parsed if parsed is not None else _split(seg)
    return items


def _after_colon(text: str) -> str:
    """'The emotional states are: happy, sad.' -> 'happy, sad.' (only for a one-line lead-in)."""
    head, sep, tail = text.partition(":")
    if sep and "\n" not in head.strip() and len(head.split()) <= 12 and tail.strip():
        return tail
    return text


def _split(text: str) -> list[str]:
    return _SEPARATORS.split(text)


def _clean_all(items: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        label = _clean(item)
        if label and label not in seen:
            seen[label] = None
    return list(seen)


def _clean(item: str) -> str:
    label = _PAREN.sub(" ", item).strip()
    for _ in range(3):  # bullets, quotes and brackets may nest: - "happy".
        label = _BULLET.sub("", label)
        label = label.strip().strip(_QUOTES + "[](){}<>").strip()
        label = label.rstrip(".!?:").strip()
    label = " ".join(label.lower().split())
    if not label or _NULL.match(label) or len(label.split()) > _MAX_WORDS:
        return ""
    if not any(ch.isalpha() for ch in label):
        return ""
    return label
