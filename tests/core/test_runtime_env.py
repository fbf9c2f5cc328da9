"""A local Ray started by this process has no runtime env: its workers inherit the environment, and
``runtime_env_for`` adds only what they lack (a variable set or changed after the start)."""

from __future__ import annotations

import os

import pytest

from core.runtime import runtime_env_for, start_local, worker_env


def _env_in_a_task(ray, name: str, runtime_env: dict | None) -> str | None:
    task = ray.remote(num_cpus=0)(lambda: os.environ.get(name))
    return ray.get((task.options(runtime_env=runtime_env) if runtime_env else task).remote())


def test_the_local_workers_inherit_the_environment_and_get_only_what_they_lack(ray_local, monkeypatch):
    ray = ray_local
    assert not (ray.get_runtime_context().runtime_env or {}).get("env_vars")  # no job runtime env
    assert runtime_env_for(worker_env()) is None  # the S3 endpoint, offline flags...: inherited
    assert _env_in_a_task(ray, "AWS_ENDPOINT_URL", None) == os.environ["AWS_ENDPOINT_URL"]

    monkeypatch.setenv("HF_HOME", "/tmp/emer-test-hf-home")  # set after the start: the workers lack it
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # changed after the start
    env = runtime_env_for(worker_env())
    assert env == {"env_vars": {"HF_HOME": "/tmp/emer-test-hf-home", "HF_HUB_OFFLINE": "0"}}
    assert _env_in_a_task(ray, "HF_HOME", env) == "/tmp/emer-test-hf-home"
    assert _env_in_a_task(ray, "HF_HUB_OFFLINE", env) == "0"
    assert _env_in_a_task(ray, "HF_HOME", None) != "/tmp/emer-test-hf-home"  # not inherited


def test_a_local_start_takes_no_runtime_env():
    with pytest.raises(ValueError, match="pass no runtime_env"):
        start_local(runtime_env={"env_vars": {"A": "1"}})
