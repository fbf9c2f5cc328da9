"""``emer review``'s web page: one EMER-Coarse row at a time, decided into the review log.

Routes: ``/`` (the first row in queue order this reviewer has not decided), ``/row/{name}`` (the
clip, its texts and the decision form), ``POST /row/{name}`` (accept, edit or reject, appended with
``reviewlog.append`` against the base hash the page was rendered with: a row changed meanwhile by
another reviewer is a 409 showing their change), ``/clip/{name}`` (the clip through core.storage,
Range requests served, only from the dataset's clip folder: ``review_media.clip_refusal``),
``/stats`` (decisions per reviewer and their agreement) and ``/static/``. A POST body is read up to
``MAX_BODY`` bytes (413 past it, never read whole), must be UTF-8 (else 400) and each field within
``reviewlog.MAX_CHARS`` (else 400 naming the field).
Pages are rendered on the server (Jinja2 templates in ``templates/``); ``static/review.js`` adds
the keyboard shortcuts. EMER-Coarse is never written.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from core.schema import CLIP, DESCRIPTION_EN, OV_LABELS
from pipelines.fine import reviewlog
from pipelines.fine.review_auth import COOKIE, check_bind, hosts_served, refusal, same_token
from pipelines.fine.review_data import Dataset, Snapshot, load_dataset, make_decision
from pipelines.fine.review_media import clip_folder, clip_refusal, clip_response, clip_size

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
QUEUE_WINDOW = 12  # rows listed either side of the open one in the queue panel
MAX_BODY = 256 * 1024  # a decision's form: the MAX_CHARS fields, percent-encoded, fit many times over
MAX_FIELDS = 16


class BadForm(ValueError):
    """A POST body that cannot be a decision form; ``status`` is the HTTP answer (400 or 413)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def too_large(declared: str | None) -> bool:
    """Whether a ``Content-Length`` header announces a body over ``MAX_BODY``."""
    return bool(declared and declared.strip().isdigit() and int(declared) > MAX_BODY)


async def read_form(chunks: AsyncIterator[bytes], declared: str | None) -> dict[str, str]:
    """The fields of a form body read from ``chunks`` (stops past ``MAX_BODY``: 413), strict UTF-8
    (400 otherwise)."""
    if too_large(declared):
        raise BadForm(413, f"the form is over {MAX_BODY} bytes: shorten the description or reason")
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > MAX_BODY:
            raise BadForm(413, f"the form is over {MAX_BODY} bytes: shorten the description or reason")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise BadForm(400, "the form is not UTF-8 text: send it as UTF-8") from None
    if len(pairs) > MAX_FIELDS:
        raise BadForm(400, f"the form has {len(pairs)} fields: a decision has at most {MAX_FIELDS}")
    return dict(pairs)


