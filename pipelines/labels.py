"""Parse an LLM's answer to the OV-extraction prompt into a clean list of emotion labels.

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
_TRANSLATE = str.maketrans({
    "【": "[", "】": "]", "〔": "[", "〕": "]", "〖": "[", "〗": "]", "［": "[", "］": "]",
    "，": ",", "、": ",", "﹐": ",", "；": ";", "﹔": ";", "：": ":",
    "“": '"', "”": '"', "„": '"', "‟": '"', "«": '"', "»": '"', "「": '"', "」": '"', "『": '"', "』": '"',
    "‘": "'", "’": "'", "‚": "'", "‛": "'", "‹": "'", "›": "'", "`": "'", "´": "'",
    "。": ".", "！": "!", "？": "?", "（": "(", "）": ")",
})
_QUOTES = "\"'"
_SEPARATORS = re.compile(r"[,;\n|]+")
_BULLET = re.compile(r"^\s*(?:[-*•·●▪◦‣+>]+|\(?\d{1,3}[.)](?!\d)|\(\d{1,3}\)|[a-z][.)]\s)\s*", re.I)
_FENCE = re.compile(r"```[a-zA-Z]*")
_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")
_NULL = re.compile(
    r"^(?:none|null|nil|n/?a|nothing|empty(?: list)?|unknown|no(?:ne)? (?:clear |clearly identifiable |"
    r"obvious |specific )?(?:emotions?|emotional (?:states?|categories)|labels?)(?: (?:identified|found|"
    r"detected))?|no|无|没有|空|空列表|无明显情绪)$")
_PAREN = re.compile(r"\([^()]*\)")
_MAX_WORDS = 4  # a longer item is prose, not a label
_MAX_LITERAL = 20000  # longer answers skip the literal readers


def parse_ov_labels(text: str | None) -> list[str]:
    """Emotion labels in ``text`` (an LLM's list answer): lower-cased, unique, in first-seen order."""
    if not text or not isinstance(text, str):
        return []
    norm = _normalize(text)
    items = _from_literal(norm)
    if items is None:
        items = _from_segments(norm)
    if items is None:
        items = _split(_after_colon(norm))
    return _clean_all(items)


def _normalize(text: str) -> str:
    text = _FENCE.sub("\n", _THINK.sub(" ", text))
    # translate before NFKC too: NFKC turns some quote marks (´) into combining sequences
    return unicodedata.normalize("NFKC", text.translate(_TRANSLATE)).translate(_TRANSLATE).strip()


def _from_literal(text: str) -> list[str] | None:
    """The whole answer as a JSON / Python literal: a list, a dict of lists, or a lone string."""
    if len(text) > _MAX_LITERAL:
        return None
    for loader in (json.loads, ast.literal_eval):
        try:
            value = loader(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        return _flatten(value)
    return None


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
