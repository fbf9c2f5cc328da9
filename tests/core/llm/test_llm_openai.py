"""The OpenAI-compatible backend against a scripted local server: payloads, retries, timeouts, key safety."""

from __future__ import annotations

import base64
import io
import logging
import time

import numpy as np
import pytest
import soundfile as sf
from llm_fixtures import fake_openai_server, jpeg_frames, tone

from core.llm import LLMConfig, LLMRequest, create_backend
from core.llm.openai_backend import MAX_BACKOFF_S, backoff_s

KEY = "sk-emer-LEAKCHECK-7f3a9c1e5b"
ENV = "EMER_TEST_OPENAI_KEY"


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv(ENV, KEY)
    with fake_openai_server() as srv:
        yield srv


def make(server, kind="text", **kw):
    opts = dict(
        backend="openai",
        model="test-model",
        base_url=server.url,
        api_key_env=ENV,
        timeout_s=2.0,
        max_retries=2,
        retry_backoff_s=0.01,
        max_new_tokens=32,
        concurrency=4,
    )
    be = create_backend(LLMConfig(**(opts | kw)), kind)
    be.sleeps = []
    be.sleep = be.sleeps.append  # record the backoff instead of waiting
    return be


def test_text_request_payload_and_usage(server):
    [res] = make(server).generate([LLMRequest(prompt="hello there")])
    assert res.ok and res.text == "echo images=0 audio=0: hello there" and res.attempts == 1
    assert res.prompt_tokens == 2 and res.completion_tokens == 5
    [call] = server.calls
    assert call["path"] == "/v1/chat/completions"
    assert call["body"]["model"] == "test-model" and call["body"]["max_tokens"] == 32
    assert call["body"]["messages"] == [{"role": "user", "content": "hello there"}]
    assert call["headers"]["authorization"] == f"Bearer {KEY}"  # the key is used, only in the header


def test_frames_go_as_base64_jpeg_image_parts(server):
    frames = jpeg_frames(3)
    [res] = make(server, kind="video").generate([LLMRequest(prompt="describe", frames=frames)])
    assert res.text.startswith("echo images=3 audio=0")
    content = server.calls[0]["body"]["messages"][0]["content"]
    assert [p["type"] for p in content] == ["image_url"] * 3 + ["text"]
    for part, frame in zip(content, frames):
        url = part["image_url"]["url"]
        assert url.startswith("data:image/jpeg;base64,")
        assert base64.b64decode(url.split(",", 1)[1]) == frame
    assert content[-1] == {"type": "text", "text": "describe"}


def test_audio_goes_as_wav_input_audio(server):
    audio = tone(1.5)
    [res] = make(server, kind="audio").generate([LLMRequest(prompt="listen", audio=audio)])
    assert res.text.startswith("echo images=0 audio=1")
    part = server.calls[0]["body"]["messages"][0]["content"][0]
    assert part["type"] == "input_audio" and part["input_audio"]["format"] == "wav"
    wav, rate = sf.read(io.BytesIO(base64.b64decode(part["input_audio"]["data"])), dtype="float32")
    assert rate == 16000 and wav.shape == audio.shape
    assert np.abs(wav - audio).max() < 1e-3


def test_rate_limit_is_retried_then_succeeds(server):
    be = make(server)
    [res] = be.generate([LLMRequest(prompt="[[status:429x2]] hi")])
    assert res.ok and res.attempts == 3
    assert len(server.calls_for("[[status:429x2]]")) == 3
    assert be.sleeps == [0.0, 0.0]  # the server's Retry-After: 0 wins


def test_server_errors_back_off_exponentially_then_give_up(server):
    be = make(server, max_retries=3, retry_backoff_s=0.1)
    [res] = be.generate([LLMRequest(prompt="[[status:500]] hi")])
    assert not res.ok and res.text is None and res.attempts == 4
    assert res.error.startswith("gave up after 4 attempts: HTTP 500")
    assert len(server.calls_for("[[status:500]]")) == 4
    assert len(be.sleeps) == 3
    for k, wait in enumerate(be.sleeps):
        assert 0.1 * 2**k <= wait <= 0.1 * 2**k * 1.1


def test_backoff_is_capped_and_honours_retry_after():
    assert backoff_s(30, 1.0) == MAX_BACKOFF_S
    assert backoff_s(0, 1.0, retry_after=3.0) == 3.0
    assert backoff_s(0, 1.0, retry_after=120.0, max_retry_after=300.0) == 120.0  # beyond 60 s: still honoured


def test_a_long_retry_after_is_waited_for_up_to_the_cap(server):
    """Before: a Retry-After over 60 s was ignored and the request retried about a second later."""
    be = make(server, max_retries=2)
    [res] = be.generate([LLMRequest(prompt="[[wait:120x1]] hi")])
    assert res.ok and res.attempts == 2 and be.sleeps == [120.0]


