"""What counts as a secret, in one place: variable names, key-shaped values, credentials in URLs.

Small on purpose; used wherever a value could end up in a log, a job's metadata or a config dump:

- ``is_secret_name(name)``: the variable's value must never be written anywhere (names with KEY,
  SECRET, TOKEN, PASSWORD, PASSWD or CREDENTIAL); such variables travel by name only;
- ``looks_like_key(value)``: the text contains something shaped like an API key or a private key
  (OpenAI/Anthropic ``sk-…``, Hugging Face ``hf_…``, AWS ``AKIA…``/``ASIA…``, GitHub ``ghp_…`` /
  ``github_pat_…``, a PEM private-key header), whether or not it is set in the environment;
- ``redact_url(url)``: the URL with its ``user:password@`` part replaced by ``***@`` and the value of
  every secret-named query (or fragment) parameter (``api_key``, ``token``, ``sig``, ``password``,
  ``X-Amz-Signature``, ``X-Amz-Credential``, … see ``is_secret_param``) replaced by ``***``;
  ``redact_text(text)`` does so for every URL inside a longer text (``--flag=URL``), and
  ``redact_tree(data)`` for every string of a dict/list (a config, a manifest);
  ``has_credentials(url)``: whether it has either;
- ``secret_problem(value)``: **the one check** of a value about to leave this machine (a job's runtime
  env, its command line): what makes it secret (a key-shaped string, a URL with credentials in its
  userinfo or query string), in words that never echo the value, or None; ``is_secret(name, value)``:
  a secret name or a secret value (such a variable travels by name only);
- ``env_name_problem(key, value)``: the one check of every ``*_env`` config field (the *name* of a
  variable, never a key: also a long random-looking run is refused there); its message never echoes
  the value.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "KEY_PATTERNS",
    "SECRET_NAME_RE",
    "env_name_problem",
    "has_credentials",
    "is_secret",
    "is_secret_name",
    "is_secret_param",
    "looks_like_key",
    "redact_text",
    "redact_tree",
    "redact_url",
    "secret_problem",
]

SECRET_NAME_RE = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # always fullmatch
_LONG_TOKEN_RE = re.compile(r"[A-Za-z0-9+_=-]{32,}")
# Query / fragment parameters whose value is a secret: an API key, a token, a password, a signature
# (S3 / GCS presigned URLs: X-Amz-Signature, X-Amz-Credential, X-Amz-Security-Token; Azure SAS: sig).
SECRET_PARAM_RE = re.compile(
    r"key|secret|token|passw|credential|signature|^(sig|pwd|pass|auth|authorization|access_code)$",
    re.IGNORECASE,
)
_URL_IN_TEXT_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
REDACTED = "***"

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


def is_secret_param(name: str) -> bool:
    """Whether a URL query or fragment parameter's value is a secret (``api_key``, ``sig``, …)."""
    return bool(SECRET_PARAM_RE.search(name.replace("-", "_")))


def _redact_params(params: str) -> tuple[str, list[str]]:
    """``a=1&api_key=x`` -> (``a=1&api_key=***``, [``api_key``]); other text is kept as written."""
    out, found = [], []
    for part in params.split("&"):
        name, eq, value = part.partition("=")
        if eq and value and is_secret_param(name):
            found.append(name)
            part = f"{name}={REDACTED}"
        out.append(part)
    return "&".join(out), found


def _split(url: str):
    try:
        parts = urlsplit(url)
    except ValueError:  # not a URL (e.g. an unbalanced "[")
        return None
    return parts if parts.scheme and (parts.netloc or parts.query) else None


def _url_secrets(url: str) -> tuple[str, list[str]]:
    """(``url`` redacted, what was secret in it: ``userinfo`` and the secret parameters' names)."""
    parts = _split(url)
    if parts is None:
        return url, []
    found: list[str] = []
    netloc = parts.netloc
    if "@" in netloc:
        netloc = REDACTED + "@" + netloc.rsplit("@", 1)[1]
        found.append("userinfo")
    query, in_query = _redact_params(parts.query)
    fragment, in_fragment = _redact_params(parts.fragment)
    found += in_query + in_fragment
    if not found:
        return url, []
    return urlunsplit(parts._replace(netloc=netloc, query=query, fragment=fragment)), found


def redact_url(url: str) -> str:
    """``url`` with any userinfo (``user:password@``, a token as user name) replaced by ``***@`` and
    the value of every secret query / fragment parameter (``?api_key=…``) by ``***``."""
    return _url_secrets(url)[0]


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted (``redact_url``); a text without URLs is unchanged."""
    if "://" not in text:
        return text
    return _URL_IN_TEXT_RE.sub(lambda m: redact_url(m.group(0)), text)


def redact_tree(value: Any) -> Any:
    """A copy of plain data (dicts, lists, strings, numbers) with every string ``redact_text``-ed."""
    if isinstance(value, dict):
        return {k: redact_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_tree(v) for v in value]
    return redact_text(value) if isinstance(value, str) else value


def has_credentials(url: str) -> bool:
    """Whether ``url`` carries a ``user[:password]@`` part or a secret query parameter."""
    return bool(url) and redact_text(url) != url


def secret_problem(value: str) -> str | None:
    """What makes ``value`` a secret, never echoing it, or None: the one check of every value that
    leaves this machine (a job's runtime env and command line)."""
    if not value:
        return None
    if looks_like_key(value):
        return "looks like an API key or private key"
    for match in _URL_IN_TEXT_RE.finditer(value):
        found = _url_secrets(match.group(0))[1]
        if "userinfo" in found:
            return "holds a URL with credentials in it (user:password@)"
        if found:
            return f"holds a URL with a secret in its query string ({', '.join(sorted(set(found)))}=…)"
    return None


def is_secret(name: str, value: str = "") -> bool:
    """Whether an environment variable must never be written anywhere (passed by name only): a secret
    name, or a secret value (``secret_problem``: e.g. an ``AWS_ENDPOINT_URL`` with credentials)."""
    return is_secret_name(name) or secret_problem(value) is not None


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
