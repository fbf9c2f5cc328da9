"""What counts as a secret, in one place: variable names, key-shaped values, credentials in URLs.

Small on purpose; used wherever a value could end up in a log, a job's metadata or a config dump:

- ``is_secret_name(name)``: the variable's value must never be written anywhere (names with KEY,
  SECRET, TOKEN, PASSWORD, PASSWD or CREDENTIAL); such variables travel by name only;
- ``looks_like_key(value)``: the text contains something shaped like an API key or a private key
  (OpenAI/Anthropic ``sk-…``, Hugging Face ``hf_…``, AWS ``AKIA…``/``ASIA…``, GitHub ``ghp_…`` /
  ``github_pat_…``, a PEM private-key header), whether or not it is set in the environment;
- ``redact_url(url)``: the URL with its ``user:password@`` part replaced by ``***@``.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

__all__ = ["KEY_PATTERNS", "SECRET_NAME_RE", "is_secret_name", "looks_like_key", "redact_url"]

SECRET_NAME_RE = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)

_START = r"(?<![A-Za-z0-9])"  # a key starts a word: "mask-generation…" holds no "sk-" key
_UPPER, _DIGIT = r"(?=[A-Za-z0-9_-]*[A-Z])", r"(?=[A-Za-z0-9_-]*[0-9])"  # somewhere in the token
KEY_PATTERNS: dict[str, re.Pattern[str]] = {
    # OpenAI / Anthropic style: random, so with an upper-case letter and a digit
    # ("s3://b/sk-learn-results-2024" is a path, not a key)
    "sk-": re.compile(_START + r"sk-" + _UPPER + _DIGIT + r"[A-Za-z0-9_-]{16,}"),
    "hf_": re.compile(_START + r"hf_" + _UPPER + r"[A-Za-z0-9]{20,}"),
    "AWS access key id": re.compile(_START + r"(?:AKIA|ASIA)[0-9A-Z]{16}(?![0-9A-Z])"),
    "GitHub token": re.compile(_START + r"(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
}


def is_secret_name(name: str) -> bool:
    """Whether an environment variable's value must never be written anywhere (passed by name only)."""
    return bool(SECRET_NAME_RE.search(name))


def looks_like_key(value: str) -> bool:
    """Whether ``value`` contains a key-shaped string (see ``KEY_PATTERNS``); never prints it."""
    return any(p.search(value) for p in KEY_PATTERNS.values())


def redact_url(url: str) -> str:
    """``url`` with any userinfo (``user:password@``, a token as user name) replaced by ``***@``."""
    try:
        parts = urlsplit(url)
    except ValueError:  # not a URL (e.g. an unbalanced "[")
        return url
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc="***@" + host))
