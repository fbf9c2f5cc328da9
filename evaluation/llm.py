"""LLM calls for evaluation: an OpenAI-compatible ``complete(prompts) -> answers`` with an on-disk
cache, bounded concurrency and retries, plus robust parsers for the answers (label lists, groups).

Any callable ``complete(prompts: list[str]) -> list[str]`` can stand in for ``OpenAIComplete``
(for example an annotation backend); an empty answer means "no answer".
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor

from cluster import storage
from evaluation.config import LLMConfig

log = logging.getLogger(__name__)

REASK_SUFFIX = " Answer with only a Python list, nothing else."


class OpenAIComplete:
    """Chat completions through the ``openai`` client; answers cached by a hash of the request.

    The client retries 408/409/429/5xx itself (``max_retries``, exponential backoff, honouring
    Retry-After); a request still failing yields "" and is recorded in ``errors``. A rerun over
    cached prompts makes no request at all (and needs no API key).
    """

    def __init__(self, cfg: LLMConfig, client=None) -> None:
        self.cfg = cfg
        self._client = client
        self._lock = threading.Lock()
        self.requests = 0
        self.cache_hits = 0
        self.errors: list[str] = []

    def _key(self, prompt: str) -> str:
        body = {
            "model": self.cfg.model,
            "temperature": self.cfg.temperature,
            "max_tokens": self.cfg.max_tokens,
            "messages": [{"role": "user", "content": prompt}],
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

    def _cache_uri(self, key: str) -> str:
        return storage.join(self.cfg.cache_dir, key[:2], f"{key}.json")

    def client(self):
        if self._client is None:
            import openai

            key = os.environ.get(self.cfg.api_key_env, "")
            if not key and not self.cfg.base_url:
                raise ValueError(
                    f"evaluate.llm: ${self.cfg.api_key_env} is not set; export your API key, or "
                    "point --evaluate.llm.base_url at an OpenAI-compatible server"
                )
            self._client = openai.OpenAI(
                api_key=key or "unused",
                base_url=self.cfg.base_url or None,
                max_retries=self.cfg.max_retries,
                timeout=self.cfg.timeout,
            )
        return self._client

    def __call__(self, prompts: list[str]) -> list[str]:
        answers: dict[str, str] = {}
        todo = []
        for prompt in dict.fromkeys(prompts):
            uri = self._cache_uri(self._key(prompt))
            if storage.exists(uri):
                answers[prompt] = json.loads(storage.read_text(uri))["answer"]
                self.cache_hits += 1
            else:
                todo.append(prompt)
        if todo:
            self.client()
            with ThreadPoolExecutor(max_workers=min(self.cfg.concurrency, len(todo))) as pool:
                for prompt, answer in zip(todo, pool.map(self._ask, todo)):
                    answers[prompt] = answer
        log.info(
            "llm %s: %d prompts, %d cached, %d requested, %d errors",
            self.cfg.model,
            len(answers),
            len(answers) - len(todo),
            len(todo),
            len(self.errors),
        )
        return [answers[p] for p in prompts]

    def _ask(self, prompt: str) -> str:
        import openai

        with self._lock:
            self.requests += 1
        try:
            resp = self.client().chat.completions.create(
                model=self.cfg.model,
                messages=[{"role": "user", "content": prompt}],
                temperature=self.cfg.temperature,
                max_tokens=self.cfg.max_tokens,
            )
            answer = (resp.choices[0].message.content or "") if resp.choices else ""
        except openai.OpenAIError as err:
            with self._lock:
                self.errors.append(f"{type(err).__name__}: {str(err)[:200]}")
            return ""
        if answer.strip():
            key = self._key(prompt)
            storage.write_text(self._cache_uri(key), json.dumps({"prompt": prompt, "answer": answer}))
        return answer


# ---------------------------------------------------------------- answer parsing

_FENCE = re.compile(r"```[a-zA-Z]*\n?|```")
_INNER = re.compile(r"\[([^\[\]]*)\]")
_NONE = {"", "none", "[]", "no emotion", "no emotions", "null", "n/a"}


def _bracketed(text: str) -> str | None:
    start, end = text.find("["), text.rfind("]")
    return text[start : end + 1] if 0 <= start < end else None


def _items(body: str) -> list[str]:
    quoted = re.findall(r"'([^']*)'|\"([^\"]*)\"", body)
    if quoted:
        return [a or b for a, b in quoted if (a or b).strip()]
    return [t.strip() for t in re.split(r"[,;，、\n]", body) if t.strip()]


def parse_label_answer(answer: str, max_words: int = 6) -> list[str] | None:
    """Labels from an extraction answer: a list literal, a bracketed or plain comma-separated list.
    None when it is no list at all (empty answer, or prose)."""
    text = _FENCE.sub("", answer or "").strip()
    if not text:
        return None
    if text.lower().strip(" .") in _NONE:
        return []
    body = _bracketed(text)
    labels: list[str] | None = None
    if body is not None:
        try:
            value = ast.literal_eval(body)
            if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
                labels = list(value)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            pass
        if labels is None:
            labels = _items(body[1:-1])
    else:
        labels = _items(text.splitlines()[0] if "\n" in text else text)
    labels = [lab.strip().strip("'\"*.").strip().lower() for lab in labels]
    labels = [lab for lab in labels if lab]
    if any(len(lab.split()) > max_words for lab in labels):
        return None
    return labels


def parse_groups_answer(answer: str, labels: list[str] | None = None) -> list[list[str]] | None:
    """Groups from a grouping answer (a list of lists); None when malformed or unrelated to ``labels``."""
    text = _FENCE.sub("", answer or "").strip()
    body = _bracketed(text)
    if body is None:
        return None
    groups: list[list[str]] | None = None
    try:
        value = ast.literal_eval(body)
        if isinstance(value, (list, tuple)) and value and all(isinstance(g, (list, tuple)) for g in value):
            groups = [[str(x) for x in g] for g in value]
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        pass
    if groups is None:
        groups = [_items(inner) for inner in _INNER.findall(body)]
    groups = [[x.strip().lower() for x in g if x.strip()] for g in groups]
    groups = [g for g in groups if g]
    if not groups:
        return None
    if labels is not None and not set(labels) & {x for g in groups for x in g}:
        return None
    return groups
