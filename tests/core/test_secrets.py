"""Secrets: which names and values are secret (``core.secrets``); a key pasted where a variable
name belongs is refused without being echoed (one check for every ``*_env`` field); URL credentials
are redacted wherever a config is printed or saved, and never sent by value."""

from __future__ import annotations

import json

import pytest
import yaml

from core import runtime
from core.config import ConfigError, dump_yaml
from core.runtime import worker_env
from core.secrets import (
    env_name_problem,
    is_secret_name,
    looks_like_key,
    redact_text,
    redact_url,
    secret_problem,
)
from core.storage import StorageConfig
from emer.cli import main
from emer.runconfig import load_run_config

HF_LIKE = "hf_" + "AbCdEfGhIjKlMnOpQrStUvWx12"  # a valid identifier, shaped like a HF token
CREDS_URL = "http://alice:s3cr3tpw@127.0.0.1:9000/v1"


@pytest.mark.parametrize(
    "value",
    [
        "sk-proj-" + "a1B2c3D4e5F6g7H8i9J0",
        "sk-ant-api03-" + "xY9" * 8,
        "--annotate.text.api_key=sk-" + "Q1w2E3r4T5y6U7i8O9p0",
        "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz",
        "AKIA" + "ABCDEFGHIJKLMNOP",
        "ASIA" + "0123456789ABCDEF",
        "ghp_" + "a1" * 18,
        "github_pat_" + "11AAAAAAA0" * 3,
        "-----BEGIN OPENSSH PRIVATE KEY-----",
    ],
)
def test_key_shaped_values(value):
    assert looks_like_key(value)


@pytest.mark.parametrize(
    "value",
    [
        "s3://bucket/mask-generation-results-2024",  # "sk-" inside a word
        "sk-learn-compatible-estimators",  # no digit: a word, not a key
        "s3://b/sk-learn-results-2024-01",  # no upper-case letter: a path, not a key
        "hf_model_repository_files",
        "hf_hub_download",
        "AKIA-short",
        "false",
        "",
    ],
)
def test_ordinary_values(value):
    assert not looks_like_key(value)


def test_secret_names_are_classified_in_one_place():
    for name in ("HF_TOKEN", "OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD", "GCP_CREDENTIALS"):
        assert is_secret_name(name)
    for name in ("AWS_ENDPOINT_URL", "HF_HOME", "AWS_DEFAULT_REGION"):
        assert not is_secret_name(name) and not runtime.is_secret(name, "http://127.0.0.1:9000")
    assert runtime.is_secret("HF_TOKEN")  # core.runtime uses the same rule
    assert runtime.is_secret("AWS_ENDPOINT_URL", "http://user:pw@127.0.0.1:9000")  # a URL with credentials


def test_redact_url():
    assert redact_url("https://user:s3cr3t@example.com:8443/p?q=1") == "https://***@example.com:8443/p?q=1"
    assert redact_url("http://ghp_token@github.com/x") == "http://***@github.com/x"
    assert redact_url("http://127.0.0.1:8265") == "http://127.0.0.1:8265"
    assert redact_url("not a url") == "not a url"


@pytest.mark.parametrize(
    "value",
    [
        "sk-" + "proj-AbCdEf0123456789xyz",
        HF_LIKE,
        "AKIA" + "ABCDEFGHIJKLMNOP",
        "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6",
        "Xk9" + "fQ2mZ7pL4vR8tN1wS6yB3cH5jD0gK2aE",
    ],
)
def test_key_shaped_values_are_refused_as_variable_names(value):
    problem = env_name_problem("evaluate.llm.api_key_env", value)
    assert problem and "looks like a key" in problem and value not in problem


@pytest.mark.parametrize("name", ["OPENAI_API_KEY", "HF_TOKEN", "MY_GATEWAY_KEY_2", ""])
def test_variable_names_are_fine(name):
    assert not looks_like_key(name)
    assert env_name_problem("x_env", name) is None


def test_a_key_pasted_into_api_key_env_is_refused_and_not_printed(capsys):
    """Before: a key that is a valid identifier (hf_...) was accepted, printed and saved."""
    assert main(["config", f"--evaluate.llm.api_key_env={HF_LIKE}"]) == 2
    out, err = capsys.readouterr()
    assert "evaluate.llm.api_key_env: looks like a key itself" in err
    assert HF_LIKE not in out + err


@pytest.mark.parametrize("key", ["annotate.text.api_key_env", "annotate.audio.api_key_env"])
def test_every_llm_role_is_checked(key):
    with pytest.raises(ConfigError, match="looks like a key"):
        load_run_config(None, [f"{key}={HF_LIKE}"])


def test_redact_url_credentials():
    assert redact_url(CREDS_URL) == "http://***@127.0.0.1:9000/v1"
    assert redact_url("https://token@host/x?a=1") == "https://***@host/x?a=1"
    assert redact_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"
    assert redact_url("") == ""


def test_url_credentials_are_redacted_when_saved_and_printed(capsys):
    """Before: base_url / endpoint_url credentials were saved as given in config.yaml and printed."""
    run = load_run_config(None, [f"evaluate.llm.base_url={CREDS_URL}"])
    assert run.evaluate.llm.base_url == CREDS_URL  # the run itself still uses them
    saved = dump_yaml(run) + dump_yaml(StorageConfig(endpoint_url=CREDS_URL))
    assert "s3cr3tpw" not in saved and "alice" not in saved
    assert yaml.safe_load(dump_yaml(run))["evaluate"]["llm"]["base_url"] == "http://***@127.0.0.1:9000/v1"
    assert yaml.safe_load(dump_yaml(StorageConfig(endpoint_url=CREDS_URL)))["endpoint_url"] == (
        "http://***@127.0.0.1:9000/v1"
    )
    assert main(["config", f"--evaluate.llm.base_url={CREDS_URL}"]) == 0
    assert "s3cr3tpw" not in capsys.readouterr().out


