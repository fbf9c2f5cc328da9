"""Fixtures of the cluster-operations tests: tiny random-weight LLM checkpoints and the environment
for the ``emer`` subprocesses (offline, CPU, usage stats off)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_llms() -> dict[str, str]:
    """role -> folder of a tiny checkpoint (built once, kept in .cache/tiny-llm: builders are idempotent)."""
    from core.llm.tiny import BUILDERS

    base = ROOT / ".cache" / "tiny-llm"
    return {role: build(base / role) for role, build in BUILDERS.items()}
