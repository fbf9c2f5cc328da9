"""Fast checks of ``emer submit`` / ``emer jobs`` internals, the metrics API and placement helpers
(no cluster started)."""

from __future__ import annotations

import io
import os
import re
import shlex
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from cluster import submit as sb
from core import metrics, placement
from core.resources import Resources
from emer.cli import build_parser, split_overrides
from emer.job_entry import entry_main


@pytest.fixture
def env(monkeypatch, tmp_path):
    """A clean environment: no Ray address/auth, HOME in tmp, test secrets set."""
    for name in (
        "RAY_ADDRESS",
        "RAY_AUTH_TOKEN",
        "RAY_AUTH_TOKEN_PATH",
        "RAY_AUTH_MODE",
        "AWS_SESSION_TOKEN",
        "OPENAI_BASE_URL",
        "HF_HOME",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("RAY_OVERRIDE_JOB_RUNTIME_ENV", "0")  # entry_main sets it: restored afterwards
    values = {
        "AWS_ACCESS_KEY_ID": "AKIAUNITTEST0001",
        "AWS_SECRET_ACCESS_KEY": "unit-secret-value-123",
        "OPENAI_API_KEY": "sk-unit-test-key-456",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    return values


def test_secrets_travel_by_name_only(env):
    sub = sb.build_submission(["annotate", "--input", "s3://b/clips"], working_dir="/proj")
    blob = repr((sub.entrypoint, sub.runtime_env, sub.metadata))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "OPENAI_API_KEY"):
        assert env[name] not in blob and name in sub.env_names
    assert sub.runtime_env["env_vars"]["AWS_ENDPOINT_URL"] == env["AWS_ENDPOINT_URL"]  # not secret: by value
    assert sub.runtime_env["working_dir"] == "/proj"
    argv = shlex.split(sub.entrypoint)
    assert argv[:3] == ["python", "-m", "emer.job_entry"]
    assert argv[argv.index("--") + 1 :] == ["annotate", "--input", "s3://b/clips"]
    assert sub.metadata["emer_command"] == "annotate"
    assert sub.metadata["emer_env_names"] == "AWS_ACCESS_KEY_ID,AWS_SECRET_ACCESS_KEY,OPENAI_API_KEY"


def test_a_secret_value_on_the_command_line_is_refused(env):
    with pytest.raises(ValueError, match=r"\$OPENAI_API_KEY"):
        sb.build_submission(["annotate", f"--annotate.text.api_key={env['OPENAI_API_KEY']}"])
    with pytest.raises(ValueError, match="subcommand"):
        sb.build_submission(["--input", "x"])
    with pytest.raises(ValueError, match="not an environment variable name"):
        sb.build_submission(["annotate"], extra_env=["BAD-NAME"])


def test_any_secret_variables_value_on_the_command_line_is_refused(env, monkeypatch):
    """#13/10: not only pass-through names: HF_TOKEN (or any secret-named variable) counts too."""
    hf = "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz"
    monkeypatch.setenv("HF_TOKEN", hf)
    monkeypatch.setenv("MY_SERVICE_PASSWORD", "correct-horse-battery")
    for name, arg in (("HF_TOKEN", f"--token={hf}"), ("MY_SERVICE_PASSWORD", "correct-horse-battery")):
        with pytest.raises(ValueError, match=rf"\${name}") as err:
            sb.build_submission(["annotate", "--input", "s3://b/clips", arg])
        assert os.environ[name] not in str(err.value)  # the error never prints the value
    with pytest.raises(ValueError, match=r"\$HF_TOKEN"):  # also via --python, part of the entrypoint
        sb.build_submission(["annotate"], python=f"env HF={hf} python")


def test_a_key_shaped_literal_on_the_command_line_is_refused(env, monkeypatch):
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")  # secret by name, but a short flag value
    literals = (
        "sk-proj-" + "a1B2c3D4e5F6g7H8i9J0",
        "hf_" + "ZyXwVuTsRqPoNmLkJiHgFe",
        "AKIA" + "ABCDEFGHIJKLMNOP",
        "ghp_" + "a1" * 18,
    )
    for literal in literals:  # set nowhere in the environment: the shape alone is refused
        with pytest.raises(ValueError, match="looks like an API key") as err:
            sb.build_submission(["annotate", f"--annotate.text.api_key={literal}"])
        assert literal not in str(err.value)
    ok = ["annotate", "--output", "s3://b/mask-generation-results-2024", "--annotate.x=false"]
    assert shlex.split(sb.build_submission(ok).entrypoint)[-3:] == ok[1:]


CREDS_ENDPOINT = "http://AKUNIT:pw-unit-secret-789@minio.internal:9000"


def test_a_credential_url_in_the_environment_travels_by_name_only(env, monkeypatch):
    """#23/1: AWS_ENDPOINT_URL=http://ak:pw@host went into the runtime env (Ray's job table) by value."""
    for value in (CREDS_ENDPOINT, "http://minio.internal:9000/?X-Amz-Credential=AKUNIT%2F20260101"):
        monkeypatch.setenv("AWS_ENDPOINT_URL", value)
        sub = sb.build_submission(["annotate", "--input", "s3://b/clips"], working_dir="/proj")
        assert "AWS_ENDPOINT_URL" not in sub.runtime_env["env_vars"]
        assert "AWS_ENDPOINT_URL" in sub.env_names and "AWS_ENDPOINT_URL" in sub.metadata["emer_env_names"]
        assert "AKUNIT" not in repr((sub.entrypoint, sub.runtime_env, sub.metadata))


@pytest.mark.parametrize(
    "args, flag",
    [
        (
            ["--annotate.text.base_url=http://user:pw-unit-secret-789@llm.internal/v1"],
            "--annotate.text.base_url",
        ),
        (
            ["--annotate.text.base_url", "https://llm.internal/v1?api_key=pw-unit-secret-789"],
            "--annotate.text.base_url",
        ),
        (["--input=https://h/clips.zip?X-Amz-Signature=pw-unit-secret-789&X-Amz-Date=1"], "--input"),
        (["--evaluate.llm.base_url=http://h/v1?token=pw-unit-secret-789"], "--evaluate.llm.base_url"),
        (["--input", "https://acct.blob.core.windows.net/c/x?sv=2024&sig=pw-unit-secret-789"], "--input"),
        (["--subtitles=https://ghp_tokenpw-unit-secret-789@raw.example.com/subs.csv"], "--subtitles"),
    ],
)
def test_credentials_in_a_url_argument_are_refused_naming_the_flag(env, args, flag):
    """#23/1 and /12: a URL with user:password@ or a secret query parameter went into the entrypoint as is."""
    with pytest.raises(ValueError, match="value not shown") as err:
        sb.build_submission(["annotate", *args])
    assert flag in str(err.value) and "pw-unit-secret-789" not in str(err.value)
    ok = [
        "annotate",
        "--annotate.text.base_url=https://llm.internal/v1?model=x&keep=1",
        "--input",
        "s3://b/c",
    ]
    assert shlex.split(sb.build_submission(ok).entrypoint)[-3:] == ok[1:]  # a plain query is fine


TRACKED = ("pyproject.toml", ".gitignore", "pkg/__init__.py", "pkg/mod.py", "docs/a b [1].md", ".env.example")
SECRET_FILES = (
    ".env",
    ".env.local",
    "key.pem",
    "server.key",
    ".aws/credentials",
    "ray_token",
    "cluster.token",
    "id_rsa",
    "pkg/.env",
)


@pytest.fixture
def repo(tmp_path) -> Path:
    """A tiny git repository: tracked sources, untracked secret files and an untracked module."""
    root = tmp_path / "proj"
    for rel in TRACKED + SECRET_FILES + ("pkg/untracked_new.py", ".cache/blob.bin", "notes/todo.txt"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(f"{rel}\n")
    (root / ".gitignore").write_text(".cache/\n")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "add", "--", *TRACKED], check=True)
    return root


