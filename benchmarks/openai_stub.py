"""A stand-in model server for benchmarks: OpenAI-compatible ``POST /v1/chat/completions`` answered
after a fixed service time, at any concurrency (one thread per connection, HTTP/1.1 keep-alive).

It runs in its own process (``stub_server()`` starts it), so its request handling does not share a
GIL with the driver. ``GET /stats`` gives what it served since the last ``POST /reset``: requests,
the time from the first request's arrival to the last answer (``span_s``, the busy span seen by
the model, which excludes client start-up) and the most requests in flight at once.
The answer text is ``stub: images=<n> audio=<n>`` (what the request carried).

    python benchmarks/openai_stub.py --service-ms 200   # prints "port <n>", serves until killed
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Stats:
    """What the server did since the last reset (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.requests, self.inflight, self.max_inflight = 0, 0, 0
        self.first_start: float | None = None
        self.last_end: float | None = None

    def begin(self) -> None:
        with self.lock:
            self.requests += 1
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
            self.first_start = self.first_start or time.monotonic()

    def end(self) -> None:
        with self.lock:
            self.inflight -= 1
            self.last_end = time.monotonic()

    def as_dict(self) -> dict:
        with self.lock:
            span = (self.last_end - self.first_start) if self.first_start and self.last_end else 0.0
            return {"requests": self.requests, "span_s": span, "max_inflight": self.max_inflight}


def completion(body: dict, text: str) -> bytes:
    return json.dumps(
        {
            "id": "stub-1",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model", "stub"),
            "choices": [
                {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4},
        }
    ).encode()


def handler(stats: Stats, service_s: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the openai client reuses its connections
        disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

        def _send(self, payload: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self._send(json.dumps(stats.as_dict()).encode())

        def do_POST(self) -> None:  # noqa: N802
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path == "/reset":
                stats.reset()
                return self._send(b"{}")
            stats.begin()
            body = json.loads(raw or b"{}")
            parts = body.get("messages", [{}])[-1].get("content", "")
            parts = parts if isinstance(parts, list) else []
            images = sum(p.get("type") == "image_url" for p in parts)
            audio = sum(p.get("type") == "input_audio" for p in parts)
            time.sleep(service_s)
            try:
                self._send(completion(body, f"stub: images={images} audio={audio}"))
            finally:
                stats.end()

        def log_message(self, *args) -> None:
            pass

    return Handler


def serve(service_ms: float, port: int = 0) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", port), handler(Stats(), service_ms / 1000))
    server.daemon_threads = True
    server.request_queue_size = 256
    print(f"port {server.server_address[1]}", flush=True)
    server.serve_forever()


class StubClient:
    """The driver's handle on a running stub: its ``/v1`` URL, ``reset()`` and ``stats()``."""

    def __init__(self, port: int) -> None:
        self.root = f"http://127.0.0.1:{port}"
        self.url = f"{self.root}/v1"

    def reset(self) -> None:
        urllib.request.urlopen(urllib.request.Request(f"{self.root}/reset", b"", method="POST")).read()

    def stats(self) -> dict:
        return json.loads(urllib.request.urlopen(f"{self.root}/stats").read())


@contextmanager
def stub_server(service_ms: float) -> Iterator[StubClient]:
    """Run the stub in a child process on a free port; stop it on exit."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--service-ms", str(service_ms)], stdout=subprocess.PIPE, text=True
    )
    try:
        line = proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "port":
            raise RuntimeError(f"the stub server did not start (said {line!r})")
        yield StubClient(int(line[1]))
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--service-ms", type=float, default=200.0, help="service time of every request")
    ap.add_argument("--port", type=int, default=0, help="0: a free port")
    args = ap.parse_args()
    serve(args.service_ms, args.port)


if __name__ == "__main__":
    main()