def test_manifest_config_is_redacted(tmp_path):
    from pipelines.card import write_manifest_and_card
    from pipelines.config import AnnotateConfig
    from pipelines.inputs import Listing
    from pipelines.sink import OutputState

    cfg = AnnotateConfig.from_dict({"text": {"base_url": CREDS_URL, "backend": "openai"}})
    write_manifest_and_card(
        cfg, Listing([], [], [], [], 0), OutputState(), {}, "in", "subs.csv", str(tmp_path), None
    )
    manifest = (tmp_path / "manifest.json").read_text()
    assert "s3cr3tpw" not in manifest and "s3cr3tpw" not in (tmp_path / "config.yaml").read_text()
    assert json.loads(manifest)["config"]["text"]["base_url"] == "http://***@127.0.0.1:9000/v1"


def test_an_endpoint_url_with_credentials_is_not_sent_by_value(monkeypatch):
    """Before: AWS_ENDPOINT_URL went into the runtime env (Ray's job table) by value."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", CREDS_URL)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    env = worker_env()
    assert "AWS_ENDPOINT_URL" not in env and env["AWS_REGION"] == "us-east-1"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    assert worker_env()["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9000"
    assert StorageConfig(endpoint_url=CREDS_URL).endpoint_url == CREDS_URL


QUERY_SECRET = "q-unit-secret-4242"


@pytest.mark.parametrize(
    "url, redacted",
    [
        (f"https://h/v1?api_key={QUERY_SECRET}", "https://h/v1?api_key=***"),
        (f"https://h/v1?model=x&apikey={QUERY_SECRET}&n=2", "https://h/v1?model=x&apikey=***&n=2"),
        (f"https://h/v1?key={QUERY_SECRET}", "https://h/v1?key=***"),
        (f"https://h/v1?access_token={QUERY_SECRET}", "https://h/v1?access_token=***"),
        (f"https://h/x?password={QUERY_SECRET}", "https://h/x?password=***"),
        (
            f"https://a.blob.core.windows.net/c?sv=2024&sig={QUERY_SECRET}",
            "https://a.blob.core.windows.net/c?sv=2024&sig=***",
        ),
        (
            f"https://b.s3.amazonaws.com/k?X-Amz-Credential={QUERY_SECRET}&X-Amz-Signature={QUERY_SECRET}",
            "https://b.s3.amazonaws.com/k?X-Amz-Credential=***&X-Amz-Signature=***",
        ),
        (f"https://u:{QUERY_SECRET}@h/v1?token={QUERY_SECRET}", "https://***@h/v1?token=***"),
        (f"https://h/cb#access_token={QUERY_SECRET}", "https://h/cb#access_token=***"),
    ],
)
def test_secret_query_parameters_are_redacted(url, redacted):
    """#23/12: before, only the user:password@ part was redacted; ?api_key=... stayed."""
    assert redact_url(url) == redacted
    assert QUERY_SECRET not in redact_text(f"--annotate.text.base_url={url} and more")
    problem = secret_problem(url)
    assert problem and QUERY_SECRET not in problem


@pytest.mark.parametrize(
    "value",
    ["https://h/v1?model=x&n=2", "s3://bucket/clips", "/data/x?y", "http://127.0.0.1:8000/v1", "false", ""],
)
def test_plain_urls_and_values_are_not_secret(value):
    assert redact_url(value) == value and redact_text(value) == value and secret_problem(value) is None


def test_query_secrets_are_redacted_in_config_manifest_and_card(tmp_path, capsys):
    """#23/12: --annotate.text.base_url=...?api_key=... reached config.yaml, manifest.json and the card."""
    from pipelines.card import write_manifest_and_card
    from pipelines.config import AnnotateConfig
    from pipelines.inputs import Listing
    from pipelines.sink import OutputState

    url = f"http://127.0.0.1:9000/v1?api_key={QUERY_SECRET}"
    run = load_run_config(None, [f"annotate.text.base_url={url}", f"evaluate.llm.base_url={url}"])
    assert run.annotate.text.base_url == url  # the run itself still uses it
    assert QUERY_SECRET not in dump_yaml(run)
    assert (
        yaml.safe_load(dump_yaml(run))["annotate"]["text"]["base_url"]
        == "http://127.0.0.1:9000/v1?api_key=***"
    )
    assert main(["config", f"--annotate.text.base_url={url}"]) == 0
    assert QUERY_SECRET not in capsys.readouterr().out
    cfg = AnnotateConfig.from_dict({"text": {"base_url": url, "backend": "openai"}})
    clips = f"https://store.example.com/clips?sig={QUERY_SECRET}"
    write_manifest_and_card(
        cfg, Listing([], [], [], [], 0), OutputState(), {}, clips, "subs.csv", str(tmp_path), None
    )
    for name in ("manifest.json", "config.yaml", "README.md"):
        assert QUERY_SECRET not in (tmp_path / name).read_text(), name
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["input"] == "https://store.example.com/clips?sig=***"
    assert manifest["config"]["text"]["base_url"] == "http://127.0.0.1:9000/v1?api_key=***"


def test_a_query_secret_in_the_environment_is_not_sent_by_value(monkeypatch):
    """#23/12: worker_env (core.runtime) and build_submission use the same check."""
    monkeypatch.setenv("OPENAI_BASE_URL", f"https://h/v1?api_key={QUERY_SECRET}")
    assert "OPENAI_BASE_URL" not in worker_env()
    assert runtime.is_secret("OPENAI_BASE_URL", f"https://h/v1?api_key={QUERY_SECRET}")