def _ray_package(root: Path, excludes: list[str], tmp: Path) -> set[str]:
    """The files Ray's own packaging (what JobSubmissionClient uploads) puts into the working_dir zip."""
    from ray._private.runtime_env.packaging import create_package

    target = tmp / f"pkg-{len(list(tmp.glob('pkg-*.zip')))}.zip"
    create_package(str(root), target, include_gitignore=True, excludes=excludes)
    with zipfile.ZipFile(target) as zf:
        return {n for n in zf.namelist() if not n.endswith("/")}


def test_only_git_tracked_files_travel_with_a_job(env, repo, tmp_path, caplog):
    """#13/1: untracked secret files (.env, *.pem, .aws/credentials, a Ray token…) never travel."""
    with caplog.at_level("WARNING", logger="cluster.shipping"):
        sub = sb.build_submission(["annotate"], working_dir=repo)
    assert "not shipped (untracked): " in caplog.text and "pkg/untracked_new.py" in caplog.text
    assert sub.runtime_env["working_dir"] == str(repo)
    packaged = _ray_package(repo, sub.runtime_env["excludes"], tmp_path)
    assert packaged == set(TRACKED)
    assert not packaged & set(SECRET_FILES)
    assert "pkg/untracked_new.py" not in packaged  # not tracked: only when allow-listed
    shipped = sb.build_submission(["annotate"], working_dir=repo, ship=["pkg/untracked_new.py", "notes"])
    assert _ray_package(repo, shipped.runtime_env["excludes"], tmp_path) == {
        *TRACKED,
        "pkg/untracked_new.py",
        "notes/todo.txt",
    }


