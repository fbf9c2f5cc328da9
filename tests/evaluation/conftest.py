"""Fixtures for the evaluation tests: the reference data folders, the real ``emer`` entry point, and a
local OpenAI-compatible chat server (http.server on 127.0.0.1) that can answer 429, 500, malformed
or good responses and counts every request."""

from __future__ import annotations

import ast
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from core.llm.prompts import parse_data


def pytest_collection_modifyitems(config, items):
    """METEOR's JVM loads its paraphrase table for several seconds (much longer on a busy machine):
    when text-metric tests are selected, start it in the background while the other tests run."""
    if any("test_eval_text_runs" in item.nodeid for item in items):
        from evaluation.text_metrics import text_scores

        threading.Thread(target=text_scores, args=(["warm up"], ["warm up"]), daemon=True).start()


@pytest.fixture(scope="session")
def mer_dir(shared_dir: Path) -> Path:
    path = shared_dir / "data" / "mer2024-ov"
    if not (path / "openset-synonym.zip").is_file():
        pytest.skip(f"{path} lacks the MER2024 OV reference files")
    return path


@pytest.fixture(scope="session")
def wheel_dir(shared_dir: Path) -> Path:
    path = shared_dir / "data" / "emotion-wheel"
    if not (path / "wheel_mapping.json").is_file():
        pytest.skip(f"{path} lacks the emotion-wheel files")
    return path


def group_by_first_letter(labels: list[str]) -> list[list[str]]:
    groups: dict[str, list[str]] = {}
    for lab in labels:
        groups.setdefault(lab[0], []).append(lab)
    return list(groups.values())


class FakeChat:
    """Scripted OpenAI-compatible chat completions.

    ``script`` holds statuses for the next requests (429, 500, ...); after it runs out: a grouping
    prompt gets its labels grouped by first letter (malformed if a label is in ``always_bad``, or
    in ``bad_once`` and the prompt is not a re-ask); a sentiment prompt gets the majority polarity
    of its known words (the same malformed rule: an answer naming two polarities); an extraction
    prompt gets the known emotion words of its description as a list literal.
    """

    EMOTIONS = ("happy", "sad", "angry", "worried", "surprised", "calm", "joyful", "anxious")

    def __init__(self) -> None:
        self.requests = 0
        self.prompts: list[str] = []
        self.script: list[int] = []
        self.always_bad: set[str] = set()
        self.bad_once: set[str] = set()
        self.lock = threading.Lock()

    POSITIVE = ("happy", "joyful", "calm")
    NEGATIVE = ("sad", "angry", "worried", "anxious")

    def polarity(self, labels: list[str]) -> str:
        """Majority of the known words' polarity (a tie or none: neutral), as a chatty answer."""
        score = sum(lab in self.POSITIVE for lab in labels) - sum(lab in self.NEGATIVE for lab in labels)
        return "Output: " + ("positive" if score > 0 else "negative" if score < 0 else "neutral")

    def answer(self, prompt: str) -> tuple[int, str]:
        with self.lock:
            self.requests += 1
            self.prompts.append(prompt)
            status = self.script.pop(0) if self.script else 200
        if status != 200:
            return status, ""
        reask = "nothing else" in prompt
        listed = parse_data(prompt, "labels")  # the registry's synonym_grouping prompt
        if listed is not None:
            labels = ast.literal_eval(listed)
            if set(labels) & self.always_bad or (set(labels) & self.bad_once and not reask):
                return 200, "These emotions are all rather similar, I would say."
            return 200, "Here you go:\n" + repr(group_by_first_letter(labels))
        words = parse_data(prompt, "emotion_words")  # the registry's ov_sentiment prompt
        if words is not None:
            labels = ast.literal_eval(words)
            if set(labels) & self.always_bad or (set(labels) & self.bad_once and not reask):
                return 200, "It could be positive, or maybe negative."
            return 200, self.polarity(labels)
        clues = parse_data(prompt, "clues")  # the registry's ov_extract prompt
        words = re.findall(r"[a-z]+", clues.lower()) if clues else []
        return 200, repr([w for w in dict.fromkeys(words) if w in self.EMOTIONS])


@pytest.fixture
def fake_llm():
    chat = FakeChat()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def do_POST(self) -> None:  # noqa: N802 (http.server API)
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            status, content = chat.answer(body["messages"][-1]["content"])
            if status == 200:
                payload = {
                    "id": "cmpl-1",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": content},
                        }
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }
            else:
                payload = {"error": {"message": f"scripted {status}", "type": "test", "code": status}}
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("retry-after-ms", "5")
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    chat.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield chat
    server.shutdown()
    server.server_close()
