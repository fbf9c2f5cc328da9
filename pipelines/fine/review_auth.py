"""Who may use the review page: the rules only (``review_app.guard`` applies them to requests).

The page binds 127.0.0.1 by default (reach it from elsewhere through port forwarding, see
docs/review.md). Any other address needs a token, and then every request must carry it: ``?token=``
on the first visit (answered with a cookie and a redirect that drops it from the address bar) or
the ``X-Emer-Token`` header. Without a token only loopback ``Host`` headers are served (no DNS
rebinding), and a POST from another origin is refused either way (no cross-site form posts)."""

from __future__ import annotations

import ipaddress
import logging
import secrets
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

TOKEN_ENV = "EMER_REVIEW_TOKEN"
COOKIE, HEADER = "emer_review_token", "x-emer-token"
MIN_TOKEN = 16
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is this machine only."""
    host = (host or "").strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str) -> None:
    """Refuse a non-loopback ``host`` without a token, and a token too short to guess."""
    if token and len(token) < MIN_TOKEN:
        raise ValueError(
            f"the review token has {len(token)} characters: use at least {MIN_TOKEN}, e.g. "
            "python -c 'import secrets; print(secrets.token_urlsafe())'"
        )
    if not is_loopback(host) and not token:
        raise ValueError(
            f"--host {host} is not a loopback address, so anyone who can reach it could change the "
            f"review: give --token SECRET (or set {TOKEN_ENV}), or keep the default 127.0.0.1 and "
            "reach it through port forwarding (ssh -L 8377:127.0.0.1:8377 HOST; see docs/review.md)"
        )


def same_token(given: str | None, token: str) -> bool:
    """Whether ``given`` is the token (constant-time)."""
    return bool(given) and secrets.compare_digest(given.encode(), token.encode())


def refusal(method: str, headers: dict[str, str], cookie: str | None, token: str) -> tuple[int, str] | None:
    """``(status, message)`` when a request may not be served, None when it may. ``headers`` are the
    request's (lower-case names), ``cookie`` the value of the token cookie."""
    host_header = headers.get("host") or ""
    try:
        host = urlsplit(f"//{host_header}").hostname or ""
    except ValueError:  # a malformed Host header ("[::1")
        host = ""
    if not token and host not in LOOPBACK_NAMES:
        return 403, f"Host {host!r} refused: this review page answers on 127.0.0.1 only"
    origin = headers.get("origin")
    if method == "POST" and origin and urlsplit(origin).netloc != host_header:
        return 403, f"a form posted from {origin} refused: decide on the review page itself"
    if token and not (same_token(headers.get(HEADER), token) or same_token(cookie, token)):
        return 401, (
            "this review page needs its token: open it once as /?token=TOKEN (the --token or "
            f"{TOKEN_ENV} given to emer review; a cookie keeps it) or send the X-Emer-Token header"
        )
    return None