def test_a_secret_file_that_would_travel_makes_submit_refuse(env, repo, tmp_path):
    subprocess.run(["git", "-C", str(repo), "add", "-f", ".env", "pkg/.env"], check=True)
    with pytest.raises(ValueError, match=r"would ship secret-looking files: \.env, pkg/\.env") as err:
        sb.build_submission(["annotate"], working_dir=repo)
    assert "git rm --cached" in str(err.value)
    subprocess.run(["git", "-C", str(repo), "rm", "-q", "--cached", ".env", "pkg/.env"], check=True)
    for allowed in (["key.pem"], [".aws"]):  # an allow-listed secret is refused too
        with pytest.raises(ValueError, match="secret-looking files"):
            sb.build_submission(["annotate"], working_dir=repo, ship=allowed)
    (repo / "link").symlink_to(tmp_path / "outside.txt")  # a tracked link would ship its target
    (tmp_path / "outside.txt").write_text("x")
    subprocess.run(["git", "-C", str(repo), "add", "link"], check=True)
    with pytest.raises(ValueError, match="link -> outside the working dir"):
        sb.build_submission(["annotate"], working_dir=repo)
    with pytest.raises(ValueError, match="--ship missing.txt: no such file"):
        sb.build_submission(["annotate"], working_dir=repo, ship=["missing.txt"])


def test_a_folder_outside_git_with_secret_files_is_refused(env, repo, tmp_path, caplog):
    """#23/6: outside git the secret files were only left out by a fixed list (.envrc, secrets.env,
    gcp-credentials.json and symlinks to credentials travelled) with a warning; now the same check
    as inside git refuses, and a clean folder ships everything but caches."""
    shutil.rmtree(repo / ".git")
    with pytest.raises(ValueError, match="would ship secret-looking files: ") as err:
        sb.build_submission(["annotate"], working_dir=repo)
    assert all(f in str(err.value) for f in (".env", "key.pem", ".aws/credentials", "pkg/.env"))
    for rel in SECRET_FILES:
        (repo / rel).unlink()
    for rel in (".envrc", "secrets.env", "conf/gcp-credentials.json"):  # each one alone is refused
        (repo / rel).parent.mkdir(exist_ok=True)
        (repo / rel).write_text("SECRET=1\n")
        with pytest.raises(ValueError, match=re.escape(rel)):
            sb.build_submission(["annotate"], working_dir=repo)
        (repo / rel).unlink()
    (tmp_path / "creds").write_text("aws_secret_access_key = x\n")
    (repo / "notes" / "creds").symlink_to(tmp_path / "creds")  # a link out of the folder
    with pytest.raises(ValueError, match=r"notes/creds -> outside the working dir"):
        sb.build_submission(["annotate"], working_dir=repo)
    (repo / "notes" / "creds").unlink()
    (repo / "linked").symlink_to(tmp_path, target_is_directory=True)  # a link to a folder
    with pytest.raises(ValueError, match=r"linked -> outside the working dir or a folder"):
        sb.build_submission(["annotate"], working_dir=repo)
    (repo / "linked").unlink()
    with caplog.at_level("WARNING", logger="cluster.shipping"):
        sub = sb.build_submission(["annotate"], working_dir=repo)
    assert "not a git work tree" in caplog.text
    packaged = _ray_package(repo, sub.runtime_env["excludes"], tmp_path)
    assert packaged == {*TRACKED, "pkg/untracked_new.py", "notes/todo.txt"}  # .cache/ stays here


