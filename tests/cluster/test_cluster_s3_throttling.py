"""S3 throttling: writes through ``core.storage`` survive ``503 SlowDown`` answers.

A small proxy in front of the moto server answers the first PUT of every key with S3's SlowDown
error and forwards everything else; pyarrow (shards, markers) and boto3 clients must retry and land
the object exactly as written.
"""

from __future__ import annotations

import http.client
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import pytest

from core import storage

SLOWDOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message><RequestId>1</RequestId></Error>"
)


class ThrottlingProxy:
    """Forwards to ``upstream``; the first ``throttle`` PUTs and POSTs of each object path (plain and
    multipart uploads alike) get 503 SlowDown."""

    def __init__(self, upstream: str, throttle: int = 1) -> None:
        self.upstream = urlparse(upstream)
        self.throttle = throttle
        self.puts: Counter[str] = Counter()
        self.throttled: Counter[str] = Counter()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # answers "Expect: 100-continue" at once

            def log_message(self, *args) -> None:
                pass

            def _body(self) -> bytes:
                if "chunked" not in self.headers.get("Transfer-Encoding", "").lower():
                    return self.rfile.read(int(self.headers.get("Content-Length") or 0))
                out = b""
                while True:  # de-chunk: moto gets a plain body with a Content-Length
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return out
                    out += self.rfile.read(size)
                    self.rfile.readline()

            def _relay(self) -> None:
                body = self._body()
                headers = {k: v for k, v in self.headers.items() if k.lower() != "transfer-encoding"}
                headers["Content-Length"] = str(len(body))
                key = f"{self.command} {self.path.split('?')[0]}"
                if self.command in ("PUT", "POST"):
                    proxy.puts[key] += 1
                    if proxy.puts[key] <= proxy.throttle:
                        proxy.throttled[key] += 1
                        self.send_response(503)
                        self.send_header("Content-Type", "application/xml")
                        self.send_header("Content-Length", str(len(SLOWDOWN)))
                        self.end_headers()
                        self.wfile.write(SLOWDOWN)
                        return
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=30)
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for key, value in resp.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                length = resp.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def throttled_s3(s3, monkeypatch):
    proxy = ThrottlingProxy(s3.endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    monkeypatch.setattr(storage, "_active", storage.StorageConfig(retries=5))
    yield proxy
    proxy.close()


@pytest.mark.timeout(60)
def test_storage_writes_retry_slowdown(s3, throttled_s3):
    import pyarrow as pa

    base = s3.uri("throttled")
    storage.write_bytes(storage.join(base, "a", "marker.json"), b'{"done": true}')
    table = pa.table({"name": ["s1", "s2"], "x": [1, 2]})
    storage.write_table(table, storage.join(base, "b", "part-0001.parquet"))
    storage.boto3_client().put_object(Bucket=s3.bucket, Key="throttled/c/raw.bin", Body=b"raw")

    for name in ("a/marker.json", "b/part-0001.parquet", "c/raw.bin"):  # each write met a SlowDown
        assert any(k.endswith(f"/throttled/{name}") for k in throttled_s3.throttled), throttled_s3.puts
    assert all(throttled_s3.puts[k] >= 2 for k in throttled_s3.throttled)  # and was retried
    assert storage.read_bytes(storage.join(base, "a", "marker.json")) == b'{"done": true}'
    assert storage.read_table(storage.join(base, "b", "part-0001.parquet")).equals(table)
    assert storage.read_bytes(storage.join(base, "c", "raw.bin")) == b"raw"
