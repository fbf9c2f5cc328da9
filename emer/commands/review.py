"""``emer review``: the EMER-Fine review page over an EMER-Coarse output (see docs/review.md).

It checks everything before serving: the dataset holds EMER-Coarse, the reviewer name is valid, and
a non-loopback ``--host`` comes with a token (``--token`` or ``$EMER_REVIEW_TOKEN``); each failure
is one message and exit code 2. Decisions go to ``DATA/review/<reviewer>.jsonl``.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os

from emer.commands.flags import Parents
from pipelines.fine.review_auth import TOKEN_ENV, page_url

log = logging.getLogger(__name__)

DEFAULT_PORT = 8377


def register(sub: argparse._SubParsersAction, parents: Parents) -> None:
    p = sub.add_parser(
        "review",
        parents=parents.plain,
        help="review EMER-Coarse rows in the browser (accept, edit, reject) into EMER-Fine",
        description="Serve a small web page that shows one clip at a time with its subtitle, clues, "
        "merged description and OV labels; a reviewer accepts, edits or rejects it (keys a, s, r; "
        "j/k to move). Decisions are appended to DATA/review/<reviewer>.jsonl; EMER-Coarse is never "
        "written. Binds 127.0.0.1: reach it from your laptop with ssh -L 8377:127.0.0.1:8377 HOST.",
    )
    p.add_argument("--data", required=True, metavar="DIR", help="EMER-Coarse output folder or s3:// prefix")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1); any non-loopback address needs --token",
    )
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument(
        "--reviewer",
        default=None,
        help="your name in the review log: letters, digits, '.', '_', '-' (default: $USER)",
    )
    p.add_argument(
        "--token",
        default=None,
        help=f"secret every request must carry (default ${TOKEN_ENV}); open the page once as "
        "/?token=SECRET; required for a non-loopback --host",
    )
    p.add_argument(
        "--clips",
        default=None,
        metavar="DIR",
        help="the only folder (or s3:// prefix) clips are served from (default: the input folder "
        "that `emer annotate` recorded in DATA/manifest.json)",
    )
    p.set_defaults(func=_review)


def default_reviewer() -> str:
    """``$USER``, else the login name."""
    try:
        return os.environ.get("USER") or getpass.getuser()
    except OSError:  # no user name known at all: check_reviewer names the fix
        return ""


def _review(args: argparse.Namespace) -> int:
    import uvicorn  # heavy: uvicorn

    from pipelines.fine.review_app import create_app  # heavy: fastapi

    reviewer = args.reviewer or default_reviewer()
    token = args.token or os.environ.get(TOKEN_ENV, "")
    if not 0 < args.port < 65536:
        raise ValueError(f"--port {args.port}: must be between 1 and 65535")
    app = create_app(args.data, reviewer, token=token, host=args.host, clips=args.clips)
    where = page_url(args.host, args.port)
    print(
        f"emer review: {args.data} as {reviewer} on {where}" + (" (open it with ?token=…)" if token else "")
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
