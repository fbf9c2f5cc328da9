"""What counts as a secret, in one place: secret variable names, key-shaped values, URL credentials.

- ``is_secret_name(name)``: an environment variable whose value must never be written anywhere
  (passed by name only): names with KEY, SECRET, TOKEN, PASSWORD, CREDENTIAL.
- ``looks_like_key(value)``: a value shaped like an API key or token (OpenAI ``sk-``, Hugging Face
  ``hf_``, AWS ``AKIA``/``ASIA``, GitHub ``ghp_``/``github_pat_``, Slack ``xox?-``, or a long
  unbroken run mixing digits, lower and upper case), so a key pasted where a *name* belongs is refused.
- ``redact_url(url)``: the URL with its ``user:password@`` part replaced by ``***@``.
- ``env_name_problem(key, value)``: the one check of every ``*_env`` config field; its message never
  echoes the value.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

SECRET_NAME_RE = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # always fullmatch
KEY_RE = re.compile(
    r"(?:sk-[A-Za-z0-9_-]{16,}"
    r"|hf_[A-Za-z0-9]{20,}"
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}"
    r"|gh[pousr]_[A-Za-z0-9]{20,}"
    r"|github_pat_[A-Za-z0-9_]{20,}"
    r"|xox[abprs]-[A-Za-z0-9-]{10,})"
)
_LONG_TOKEN_RE = re.compile(r"[A-Za-z0-9+_=-]{32,}")


def is_secret_name(name: str) -> bool:
    """Whether environment variable ``name`` holds a secret (its value is never logged or sent)."""
    return bool(SECRET_NAME_RE.search(name))


def looks_like_key(value: str) -> bool:
    """Whether ``value`` contains something shaped like an API key or access token."""
    if KEY_RE.search(value):
        return True
    for run in _LONG_TOKEN_RE.findall(value):
        if all(re.search(c, run) for c in ("[0-9]", "[a-z]", "[A-Z]")):
            return True  # a long run mixing digits and both cases: a key, not a name or a word
    return False


def redact_url(url: str) -> str:
    """``url`` without credentials: ``http://user:pw@host/x`` -> ``http://***@host/x``."""
    if not url or "@" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"***@{host}"))


def has_credentials(url: str) -> bool:
    """Whether ``url`` carries a ``user[:password]@`` part."""
    return bool(url) and redact_url(url) != url


def env_name_problem(key: str, value: str) -> str | None:
    """The problem with ``value`` as the *name* of an environment variable, or None (empty is fine)."""
    if not value:
        return None
    if looks_like_key(value):
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
