"""A real token-auth Ray head on 127.0.0.1, ``emer submit annotate`` on the sample clips, followed to
success with ``emer jobs logs --follow``; the dashboard refuses requests without the token, the metrics
endpoint shows the emer metrics while the job runs, and no secret value is written anywhere.

One head and one submitted run serve the whole module (``submitted``): the head's environment holds
test-only secrets (S3 key pair, LLM API key), the client's environment holds the same values, and the
job writes to the moto S3 server, so the S3 credentials are really used.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cluster_helpers import VENV_BIN, RayHead, emer, subprocess_env

from core import metrics, storage

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]


@dataclass
class Run:
    head: RayHead
    job_id: str
    output: str
    client_env: dict[str, str]
    secrets: dict[str, str]
    submit: subprocess.CompletedProcess
    follow_rc: int
    follow_out: str
    running_scrapes: list[str] = field(default_factory=list)  # metrics text scraped while RUNNING
    statuses: list[str] = field(default_factory=list)


def _secrets() -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": "AKIA" + secrets.token_hex(8).upper(),
        "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30),
        "OPENAI_API_KEY": "sk-emertest-" + secrets.token_hex(16),
    }


def _scrape_while_running(head: RayHead, job_id: str, run: Run, stop: threading.Event) -> None:
    from ray.job_submission import JobSubmissionClient

    jc = JobSubmissionClient(head.url, headers={"Authorization": f"Bearer {head.token}"})
    while not stop.is_set():
        try:
            status = str(jc.get_job_status(job_id).value)
        except Exception:  # not visible yet
            status = "UNKNOWN"
        run.statuses.append(status)
        if status == "RUNNING":
            text = head.metrics_text()
            if str(jc.get_job_status(job_id).value) == "RUNNING":  # still running after the scrape
                run.running_scrapes.append(text)
        elif status in ("SUCCEEDED", "FAILED", "STOPPED"):
            return
        time.sleep(0.5)


@pytest.fixture(scope="module")
def submitted(sample_clips, s3, tmp_path_factory):
    found = _secrets()
    head = RayHead(env={**found, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}).start()
    try:
        output = s3.uri(f"submitted-{secrets.token_hex(4)}")
        env = head.client_env(**found, AWS_ENDPOINT_URL=s3.endpoint, AWS_DEFAULT_REGION="us-east-1")
        job_id = f"emer-test-{secrets.token_hex(4)}"
        clips = str(sample_clips.root / "clips")
        sub = emer(
            [
                "submit",
                "--submission-id",
                job_id,
                "annotate",
                "--input",
                clips,
                "--subtitles",
                str(sample_clips.subtitles),
                "--output",
                output,
                "--annotate.stop_after=check",
                "--annotate.stages.decode.batch_size=2",
            ],
            env,
            timeout=120,
        )
        assert sub.returncode == 0, sub.stdout + sub.stderr
        run = Run(head, job_id, output, env, found, sub, -1, "")
        stop = threading.Event()
        scraper = threading.Thread(target=_scrape_while_running, args=(head, job_id, run, stop), daemon=True)
        scraper.start()
        follow = subprocess.run(
            [str(VENV_BIN / "emer"), "jobs", "logs", "--follow", job_id],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        stop.set()
        scraper.join(10)
        run.follow_rc, run.follow_out = follow.returncode, follow.stdout + follow.stderr
        yield run
    finally:
        head.stop()


def test_dashboard_refuses_requests_without_the_token(submitted):
    head = submitted.head
    assert head.http_status("/api/version") == 401
    assert head.http_status("/api/jobs/") == 401
    assert head.http_status("/api/jobs/", token="not-the-token") == 403
    assert head.http_status("/api/jobs/", auth=True) == 200
    no_token = subprocess_env(RAY_ADDRESS=head.url, RAY_AUTH_MODE="disabled")  # a client without one
    no_token.pop("RAY_AUTH_TOKEN")
    listing = emer(["jobs", "list"], no_token, timeout=60)
    assert listing.returncode == 1
    assert "RAY_AUTH_TOKEN" in listing.stderr


def test_submitted_annotate_succeeds_and_writes_its_output(submitted, sample_clips):
    assert submitted.follow_rc == 0, submitted.follow_out[-4000:]
    assert f"job {submitted.job_id}: SUCCEEDED" in submitted.follow_out
    assert "annotate: 14 inputs -> 8 samples" in submitted.follow_out
    manifest = json.loads(storage.read_text(storage.join(submitted.output, "manifest.json")))
    assert manifest["counts"]["ok"] == len(sample_clips.clips)
    names = Counter(storage.read_table(storage.join(submitted.output, "samples")).column("name").to_pylist())
    assert set(names) == set(sample_clips.clips) and set(names.values()) == {1}
    status = emer(["jobs", "status", submitted.job_id], submitted.client_env, timeout=60)
    assert status.returncode == 0 and f"{submitted.job_id}: SUCCEEDED" in status.stdout
    listing = emer(["jobs", "list", "--json"], submitted.client_env, timeout=60)
    jobs = {j["id"]: j for j in json.loads(listing.stdout)}
    assert jobs[submitted.job_id]["status"] == "SUCCEEDED" and jobs[submitted.job_id]["command"] == "annotate"


def test_metrics_endpoint_shows_emer_metrics_during_the_run(submitted):
    assert "RUNNING" in submitted.statuses, submitted.statuses
    seen = {
        line.split("{")[0].split(" ")[0]
        for text in submitted.running_scrapes
        for line in text.splitlines()
        if line.startswith("ray_emer_")
    }
    for name in (
        "emer_clips_decoded",
        "emer_rows_processed",
        "emer_clips_rejected",
        "emer_samples_written",
        "emer_stage_seconds",
    ):
        assert metrics.prometheus_name(name) in seen, (name, sorted(seen), len(submitted.running_scrapes))
    decoded = [
        float(line.rsplit(" ", 1)[1])
        for line in submitted.running_scrapes[-1].splitlines()
        if line.startswith(metrics.prometheus_name("emer_clips_decoded"))
    ]
    assert decoded and sum(decoded) >= 1


def _everything_written(run: Run) -> dict[str, bytes]:
    """Every place a secret could have landed: Ray's session files, job info, CLI output, the output."""
    blobs: dict[str, bytes] = {}
    for path in Path(run.head.tmp).rglob("*"):
        if path.is_file():
            try:
                blobs[str(path)] = path.read_bytes()
            except OSError:
                continue
    blobs["GET /api/jobs/"] = json.dumps(run.head.get_json("/api/jobs/")).encode()
    blobs[f"GET /api/jobs/{run.job_id}"] = json.dumps(run.head.get_json(f"/api/jobs/{run.job_id}")).encode()
    blobs["GET /api/v0/jobs"] = json.dumps(run.head.get_json("/api/v0/jobs")).encode()
    blobs["emer submit output"] = (run.submit.stdout + run.submit.stderr).encode()
    blobs["emer jobs logs output"] = run.follow_out.encode()
    for uri in storage.list_files(run.output):
        blobs[uri] = storage.read_bytes(uri)
    return blobs