@pytest.mark.parametrize(
    "name",
    [
        ".envrc",
        "secrets.env",
        "prod.env",
        "config/secrets.yaml",
        "gcp-credentials.json",
        ".git-credentials",
        ".npmrc",
        ".kube/config",
        "kubeconfig",
        "deploy/cluster.kubeconfig",
        ".docker/config.json",
    ],
)
def test_wider_secret_file_names_are_refused_in_git(env, repo, name):
    """#23/6: tracked .envrc, secrets.env, gcp-credentials.json (and the like) travelled."""
    (repo / name).parent.mkdir(parents=True, exist_ok=True)
    (repo / name).write_text("SECRET=1\n")
    subprocess.run(["git", "-C", str(repo), "add", "-f", name], check=True)
    with pytest.raises(ValueError, match=f"secret-looking files: {re.escape(name)}"):
        sb.build_submission(["annotate"], working_dir=repo)


def test_a_link_to_a_secret_file_and_source_files_named_like_secrets(env, repo):
    from cluster.shipping import is_secret_file

    (repo / "pkg" / "settings.txt").symlink_to(repo / "key.pem")  # inside, but at a secret-looking file
    subprocess.run(["git", "-C", str(repo), "add", "pkg/settings.txt"], check=True)
    with pytest.raises(ValueError, match=r"pkg/settings\.txt \(-> key\.pem\)"):
        sb.build_submission(["annotate"], working_dir=repo)
    for source in (
        "core/secrets.py",
        "docs/credentials.md",
        "tests/test_secrets.py",
        "cluster/fetch_secret.sh",
    ):
        assert not is_secret_file(source), source  # the project's own modules and docs still travel


def test_the_untracked_warning_never_advises_adding_a_secret(env, repo, caplog):
    """#23/6: 'not shipped (untracked): .env …; `git add` them' advised committing a secret."""
    with caplog.at_level("INFO", logger="cluster.shipping"):
        sb.build_submission(["annotate"], working_dir=repo)
    advice = [r.getMessage() for r in caplog.records if "git add" in r.getMessage()]
    assert advice and "pkg/untracked_new.py" in advice[0]
    for message in advice:
        assert not any(secret in message for secret in SECRET_FILES), message
    assert "secret-looking untracked file(s) stay here" in caplog.text


def test_shipping_list_prints_what_ray_packages_and_bundle_copies_it(env, repo, tmp_path, capsys):
    from cluster import shipping

    assert shipping.main(["list", "--dir", str(repo)]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert set(listed) == set(TRACKED) == _ray_package(repo, shipping.working_dir_excludes(repo), tmp_path)
    out = tmp_path / "bundle"
    for _ in range(2):  # a second run replaces the previous bundle
        assert shipping.main(["bundle", str(out), "--dir", str(repo)]) == 0
        got = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
        assert got == set(TRACKED) | {shipping.BUNDLE_STAMP}
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("x")
    assert shipping.main(["bundle", str(tmp_path / "other"), "--dir", str(repo)]) == 2  # not a bundle: kept
    assert (tmp_path / "other" / "keep.txt").exists()
    assert "not an emer bundle" in capsys.readouterr().err


def test_dashboard_address(env, monkeypatch):
    with pytest.raises(ValueError, match="RAY_ADDRESS"):
        sb.dashboard_address(None)
    assert sb.dashboard_address("127.0.0.1:8265") == "http://127.0.0.1:8265"
    monkeypatch.setenv("RAY_ADDRESS", "https://ray.example:8443/")
    assert sb.dashboard_address(None) == "https://ray.example:8443"
    for bad in ("ray://head:10001", "http://head:6379", "auto"):
        with pytest.raises(ValueError, match="--address"):
            sb.dashboard_address(bad)
    with pytest.raises(ValueError, match=r"http://\*\*\*@head:6379") as err:  # credentials redacted
        sb.dashboard_address("http://admin:hunter2-pw@head:6379")
    assert "hunter2-pw" not in str(err.value)


def test_auth_token_sources(env, monkeypatch, tmp_path):
    assert sb.auth_headers() == {}
    default = tmp_path / ".ray" / "auth_token"
    default.parent.mkdir()
    default.write_text("from-default-file\n")
    assert sb.auth_token() == "from-default-file"
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # the default file is ignored when auth is off
    assert sb.auth_token() is None
    path = tmp_path / "tok"
    path.write_text("from-path")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(path))
    assert sb.auth_token() == "from-path"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-env")
    assert sb.auth_headers() == {"Authorization": "Bearer from-env"}
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="RAY_AUTH_TOKEN_PATH"):
        sb.auth_token()


