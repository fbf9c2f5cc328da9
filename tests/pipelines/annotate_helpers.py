"""Helpers shared by the annotation tests: configs (tiny models, a fake endpoint) and output checks."""

from __future__ import annotations

from collections import Counter

from llm_fixtures import tiny_model

from core import storage
from pipelines.config import AnnotateConfig
from pipelines.samples import BROKEN

STAGE_OF = {
    "broken_empty": "decode",
    "broken_truncated": "decode",
    "broken_random": "decode",
    "broken_noaudio": "check",
    "broken_short": "check",
    "broken_long": "check",
}


def tiny_config(**extra) -> AnnotateConfig:
    def llm(role: str) -> dict:
        return {"model": tiny_model(role), "max_new_tokens": 6, "min_new_tokens": 2, "batch_size": 4}

    return AnnotateConfig.from_dict(
        {
            "audio": llm("audio"),
            "video": llm("video"),
            "text": llm("text"),
            "video_prompt_frames": 4,
            "stages": {"decode": {"actors": 1}, **{s: {"num_cpus": 0.5} for s in ("audio", "video", "text")}},
            **extra,
        }
    )


def openai_config(url: str, **extra) -> AnnotateConfig:
    llm = {
        "backend": "openai",
        "model": "fake-mllm",
        "base_url": url,
        "api_key_env": "",
        "timeout_s": 1.0,
        "max_retries": 2,
        "retry_backoff_s": 0.01,
        "concurrency": 2,
        "max_new_tokens": 64,
    }
    return AnnotateConfig.from_dict(
        {
            "audio": llm,
            "video": llm,
            "text": llm,
            "stages": {"decode": {"actors": 1}, **{s: {"num_cpus": 0.5} for s in ("audio", "video", "text")}},
            **extra,
        }
    )


def read_rows(output: str, kind: str, columns: list[str] | None = None) -> list[dict]:
    uri = storage.join(output, kind)
    if not storage.list_files(uri, suffixes=[".parquet"]):
        return []
    return storage.read_table(uri, columns=columns).to_pylist()


def check_every_name_once(output: str, inputs: list[str]) -> tuple[dict, dict]:
    """Every input name is in exactly one of samples/ and failures/, once; returns both by name."""
    samples, failures = read_rows(output, "samples"), read_rows(output, "failures")
    names = [r["name"] for r in samples] + [r["name"] for r in failures]
    extra, missing = Counter(names) - Counter(inputs), Counter(inputs) - Counter(names)
    assert not extra and not missing, (extra, missing)
    return {r["name"]: r for r in samples}, {r["name"]: r for r in failures}


def all_inputs(sample_clips) -> list[str]:
    return sample_clips.clips + sorted(BROKEN)