def test_no_secret_value_in_logs_outputs_or_job_metadata(submitted):
    assert submitted.follow_rc == 0, submitted.follow_out[-4000:]
    blobs = _everything_written(submitted)
    assert any("job-driver-" in k for k in blobs) and any(k.endswith("manifest.json") for k in blobs)
    assert sum(len(b) for b in blobs.values()) > 10_000  # really read the session's logs
    leaks = [
        (name, where)
        for name, value in submitted.secrets.items()
        for where, blob in blobs.items()
        if value.encode() in blob
    ]
    assert not leaks, leaks
    info = submitted.head.get_json(f"/api/jobs/{submitted.job_id}")
    assert set(info["metadata"]["emer_env_names"].split(",")) == set(submitted.secrets)
    assert not set(submitted.secrets) & set(info["runtime_env"]["env_vars"])
    assert info["runtime_env"]["env_vars"]["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    # the driver did see the variables (names only in its log) and S3 worked with them
    assert "set: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, OPENAI_API_KEY" in submitted.follow_out


def test_jobs_stop_ends_a_running_job(submitted):
    from ray.job_submission import JobSubmissionClient

    head = submitted.head
    jc = JobSubmissionClient(head.url, headers={"Authorization": f"Bearer {head.token}"})
    job_id = jc.submit_job(entrypoint="sleep 120")
    deadline = time.monotonic() + 60
    while str(jc.get_job_status(job_id).value) == "PENDING" and time.monotonic() < deadline:
        time.sleep(0.5)
    out = emer(["jobs", "stop", "--wait", job_id], submitted.client_env, timeout=90)
    assert out.returncode == 0, out.stderr
    assert str(jc.get_job_status(job_id).value) == "STOPPED"
