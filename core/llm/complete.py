"""``Completer``: prompts in, answers out, through any LLM backend, with an on-disk answer cache.

Evaluation (synonym grouping, OV label extraction) and training's per-epoch scoring call an LLM as
``complete(prompts) -> answers``. ``Completer`` is that callable over the one backend layer
(``core.llm.create_backend``), so every LLM call of the project shares one config class, one
OpenAI-compatible client and one retry policy. An answer is cached under a hash of everything that
decides it (backend, endpoint, model, temperature, token limit, prompt); a rerun over cached
prompts makes no request and creates no backend (so it needs no API key). A failed request gives
"" and its reason is recorded in ``errors``. Every prompt here carries data (labels, descriptions), so
every request has the registry's injection guard as its system message.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Sequence

from core import storage
from core.llm.backends import create_backend
from core.llm.base import LLMBackend, LLMConfig, LLMRequest
from core.llm.prompts import SYSTEM_GUARD

log = logging.getLogger(__name__)


class Completer:
    """``complete(prompts) -> answers`` over the backend named by ``cfg`` (text role)."""

    def __init__(self, cfg: LLMConfig, backend: LLMBackend | None = None) -> None:
        self.cfg = cfg
        self._backend = backend
        self._lock = threading.Lock()
        self.requests = 0
        self.cache_hits = 0
        self.errors: list[str] = []

    @classmethod
    def from_config(cls, cfg: LLMConfig | None) -> Completer | None:
        """A completer for ``cfg``; None when no LLM is configured."""
        return None if cfg is None else cls(cfg)

    def backend(self) -> LLMBackend:
        if self._backend is None:
            self._backend = create_backend(self.cfg, "text")
        return self._backend

    def key(self, req: LLMRequest) -> str:
        cfg = self.cfg
        base_url = cfg.base_url or (os.environ.get("OPENAI_BASE_URL", "") if cfg.backend == "openai" else "")
        body = {
            "backend": cfg.backend,
            "base_url": base_url,
            "model": cfg.model,
            "system": req.system,
            "examples": [list(turn) for turn in req.examples],
            "prompt": req.prompt,
            "temperature": cfg.temperature,
            "max_new_tokens": cfg.max_new_tokens,
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

    def _cache_uri(self, key: str) -> str:
        return storage.join(self.cfg.cache_dir, key[:2], f"{key}.json")

    def __call__(self, prompts: Sequence[str | LLMRequest]) -> list[str]:
        """One answer per prompt: a rendered request (``request_for``), or a plain prompt string, sent
        with the injection guard as its system message (every prompt here carries data)."""
        reqs = [
            p if isinstance(p, LLMRequest) else LLMRequest(prompt=p, system=SYSTEM_GUARD) for p in prompts
        ]
        keys = [self.key(r) for r in reqs]
        answers: dict[str, str] = {}
        todo = [(k, r) for k, r in dict(zip(keys, reqs)).items() if not self._cached(k, answers)]
        if todo:
            results = self.backend().generate([r for _, r in todo])
            for (key, req), res in zip(todo, results):
                answers[key] = self._record(key, req, res)
        log.info(
            "llm %s: %d prompts, %d cached, %d requested, %d errors",
            self.cfg.model,
            len(answers),
            len(answers) - len(todo),
            len(todo),
            len(self.errors),
        )
        return [answers[k] for k in keys]

    def _cached(self, key: str, answers: dict[str, str]) -> bool:
        if not self.cfg.cache_dir:
            return False
        uri = self._cache_uri(key)
        if not storage.exists(uri):
            return False
        answers[key] = json.loads(storage.read_text(uri))["answer"]
        self.cache_hits += 1
        return True

    def _record(self, key: str, req: LLMRequest, res) -> str:
        with self._lock:
            self.requests += 1
        if not res.ok:
            with self._lock:
                self.errors.append(str(res.error)[:300])
            return ""
        if res.text.strip() and self.cfg.cache_dir:
            storage.write_text(self._cache_uri(key), json.dumps({"prompt": req.prompt, "answer": res.text}))
        return res.text

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
