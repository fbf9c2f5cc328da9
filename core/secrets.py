"""What counts as a secret, in one place: variable names, key-shaped values, credentials in URLs.

Small on purpose; used wherever a value could end up in a log, a job's metadata or a config dump:

- ``is_secret_name(name)``: the variable's value must never be written anywhere (names with KEY,
  SECRET, TOKEN, PASSWORD, PASSWD or CREDENTIAL); such variables travel by name only;
- ``looks_like_key(value)``: the text contains something shaped like an API key or a private key
  (OpenAI/Anthropic ``sk-…``, Hugging Face ``hf_…``, AWS ``AKIA…``/``ASIA…``, GitHub ``ghp_…`` /
  ``github_pat_…``, a PEM private-key header), whether or not it is set in the environment;
- ``redact_url(url)``: the URL with its ``user:password@`` part replaced by ``***@``;
  ``has_credentials(url)``: whether it has one;
- ``env_name_problem(key, value)``: the one check of every ``*_env`` config field (the *name* of a
  variable, never a key: also a long random-looking run is refused there); its message never echoes
  the value.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "KEY_PATTERNS",
    "SECRET_NAME_RE",
    "env_name_problem",
    "has_credentials",
    "is_secret_name",
    "looks_like_key",
    "redact_url",
]

SECRET_NAME_RE = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # always fullmatch
_LONG_TOKEN_RE = re.compile(r"[A-Za-z0-9+_=-]{32,}")

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


def has_credentials(url: str) -> bool:
    """Whether ``url`` carries a ``user[:password]@`` part."""
    return bool(url) and redact_url(url) != url


def env_name_problem(key: str, value: str) -> str | None:
    """The problem with ``value`` as the *name* of an environment variable, or None (empty is fine)."""
    if not value:
        return None
    if looks_like_key(value) or _looks_random(value):
        return (
            f"{key}: looks like a key itself, not the name of a variable holding one; put the key in "
            "an environment variable (e.g. export OPENAI_API_KEY=...) and set this to its name "
            "(the value is not shown)"
        )
    if not ENV_NAME_RE.fullmatch(value):
        return (
            f"{key}: must be the name of an environment variable, e.g. OPENAI_API_KEY "
            "(the key itself never goes in the config; the value is not shown)"
        )
    return None


def _looks_random(value: str) -> bool:
    """A long run mixing digits, lower and upper case: a key of unknown shape, not a variable name."""
    return any(
        all(re.search(c, run) for c in ("[0-9]", "[a-z]", "[A-Z]")) for run in _LONG_TOKEN_RE.findall(value)
    )
