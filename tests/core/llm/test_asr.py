"""The ``asr`` kind of the LLM layer: a tiny random-weight Whisper in-process, and an OpenAI-compatible
``/v1/audio/transcriptions`` endpoint (a small real HTTP server on 127.0.0.1)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from llm_fixtures import tone

from core.llm import LLMConfig, LLMRequest, create_backend
from core.llm.tiny import MARKER
from core.llm.tiny_whisper import build_tiny_whisper
from emer.models import models_dir


@pytest.fixture(scope="session")
def tiny_whisper(tmp_path_factory) -> str:
    """The models cache's tiny Whisper (``emer models prepare``) where built, else a fresh one."""
    cached = models_dir() / "tiny-whisper"
    if (cached / MARKER).is_file():
        return str(cached)
    return build_tiny_whisper(tmp_path_factory.mktemp("asr") / "tiny-whisper")


def test_tiny_whisper_transcribes_each_clip_and_refuses_a_request_without_audio(tiny_whisper):
    cfg = LLMConfig(
        backend="transformers", model=tiny_whisper, max_new_tokens=8, min_new_tokens=3, batch_size=2
    )
    asr = create_backend(cfg, "asr")
    reqs = [LLMRequest("", audio=tone(2.0)), LLMRequest("", audio=tone(3.5, 330)), LLMRequest("")]
    out = asr.generate(reqs)
    assert [r.ok for r in out] == [True, True, False]
    assert all(isinstance(r.text, str) and r.text for r in out[:2])  # gibberish, but text
    assert out[2].error == "asr role needs request.audio (16 kHz mono float32)"
    assert create_backend(cfg, "asr").generate(reqs[:1])[0].text == out[0].text  # deterministic


class _Transcriptions(BaseHTTPRequestHandler):
    calls: list[dict] = []

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.calls.append({"path": self.path, "type": self.headers["Content-Type"], "body": body})
        if b'name="prompt"' in body and b"[[401]]" in body:
            code, answer = 401, {"error": {"message": "bad key", "type": "auth"}}
        else:
            code, answer = 200, {"text": f" heard {body.count(b'RIFF')} wav "}
        data = json.dumps(answer).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_openai_transcriptions_endpoint_gets_a_wav_file_and_its_text_comes_back():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Transcriptions)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        cfg = LLMConfig(backend="openai", model="whisper-x", base_url=url, api_key_env="", max_retries=1)
        asr = create_backend(cfg, "asr")
        out = asr.generate([LLMRequest("", audio=tone(1.0)), LLMRequest("[[401]]", audio=tone(1.0))])
        assert out[0].ok and out[0].text == "heard 1 wav"
        assert not out[1].ok and out[1].error.startswith("HTTP 401") and out[1].attempts == 1  # not retried
        first = _Transcriptions.calls[0]
        assert first["path"] == "/v1/audio/transcriptions" and first["type"].startswith("multipart/form-data")
        assert b'name="model"' in first["body"] and b"whisper-x" in first["body"]
    finally:
        server.shutdown()