class ReviewPage:
    """The routes of one review page: one dataset, one reviewer."""

    def __init__(self, dataset: Dataset, reviewer: str, clips: str | None) -> None:
        self.ds, self.reviewer, self.clips = dataset, reviewer, clips
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))

    def render(
        self, request: Request, template: str, snap: Snapshot, status: int = 200, **ctx: Any
    ) -> Response:
        """A page with the shared header: progress, agreement and the log's problems."""
        mine = snap.mine(self.reviewer)
        pairs = [p for p in snap.pairs() if p["rows"]]
        header = {
            "data": self.ds.data,
            "reviewer": self.reviewer,
            "reviewed": len(set(mine) & set(self.ds.rows)),
            "total": len(self.ds.rows),
            "agreement": pairs[0] if pairs else None,
            "problems": snap.problems,
        }
        return self.templates.TemplateResponse(request, template, {**header, **ctx}, status_code=status)

    def index(self, request: Request) -> Response:
        decided = set(Snapshot.read(self.ds.data).mine(self.reviewer))
        return RedirectResponse(f"/row/{quote(self.ds.next_open(None, decided))}", status_code=303)

    def row(self, request: Request, name: str) -> Response:
        return self.show(request, name, Snapshot.read(self.ds.data))

    def show(self, request: Request, name: str, snap: Snapshot, status: int = 200, **extra: Any) -> Response:
        """The row page; ``extra`` may carry an ``error`` and the submitted ``form`` to keep."""
        if name not in self.ds.rows:
            return self.missing(request, name, snap)
        row, mine = self.ds.rows[name], snap.mine(self.reviewer)
        fields = reviewlog.current(row, snap.newest.get(name))
        prev, nxt = self.ds.neighbours(name)
        i = self.ds.queue.index(name)
        window = self.ds.queue[max(0, i - QUEUE_WINDOW) : i + QUEUE_WINDOW + 1]
        form = {"description": fields[DESCRIPTION_EN], "labels": ", ".join(fields[OV_LABELS]), "reason": ""}
        ctx = {
            "name": name,
            "row": row,
            "clip_problem": self.clip_problem(row.get(CLIP) or ""),
            "quality": self.ds.quality.get(name),
            "has_quality": bool(self.ds.quality),
            "base": reviewlog.state_hash(row, snap.newest.get(name)),
            "form": {**form, **extra.pop("form", {})},
            "mine": mine.get(name),
            "latest": snap.newest.get(name),
            "prev": prev,
            "next": nxt,
            "position": i + 1,
            "queue": [(n, self.ds.flagged(n), mine.get(n)) for n in window],
        }
        return self.render(request, "row.html", snap, status, **ctx, **extra)

    def clip_problem(self, uri: str) -> str:
        """Why the page shows no player for the clip at ``uri`` (empty: it plays)."""
        if not uri:
            return "clip no longer exists: (no clip URI in the row)"
        refused = clip_refusal(uri, self.clips)
        if refused:
            return refused
        return "" if clip_size(uri) is not None else f"clip no longer exists: {uri}"

    def missing(self, request: Request, name: str, snap: Snapshot) -> Response:
        msg = f"no row named {name!r} in {self.ds.data}: pick one from the queue"
        return self.render(request, "message.html", snap, 404, title="No such row", message=msg)

    async def decide(self, request: Request, name: str) -> Response:
        """Append the submitted decision; 409 with the other reviewer's change on a conflict."""
        try:
            form = await read_form(request.stream(), request.headers.get("content-length"))
        except BadForm as err:
            return PlainTextResponse(str(err), status_code=err.status)
        snap = Snapshot.read(self.ds.data)
        if name not in self.ds.rows:
            return self.missing(request, name, snap)
        row = self.ds.rows[name]
        before = reviewlog.current(row, snap.newest.get(name))
        kept = {"description": form.get(DESCRIPTION_EN, ""), "labels": form.get(OV_LABELS, "")}
        kept["reason"] = form.get("reason", "")
        try:
            decision = make_decision(self.reviewer, name, before, form, form.get("base", ""))
            stamped = reviewlog.append(self.ds.data, decision, row)
        except reviewlog.Conflict as err:
            log.info("review: %s: conflict for %s: %s", name, self.reviewer, err)
            ctx = {"name": name, "message": str(err), "theirs": err.theirs, "yours": kept}
            return self.render(request, "conflict.html", snap, 409, **ctx)
        except ValueError as err:
            return self.show(request, name, snap, 400, error=str(err), form=kept)
        log.info("review: %s %s %s", self.reviewer, stamped.action, name)
        decided = set(Snapshot.read(self.ds.data).mine(self.reviewer))
        return RedirectResponse(f"/row/{quote(self.ds.next_open(name, decided))}", status_code=303)

    def clip(self, request: Request, name: str) -> Response:
        uri = (self.ds.rows.get(name) or {}).get(CLIP) or ""
        return clip_response(uri, request.headers.get("range"), self.clips)

    def stats(self, request: Request) -> Response:
        snap = Snapshot.read(self.ds.data)
        counts = {
            who: {a: sum(d.action == a for d in snap.mine(who).values()) for a in reviewlog.ACTIONS}
            for who in sorted(snap.logs)
        }
        flagged = sum(map(self.ds.flagged, self.ds.rows))
        return self.render(
            request,
            "stats.html",
            snap,
            counts=counts,
            pairs=snap.pairs(),
            flagged=flagged,
            has_quality=bool(self.ds.quality),
        )


def guard(
    token: str, host: str = "127.0.0.1"
) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    """The HTTP middleware of ``review_auth``'s rules for a page bound to ``host``; a valid
    ``?token=`` sets the cookie and redirects to the same address without it; a body announced over
    ``MAX_BODY`` is a 413 before anything is read."""
    hosts = hosts_served(host)

    async def middleware(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if token and same_token(request.query_params.get("token"), token):
            url = request.url.remove_query_params("token")
            resp = RedirectResponse(url.path + (f"?{url.query}" if url.query else ""), status_code=303)
            resp.set_cookie(COOKIE, token, httponly=True, samesite="strict")
            return resp
        refused = refusal(request.method, dict(request.headers), request.cookies.get(COOKIE), token, hosts)
        if refused:
            return PlainTextResponse(refused[1], status_code=refused[0])
        if too_large(request.headers.get("content-length")):
            return PlainTextResponse(f"the request body is over {MAX_BODY} bytes", status_code=413)
        return await call_next(request)

    return middleware


def create_app(
    data: str, reviewer: str, token: str = "", host: str = "127.0.0.1", clips: str | None = None
) -> FastAPI:
    """The review page for ``data`` (local or s3://) as ``reviewer``, serving clips from ``clips``
    (default: the input folder in ``DATA/manifest.json``); errors (no EMER-Coarse, a bad reviewer
    name, a non-loopback host without a token) are raised before anything is served."""
    reviewlog.check_reviewer(reviewer)
    check_bind(host, token)
    folder = clips or clip_folder(data)
    page = ReviewPage(load_dataset(data), reviewer, folder)
    if folder is None:
        log.warning("review: %s names no clip folder (manifest.json input); no clips are served", data)
    app = FastAPI(title="emer review", docs_url=None, redoc_url=None, openapi_url=None)
    app.middleware("http")(guard(token, host))
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.add_api_route("/", page.index, methods=["GET"], include_in_schema=False)
    app.add_api_route("/row/{name}", page.row, methods=["GET"], include_in_schema=False)
    app.add_api_route("/row/{name}", page.decide, methods=["POST"], include_in_schema=False)
    app.add_api_route("/clip/{name}", page.clip, methods=["GET"], include_in_schema=False)
    app.add_api_route("/stats", page.stats, methods=["GET"], include_in_schema=False)
    return app