def test_a_retry_after_beyond_the_cap_fails_at_once_without_retrying_early(server):
    be = make(server, max_retries=3, max_retry_after_s=60.0)
    [res] = be.generate([LLMRequest(prompt="[[wait:900]] hi")])
    assert not res.ok and res.attempts == 1 and be.sleeps == []
    assert "HTTP 429" in res.error and "retry after 900 s, more than max_retry_after_s = 60" in res.error
    assert len(server.calls_for("[[wait:900]]")) == 1


def test_timeout_is_retried_and_exhausted(server):
    be = make(server, timeout_s=0.3, max_retries=1)
    start = time.perf_counter()
    ok, slow = be.generate([LLMRequest(prompt="[[slow:1.0x1]] a"), LLMRequest(prompt="[[slow:1.0]] b")])
    assert ok.ok and ok.attempts == 2
    assert not slow.ok and "APITimeoutError" in slow.error and slow.attempts == 2
    assert time.perf_counter() - start < 2.0  # timeouts cut the 1 s answers short


def test_malformed_answers_are_retried_then_reported(server):
    be = make(server)
    prompts = ["[[garbage x1]] a", "[[nochoices]] b", "[[garbage]] c"]
    good, bad, garbage = be.generate([LLMRequest(prompt=p) for p in prompts])
    assert good.ok and good.attempts == 2
    assert bad.error == (
        "gave up after 3 attempts: malformed response: MalformedResponse: "
        "no choices in the answer (ChatCompletion)"
    )
    assert garbage.error.startswith("gave up after 3 attempts: malformed response: JSONDecodeError")


def test_client_errors_are_not_retried(server):
    be = make(server)
    [res] = be.generate([LLMRequest(prompt="[[status:400]] bad")])
    assert res.attempts == 1 and res.error == "HTTP 400: Error code: 400 - scripted 400"
    assert be.sleeps == []


def test_concurrency_is_bounded_and_order_kept(server):
    be = make(server, concurrency=3)
    prompts = [f"[[slow:0.2]] n{k}" for k in range(7)]
    start = time.perf_counter()
    results = be.generate([LLMRequest(prompt=p) for p in prompts])
    elapsed = time.perf_counter() - start
    assert [r.text.split(": ", 1)[1] for r in results] == prompts
    assert server.max_inflight == 3
    assert 0.55 < elapsed < 7 * 0.2  # three waves of 0.2 s, not seven


def test_bad_media_is_a_result_not_an_exception(server):
    results = make(server, kind="video").generate(
        [LLMRequest(prompt="x", frames=[b"PNG..."]), LLMRequest(prompt="y")]
    )
    assert results[0].error == "bad input: frame 0 is not JPEG bytes"
    assert results[1].error == "video role needs request.frames (JPEG bytes)"
    assert server.calls == []


def test_api_key_never_leaks(server, caplog, capsys):
    caplog.set_level(logging.DEBUG)  # every logger, the client's and httpx's included
    be = make(server, kind="video", timeout_s=0.3, max_retries=1)
    results = be.generate(
        [
            LLMRequest(prompt=p, frames=jpeg_frames(1))
            for p in (
                "ok",
                "[[status:500]] a",
                "[[status:400]] b",
                "[[slow:1.0]] c",
                "[[nochoices]] d",
                "[[garbage]] e",
                "[[echokey]] f",
            )
        ]
    )
    assert any(KEY in c["headers"]["authorization"] for c in server.calls)  # the leaky server saw it
    assert "***" in results[-1].error and "bad credentials" in results[-1].error
    captured = capsys.readouterr()
    seen = [
        repr(results),
        str(results),
        repr(be),
        str(be),
        repr(be.cfg),
        str(vars(be.cfg)),
        caplog.text,
        captured.out,
        captured.err,
        "\n".join(r.getMessage() for r in caplog.records),
    ]
    for text in seen:
        assert KEY not in text
    assert KEY[8:20] not in "".join(seen)  # nor a fragment of it


def test_missing_key_variable_is_named(monkeypatch):
    monkeypatch.delenv("EMER_NO_SUCH_KEY", raising=False)
    with pytest.raises(ValueError, match="environment variable EMER_NO_SUCH_KEY is not set"):
        create_backend(LLMConfig(backend="openai", model="m", api_key_env="EMER_NO_SUCH_KEY"), "text")


def test_endpoint_without_key(server):
    [res] = make(server, api_key_env="").generate([LLMRequest(prompt="hi")])
    assert res.ok and KEY not in server.calls[0]["headers"].get("authorization", "")
