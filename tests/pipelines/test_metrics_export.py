"""Every metric the Grafana dashboard draws is really exported by Ray's metrics agent, with the tags
it groups by: a real annotation run (openai backend against the scripted local server: one request
retried after 429, one failing with 400) and the transformers backend on a tiny checkpoint, in a
Ray of its own with a Prometheus export port (``metrics_driver.py``); plus the error-kind tags."""

from __future__ import annotations

import csv
import json
import os
import re
import socket
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from llm_fixtures import fake_openai_server, tiny_model

from core import metrics
from core.llm.telemetry import error_kind, model_tag

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("metrics_driver.py")
SCRIPTED = {"sample_00000001": "[[status:429x1]]", "sample_00000002": "[[status:400]]"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dashboard_series() -> set[str]:
    """The Prometheus series names the dashboard's queries read (``ray_emer_…``)."""
    dash = json.loads((ROOT / "cluster" / "grafana_dashboard.json").read_text())
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p["targets"])
    return set(re.findall(r"\b(ray_emer_[a-z0-9_]+)\{", exprs))


def by_name(series: dict[str, float]) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list] = defaultdict(list)
    for key, value in series.items():
        name, _, labels = key.partition("{")
        out[name].append((dict(re.findall(r'(\w+)="([^"]*)"', labels)), value))
    return out


def total(rows, **match) -> float:
    return sum(v for tags, v in rows if all(tags.get(k) == want for k, want in match.items()))


def scripted_subtitles(src: Path, dst: Path) -> Path:
    with open(src, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    for row in rows[1:]:
        if row[0] in SCRIPTED:
            row[2] = f"{SCRIPTED[row[0]]} {row[2]}"  # the English subtitle feeds the text prompts
    with open(dst, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)
    return dst


@pytest.fixture(scope="module")
def exported(sample_clips, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("metrics")
    subs = scripted_subtitles(sample_clips.subtitles, tmp / "subtitles.csv")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(
        PYTHONPATH=str(ROOT),
        HOME=str(tmp),  # nothing lands in the real ~/.ray
        RAY_USAGE_STATS_ENABLED="0",
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=os.environ["RAY_AUTH_TOKEN"],
    )
    with fake_openai_server() as server:
        args = [free_port(), server.url, sample_clips.root / "clips", subs, tmp / "out", tiny_model("text")]
        run = subprocess.run(
            [sys.executable, str(DRIVER), *map(str, args), str(tmp / "result.json")],
            env=env,
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=540,
        )
        assert run.returncode == 0, run.stderr[-4000:]
        result = json.loads((tmp / "result.json").read_text())
        result["calls"] = {m: len(server.calls_for(m)) for m in SCRIPTED.values()}
    return result


def test_error_kinds_are_short_tags():
    assert error_kind("HTTP 429: slow down") == "http_429"
    assert error_kind("gave up after 3 attempts: HTTP 503: busy") == "http_503"
    assert error_kind("gave up after 5 attempts: APITimeoutError: Request timed out.") == "timeout"
    assert error_kind("gave up after 2 attempts: APIConnectionError: Connection error.") == "connection"
    assert error_kind("malformed response: MalformedResponse: no choices") == "malformed"
    assert error_kind("audio role needs request.audio (16 kHz mono float32)") == "bad_input"
    assert error_kind("bad input: frame 0 is not JPEG bytes") == "bad_input"
    assert error_kind("not sent: 8 in a row failed with: HTTP 401: no") == "not_sent"
    assert error_kind("generate failed: RuntimeError: CUDA out of memory") == "generate"
    assert error_kind("something new") == "other"
    assert (
        model_tag("/models/cache/smollm2-135m/") == "smollm2-135m"
        and model_tag("Qwen/Qwen2-7B") == "Qwen/Qwen2-7B"
    )


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_every_dashboard_metric_is_exported_with_its_tags(exported):
    rows = by_name(exported["series"])
    wanted = dashboard_series()
    assert {metrics.prometheus_name(n) for n in metrics.METRICS} == wanted  # the dashboard draws them all
    missing = sorted(wanted - set(rows))
    assert not missing, (missing, exported["seconds"], sorted(rows))
    assert exported["counts"] == {"inputs": 14, "ok": 7, "rejected": 3, "failed": 4, "pending": 0}
    assert exported["calls"] == {"[[status:429x1]]": 2, "[[status:400]]": 1}  # one retry, one refusal

    requests = rows["ray_emer_llm_requests_total"]
    openai = [(t, v) for t, v in requests if t["model"] == "fake-mllm"]
    assert {t["role"] for t, _ in openai} == set(exported["roles"])  # every role reports, by its name
    assert all(v >= 1 for _, v in openai)
    assert total(rows["ray_emer_llm_retries_total"], model="fake-mllm") == 1
    errors = rows["ray_emer_llm_errors_total"]
    assert total(errors, model="fake-mllm", kind="http_400") == 1 and total(errors, model="fake-mllm") == 1
    tokens = rows["ray_emer_llm_tokens_total"]
    assert (
        total(tokens, model="fake-mllm", kind="prompt") > 0
        and total(tokens, model="fake-mllm", kind="completion") > 0
    )
    # every HTTP attempt is one latency observation: the requests plus the retry
    http = total(rows["ray_emer_llm_latency_seconds_count"], model="fake-mllm")
    assert http == total(requests, model="fake-mllm") + 1

    tiny = model_tag(tiny_model("text"))
    assert total(requests, model=tiny, role="text") == 3 == len(exported["tiny"])
    assert total(rows["ray_emer_llm_latency_seconds_count"], model=tiny) == 2  # one per generate batch
    completion = sum(r["completion_tokens"] for r in exported["tiny"])
    assert total(tokens, model=tiny, kind="completion") == completion > 0

    failed = rows["ray_emer_rows_failed_total"]
    assert total(failed, stage="decode") == 3 and total(failed, stage="disambiguate") == 1
    rejected = rows["ray_emer_clips_rejected_total"]
    assert total(rejected) == 7  # 3 rejected by the checks + 4 failed
    assert total(rows["ray_emer_samples_written_total"]) == 7
    # 14 inputs: 3 undecodable, 1 rejected by a check's rule before decoding (see DecodeStage)
    assert total(rows["ray_emer_clips_decoded_total"]) == 10
