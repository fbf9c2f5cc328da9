"""``emer review``'s web page: one EMER-Coarse row at a time, decided into the review log.

Routes: ``/`` (the first row in queue order this reviewer has not decided), ``/row/{name}`` (the
clip, its texts and the decision form), ``POST /row/{name}`` (accept, edit or reject, appended with
``reviewlog.append`` against the base hash the page was rendered with: a row changed meanwhile by
another reviewer is a 409 showing their change), ``/clip/{name}`` (the clip through core.storage,
Range requests served), ``/stats`` (decisions per reviewer and their agreement) and ``/static/``.
Pages are rendered on the server (Jinja2 templates in ``templates/``); ``static/review.js`` adds
the keyboard shortcuts. EMER-Coarse is never written.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from core.schema import CLIP, DESCRIPTION_EN, OV_LABELS
from pipelines.fine import reviewlog
from pipelines.fine.review_auth import COOKIE, check_bind, refusal, same_token
from pipelines.fine.review_data import Dataset, Snapshot, load_dataset, make_decision
from pipelines.fine.review_media import clip_response, clip_size

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
QUEUE_WINDOW = 12  # rows listed either side of the open one in the queue panel


class ReviewPage:
    """The routes of one review page: one dataset, one reviewer."""

    def __init__(self, dataset: Dataset, reviewer: str) -> None:
        self.ds, self.reviewer = dataset, reviewer
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
            "clip_ok": clip_size(row.get(CLIP) or "") is not None,
            "quality": self.ds.quality.get(name),
            "has_quality": bool(self.ds.quality),
            "base": reviewlog.content_hash(fields),
            "form": {**form, **extra.pop("form", {})},
            "mine": mine.get(name),
            "latest": snap.newest.get(name),
            "prev": prev,
            "next": nxt,
            "position": i + 1,
            "queue": [(n, self.ds.flagged(n), mine.get(n)) for n in window],
        }
        return self.render(request, "row.html", snap, status, **ctx, **extra)

    def missing(self, request: Request, name: str, snap: Snapshot) -> Response:
        msg = f"no row named {name!r} in {self.ds.data}: pick one from the queue"
        return self.render(request, "message.html", snap, 404, title="No such row", message=msg)

    async def decide(self, request: Request, name: str) -> Response:
        """Append the submitted decision; 409 with the other reviewer's change on a conflict."""
        form = dict(parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True))
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
        return clip_response(uri, request.headers.get("range"))

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


def guard(token: str) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    """The HTTP middleware of ``review_auth``'s rules; a valid ``?token=`` sets the cookie and
    redirects to the same address without it."""

    async def middleware(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if token and same_token(request.query_params.get("token"), token):
            url = request.url.remove_query_params("token")
            resp = RedirectResponse(url.path + (f"?{url.query}" if url.query else ""), status_code=303)
            resp.set_cookie(COOKIE, token, httponly=True, samesite="strict")
            return resp
        refused = refusal(request.method, dict(request.headers), request.cookies.get(COOKIE), token)
        if refused:
            return PlainTextResponse(refused[1], status_code=refused[0])
        return await call_next(request)

    return middleware


def create_app(data: str, reviewer: str, token: str = "", host: str = "127.0.0.1") -> FastAPI:
    """The review page for ``data`` (local or s3://) as ``reviewer``; errors (no EMER-Coarse, a bad
    reviewer name, a non-loopback host without a token) are raised before anything is served."""
    reviewlog.check_reviewer(reviewer)
    check_bind(host, token)
    page = ReviewPage(load_dataset(data), reviewer)
    app = FastAPI(title="emer review", docs_url=None, redoc_url=None, openapi_url=None)
    app.middleware("http")(guard(token))
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.add_api_route("/", page.index, methods=["GET"], include_in_schema=False)
    app.add_api_route("/row/{name}", page.row, methods=["GET"], include_in_schema=False)
    app.add_api_route("/row/{name}", page.decide, methods=["POST"], include_in_schema=False)
    app.add_api_route("/clip/{name}", page.clip, methods=["GET"], include_in_schema=False)
    app.add_api_route("/stats", page.stats, methods=["GET"], include_in_schema=False)
    return app
