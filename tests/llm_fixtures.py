"""Helpers for the LLM tests: media samples and a scripted OpenAI-compatible HTTP server.

Imported by the test modules of core/llm and pipelines (not a conftest: a plain helper module).
The server listens on 127.0.0.1 with a free port and answers ``POST /v1/chat/completions``
according to markers in the prompt text, counted per distinct prompt:

- ``[[status:429x2]]``: answer HTTP 429 to the first 2 attempts (``x`` omitted: always);
- ``[[slow:1.5x1]]``: sleep 1.5 s before answering the first attempt;
- ``[[garbage x1]]``: HTTP 200 with a body that is not JSON;
- ``[[nochoices x1]]``: HTTP 200 with JSON lacking ``choices``;
- ``[[wait:120x1]]``: HTTP 429 with ``Retry-After: 120`` to the first attempt;
- ``[[echokey]]``: HTTP 401 whose error message repeats the Authorization header (a leaky server);
- otherwise a good completion whose text is ``echo images=<n> audio=<n>: <prompt head>``.
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

MARKER = re.compile(r"\[\[(status|slow|garbage|nochoices|echokey|wait)(?::([\d.]+))?(?:\s*x(\d+))?\]\]")


def jpeg_frames(n: int, size: int = 224, seed: int = 0) -> list[bytes]:
    """``n`` real JPEG frames of random noise plus a moving square."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        img = (rng.random((size, size, 3)) * 80).astype(np.uint8)
        x = (k * 20) % (size - 40)
        img[60:100, x : x + 40] = 230
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=85)
        frames.append(buf.getvalue())
    return frames


def tone(seconds: float, hz: float = 220.0, seed: int = 0) -> np.ndarray:
    """A 16 kHz mono float32 tone with a little noise."""
    t = np.arange(int(16000 * seconds)) / 16000
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(2 * np.pi * hz * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


class FakeOpenAI:
    """Records every call as ``{"headers": {lower-cased name: value}, "body": {...}, "prompt": str}``."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.attempts: dict[str, int] = {}
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.inflight = 0
        self.require_key = ""  # set: any other Authorization answers HTTP 401
        self.max_inflight = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def calls_for(self, marker: str) -> list[dict]:
        return [c for c in self.calls if marker in c["prompt"]]

    def answer(self, body: dict, auth: str = "") -> tuple[int, dict, bytes, float]:
        prompt, images, audio = _prompt_parts(body)
        with self.lock:
            n = self.attempts[prompt] = self.attempts.get(prompt, 0) + 1
        if self.require_key and auth != f"Bearer {self.require_key}":
            payload = json.dumps(
                {"error": {"message": "Incorrect API key provided", "type": "auth"}}
            ).encode()
            return 401, {"Content-Type": "application/json"}, payload, 0.0
        m = MARKER.search(prompt)
        kind, arg, times = (m.group(1), m.group(2), m.group(3)) if m else (None, None, None)
        active = kind is not None and (times is None or n <= int(times))
        if active and kind == "status":
            payload = json.dumps({"error": {"message": f"scripted {arg}", "type": "test"}}).encode()
            headers = {"Content-Type": "application/json"} | ({"Retry-After": "0"} if arg == "429" else {})
            return int(arg), headers, payload, 0.0
        if active and kind == "wait":
            payload = json.dumps({"error": {"message": "slow down", "type": "rate_limit"}}).encode()
            return 429, {"Content-Type": "application/json", "Retry-After": arg}, payload, 0.0
        if active and kind == "echokey":
            payload = json.dumps({"error": {"message": f"bad credentials: {auth}", "type": "auth"}}).encode()
            return 401, {"Content-Type": "application/json"}, payload, 0.0
        if active and kind == "garbage":
            return 200, {"Content-Type": "application/json"}, b"<html>not json", 0.0
        if active and kind == "nochoices":
            return 200, {"Content-Type": "application/json"}, b'{"id": "x", "object": "chat.completion"}', 0.0
        delay = float(arg) if active and kind == "slow" else 0.0
        text = f"echo images={images} audio={audio}: {prompt[:40]}"
        payload = json.dumps(
            {
                "id": "cmpl-1",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", "?"),
                "choices": [
                    {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
                ],
                "usage": {
                    "prompt_tokens": len(prompt.split()),
                    "completion_tokens": len(text.split()),
                    "total_tokens": len(prompt.split()) + len(text.split()),
                },
            }
        ).encode()
        return 200, {"Content-Type": "application/json"}, payload, delay


def _prompt_parts(body: dict) -> tuple[str, int, int]:
    content = body.get("messages", [{}])[-1].get("content", "")
    if isinstance(content, str):
        return content, 0, 0
    text = " ".join(p.get("text", "") for p in content if p.get("type") == "text")
    images = sum(p.get("type") == "image_url" for p in content)
    audio = sum(p.get("type") == "input_audio" for p in content)
    return text, images, audio


def _handler(fake: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = json.loads(raw or b"{}")
            with fake.lock:
                fake.calls.append(
                    {
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                        "prompt": _prompt_parts(body)[0],
                        "path": self.path,
                    }
                )
                fake.inflight += 1
                fake.max_inflight = max(fake.max_inflight, fake.inflight)
            status, headers, payload, delay = fake.answer(body, self.headers.get("Authorization", ""))
            time.sleep(delay)
            with fake.lock:
                fake.inflight -= 1
            try:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client timed out and hung up

        def log_message(self, *args) -> None:
            pass

    return Handler


@contextmanager
def fake_openai_server(fake: FakeOpenAI | None = None):
    """Start ``fake`` (default: a new ``FakeOpenAI``) on 127.0.0.1:<free port>; stop it on exit."""
    fake = fake if fake is not None else FakeOpenAI()
    fake.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.server.daemon_threads = True
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()


_TINY: dict[str, str] = {}


def tiny_model(role: str) -> str:
    """Path of the tiny ``role`` checkpoint (text / audio / video), built once per test process."""
    if role not in _TINY:
        import atexit
        import shutil
        import tempfile

        from core.llm import tiny

        if "_root" not in _TINY:
            _TINY["_root"] = tempfile.mkdtemp(prefix="emer-tiny-llm-")
            atexit.register(shutil.rmtree, _TINY["_root"], True)
        _TINY[role] = tiny.BUILDERS[role](f"{_TINY['_root']}/{role}")
    return _TINY[role]