def test_entrypoint_checks_names_and_runs_the_command(env, monkeypatch, capsys):
    monkeypatch.delenv("OPENAI_API_KEY")
    assert entry_main(["--env-names", "AWS_SECRET_ACCESS_KEY,OPENAI_API_KEY", "--", "config"]) == 2
    out = capsys.readouterr()
    assert "not set: OPENAI_API_KEY" in out.out and "lack OPENAI_API_KEY" in out.err
    assert env["AWS_SECRET_ACCESS_KEY"] not in out.out + out.err
    # AWS keys may come from the instance profile: missing is not fatal; the command then runs
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    assert entry_main(["--env-names", "AWS_SECRET_ACCESS_KEY", "--", "config"]) == 0
    assert "annotate:" in capsys.readouterr().out  # `emer config` printed the resolved config


def _submit_args(argv):
    rest, overrides = split_overrides(argv)
    args = build_parser().parse_args(rest)
    args.overrides = overrides
    return args


def test_submit_forwards_overrides_and_a_shipped_config(env):
    from emer.commands.jobs import _job_command

    root = sb.project_root()
    assert root is not None
    config = root / "configs" / "demo.yaml"
    args = _submit_args(
        ["submit", "--config", str(config), "annotate", "--input", "x", "--annotate.frames=4"]
    )
    assert _job_command(args) == [
        "annotate",
        "--input",
        "x",
        "--config",
        "configs/demo.yaml",
        "--annotate.frames=4",
    ]
    preset = _submit_args(["submit", "--config", "cluster", "annotate"])  # resolved on the cluster
    assert _job_command(preset) == ["annotate", "--config", "cluster"]
    with pytest.raises(FileNotFoundError, match="no such file"):
        _job_command(_submit_args(["submit", "--config", "missing/run.yaml", "annotate"]))


def test_metrics_api():
    with pytest.raises(KeyError, match="not declared"):
        metrics.counter("emer_made_up")
    with pytest.raises(TypeError, match="gauge"):
        metrics.counter("emer_train_loss")
    c = metrics.counter("emer_clips_rejected")
    assert c._tags({"stage": "check", "bogus": 1}) == {"stage": "check", "reason": "none"}
    c.inc(1, {"stage": "check", "reason": "too_short"})  # outside Ray: a no-op, never an error
    metrics.gauge("emer_train_loss").set(None)
    assert metrics.prometheus_name("emer_clips_decoded") == "ray_emer_clips_decoded_total"
    assert metrics.prometheus_name("emer_train_loss") == "ray_emer_train_loss"
    assert metrics.prometheus_name("emer_stage_seconds") == "ray_emer_stage_seconds_bucket"


def test_progress_line():
    buf = io.StringIO()
    p = metrics.ProgressLine("annotate", total=10, unit="clips", every=3600, stream=buf)
    p.update(4, rejected=1)
    p.update(1, rejected=2)
    assert buf.getvalue() == ""  # throttled
    p.close()
    line = buf.getvalue().strip()
    assert line.startswith("annotate: 5/10 clips (50%)") and "clips/s" in line and "rejected=3" in line
    p.close()  # the final count is on screen already: no second copy of the line
    assert buf.getvalue().strip() == line


def test_placement_asks_for_custom_resources_only_when_configured():
    assert placement.remote_args({}, num_cpus=1) == {"num_cpus": 1}
    assert placement.remote_args({"decode": 1, "llm": 0}, num_cpus=1, num_gpus=0.5) == {
        "num_cpus": 1,
        "num_gpus": 0.5,
        "resources": {"decode": 1.0},
    }
    totals = {"CPU": 16.0, "decode": 8.0, "GPU": 2.0, "llm": 2.0}
    assert placement.fit_count({"CPU": 1, "decode": 1}, totals) == 8
    assert placement.fit_count({"CPU": 1, "llm": 1}, {"CPU": 4.0}) == 0
    assert Resources(actors=3).bounds() == (3, 3)
    assert Resources(max_actors=4).bounds() == (1, 4)  # autoscales from 1, also from 0 workers
    assert placement.spread((1, None), {"CPU": 1, "decode": 1}, totals) == 8
