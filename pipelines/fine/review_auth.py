"""Who may use the review page: the rules only (``review_app.guard`` applies them to requests).

The page binds 127.0.0.1 by default (reach it from elsewhere through port forwarding, see
docs/review.md). Any other address needs a token, and then every request must carry it: ``?token=``
on the first visit (answered with a cookie and a redirect that drops it from the address bar) or
the ``X-Emer-Token`` header. Without a token only loopback ``Host`` headers are served (``localhost``,
``127.0.0.1``, ``[::1]`` and the loopback address bound, e.g. ``127.0.0.2``: no DNS rebinding).

A POST from another site is refused either way (no cross-site form posts): its ``Origin`` and its
``Referer``, each when present, must name this page's host, and ``Sec-Fetch-Site``, when present,
must be ``same-origin`` or ``none``. Browsers send ``Origin`` with every form POST; a POST with
neither ``Origin`` nor ``Referer`` comes from a script (curl, a test client) and is served, since
without a token the page answers loopback only and with one the script must carry it."""

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


def page_url(host: str, port: int) -> str:
    """The address to open for a page bound to ``host``: ``localhost`` for the default 127.0.0.1,
    else the address bound (an IPv6 one in brackets)."""
    host = (host or "").strip("[]")
    if host in ("127.0.0.1", "localhost"):
        host = "localhost"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/"


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


def hosts_served(bound: str) -> tuple[str, ...]:
    """The ``Host`` names a page bound to ``bound`` answers without a token: the loopback names and
    ``bound`` itself when it is a loopback address (``127.0.0.2``)."""
    bound = (bound or "").strip("[]").lower()
    return LOOPBACK_NAMES + ((bound,) if is_loopback(bound) and bound not in LOOPBACK_NAMES else ())


def _netloc(url: str) -> str:
    try:
        return urlsplit(url).netloc
    except ValueError:  # "http://[::1" and the like
        return ""


def cross_site(headers: dict[str, str]) -> str | None:
    """Why a POST looks sent from another site (None: it does not)."""
    site = headers.get("sec-fetch-site")
    if site and site not in ("same-origin", "none"):
        return (
            f"a form posted from another site refused (Sec-Fetch-Site: {site[:40]}): "
            "decide on the review page itself"
        )
    for name in ("origin", "referer"):
        value = headers.get(name)
        if value is not None and _netloc(value) != (headers.get("host") or ""):
            return f"a form posted from {value[:200]} ({name}) refused: decide on the review page itself"
    return None


def refusal(
    method: str,
    headers: dict[str, str],
    cookie: str | None,
    token: str,
    hosts: tuple[str, ...] = LOOPBACK_NAMES,
) -> tuple[int, str] | None:
    """``(status, message)`` when a request may not be served, None when it may. ``headers`` are the
    request's (lower-case names), ``cookie`` the value of the token cookie, ``hosts`` the ``Host``
    names served without a token (``hosts_served``)."""
    host_header = headers.get("host") or ""
    try:
        host = urlsplit(f"//{host_header}").hostname or ""
    except ValueError:  # a malformed Host header ("[::1")
        host = ""
    if not token and host not in hosts:
        return 403, f"Host {host!r} refused: this review page answers on {', '.join(hosts)} only"
    why = cross_site(headers) if method == "POST" else None
    if why:
        return 403, why
    if token and not (same_token(headers.get(HEADER), token) or same_token(cookie, token)):
        return 401, (
            "this review page needs its token: open it once as /?token=TOKEN (the --token or "
            f"{TOKEN_ENV} given to emer review; a cookie keeps it) or send the X-Emer-Token header"
        )
    return None
