"""``emer submit <subcommand> [args…]`` and ``emer jobs list|status|logs|stop``: Ray jobs from the CLI.

The cluster is reached through its dashboard's Jobs API (``--address`` / ``RAY_ADDRESS``, normally the
``ray dashboard ray_cluster.yaml`` SSH tunnel on http://127.0.0.1:8265) with the token from the
environment; see ``cluster.submit`` for what a submission carries and what it never carries.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
from pathlib import Path

from cluster import fit
from cluster import submit as sb
from core.secrets import redact_url
from emer.commands.flags import Parents
from emer.runconfig import load_run_config

log = logging.getLogger(__name__)


def _dashboard_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--address",
        default=None,
        help="the cluster dashboard's Jobs API URL, e.g. http://127.0.0.1:8265 (default: $RAY_ADDRESS)",
    )
    return p


def register(sub: argparse._SubParsersAction, parents: Parents) -> None:
    dashboard = _dashboard_parser()
    p = sub.add_parser(
        "submit",
        parents=[*parents.config, dashboard],
        help="run any emer command as a job on a Ray cluster",
        description="Submit `emer SUBCOMMAND ARGS…` as a Ray job (the project folder travels with it). "
        "Secret variables (S3 keys, LLM API keys) are passed by name only: the cluster's "
        "nodes must have them (or an IAM role); their values are never sent or stored. "
        "Options of `emer submit` go before SUBCOMMAND.",
    )
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME",
        help="another environment variable the job needs (repeatable); by name if secret",
    )
    p.add_argument(
        "--working-dir",
        default=None,
        metavar="DIR",
        help="project folder to ship (default: the emer source folder, if run from one)",
    )
    p.add_argument(
        "--ship",
        action="append",
        default=[],
        metavar="PATH",
        help="an untracked file or folder of the working dir to ship as well (repeatable); only "
        "git-tracked files travel otherwise",
    )
    p.add_argument(
        "--no-working-dir",
        action="store_true",
        help="ship nothing: use the emer installed on the cluster's nodes",
    )
    p.add_argument("--python", default="python", help="python executable on the cluster (default: python)")
    p.add_argument("--submission-id", default=None, help="job id to use (default: Ray picks one)")
    p.add_argument("--num-cpus", type=float, default=None, help="CPUs reserved for the job's driver")
    p.add_argument("--num-gpus", type=float, default=None, help="GPUs reserved for the job's driver")
    p.add_argument(
        "--resources",
        default=None,
        metavar="JSON",
        help="custom resources reserved for the driver, e.g. '{\"llm\": 1}'",
    )
    p.add_argument(
        "--follow",
        action="store_true",
        help="stream the job's logs until it ends; exit 0 only if it succeeded",
    )
    p.add_argument(
        "--cluster-yaml",
        default=None,
        metavar="FILE",
        help="cluster launcher config whose node types the run's resource asks must fit before "
        "anything is sent (default: ray_cluster.yaml of the emer source folder)",
    )
    p.add_argument(
        "--skip-fit-check",
        action="store_true",
        help="submit without checking the asks against --cluster-yaml (e.g. a cluster made otherwise)",
    )
    p.add_argument(
        "job",
        nargs=argparse.REMAINDER,
        metavar="SUBCOMMAND [ARGS…]",
        help="the emer command to run on the cluster",
    )
    p.set_defaults(func=cmd_submit)

    j = sub.add_parser(
        "jobs",
        parents=parents.plain,
        help="list, inspect, follow and stop Ray jobs",
        description="Jobs on the Ray cluster at --address / RAY_ADDRESS.",
    )
    jsub = j.add_subparsers(dest="jobs_command", metavar="ACTION")
    lp = jsub.add_parser(
        "list",
        parents=[*parents.plain, dashboard],
        help="list submitted jobs",
        description="Submitted jobs, oldest first.",
    )
    lp.add_argument("--json", action="store_true", help="print JSON instead of a table")
    lp.set_defaults(func=cmd_list)
    for name, func, helptext in (
        ("status", cmd_status, "show a job's status"),
        ("logs", cmd_logs, "print (or --follow) a job's logs"),
        ("stop", cmd_stop, "stop a running job"),
    ):
        sp = jsub.add_parser(
            name, parents=[*parents.plain, dashboard], help=helptext, description=helptext + "."
        )
        sp.add_argument("job_id", help="submission id (from `emer submit` or `emer jobs list`)")
        if name == "logs":
            sp.add_argument(
                "--follow",
                "-f",
                action="store_true",
                help="stream until the job ends; exit 0 only if it succeeded",
            )
        if name == "stop":
            sp.add_argument("--wait", action="store_true", help="wait until the job has stopped")
        sp.set_defaults(func=func)
    j.set_defaults(func=lambda args: (j.print_help(), 2)[1])


def _job_command(args) -> list[str]:
    command = list(args.job)
    if command[:1] == ["--"]:
        command = command[1:]
    for arg in command[1:]:
        if not arg.startswith(("-", "/", "s3://")) and os.path.exists(arg):
            log.warning(
                "%s is a relative local path: on the cluster it resolves inside the job's working "
                "directory; pass an absolute path the nodes share, or an s3:// URI",
                arg,
            )
    for config in args.config or []:
        command += ["--config", _config_path(config, args)]
    if getattr(args, "log_level", None) not in (None, "INFO"):
        command += ["--log-level", args.log_level]
    return command + [f"--{o}" for o in getattr(args, "overrides", [])]


def _config_path(path: str, args) -> str:
    """A config file shipped with the job is passed relative to the job's working directory; a preset
    name (``--config cluster``) is passed as is and resolved on the cluster."""
    full = Path(path).expanduser().resolve()
    if not full.is_file():
        if "/" not in path and not path.endswith((".yaml", ".yml")):
            return path
        raise FileNotFoundError(f"--config {path}: no such file")
    root = _working_dir(args)
    if root is not None and full.is_relative_to(Path(root).resolve()):
        return str(full.relative_to(Path(root).resolve()))
    log.warning("--config %s is not shipped with the job: the cluster needs it at %s", path, full)
    return str(full)


def _working_dir(args) -> str | None:
    if args.no_working_dir:
        return None
    if args.working_dir:
        if not Path(args.working_dir).is_dir():
            raise FileNotFoundError(f"--working-dir {args.working_dir}: no such folder")
        return args.working_dir
    root = sb.project_root()
    return str(root) if root else None


def _resources(text: str | None) -> dict[str, float] | None:
    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError as err:
        raise ValueError(f"--resources {text!r}: not JSON ({err}); e.g. '{{\"llm\": 1}}'") from err


def _job_configs(job: list[str]) -> list[str]:
    """The ``--config`` values given after the subcommand."""
    out = []
    for i, arg in enumerate(job):
        if arg == "--config" and i + 1 < len(job):
            out.append(job[i + 1])
        elif arg.startswith("--config="):
            out.append(arg.split("=", 1)[1])
    return out


def _fit_check(args) -> None:
    """Refuse a run whose resource asks the cluster's node types cannot place (``cluster.fit``)."""
    command = [a for a in args.job if a != "--"]
    sections = fit.COMMAND_SECTIONS.get(command[0] if command else "")
    if args.skip_fit_check or not sections:
        return
    path = Path(args.cluster_yaml) if args.cluster_yaml else fit.DEFAULT_YAML
    if not path.is_file():
        if args.cluster_yaml:
            raise FileNotFoundError(f"--cluster-yaml {args.cluster_yaml}: no such file")
        log.warning("no %s: the fit check is skipped (pass --cluster-yaml)", path)
        return
    configs = list(args.config or []) + _job_configs(command[1:])
    run = load_run_config(configs or None, getattr(args, "overrides", []))
    fit.check_fit(run, path, sections, label=",".join(configs) or "(defaults)")


def cmd_submit(args) -> int:
    resources = _resources(args.resources)
    _fit_check(args)
    sub = sb.build_submission(
        _job_command(args),
        extra_env=args.env,
        working_dir=_working_dir(args),
        python=args.python,
        ship=args.ship,
    )
    try:
        job_id = sb.submit(sub, args.address, args.submission_id, args.num_cpus, args.num_gpus, resources)
    except (RuntimeError, ConnectionError) as err:
        return _fail("submit", err, args.address)
    shipped = sub.runtime_env.get("working_dir", "nothing (the cluster's installed emer)")
    by_value = ", ".join(sorted(sub.runtime_env["env_vars"])) or "-"
    print(
        f"submitted {job_id}: {sub.entrypoint}\n  shipped: {shipped}; env by value: {by_value}; "
        f"by name: {', '.join(sub.env_names) or '-'}",
        flush=True,
    )
    if not args.follow:
        print(f"follow it with: emer jobs logs --follow {job_id}", flush=True)
        return 0
    return _follow(args.address, job_id)


def _follow(address: str | None, job_id: str) -> int:
    try:
        status = sb.follow(sb.client(address), job_id)
    except KeyboardInterrupt:
        print(
            f"\nstopped following; job {job_id} keeps running (emer jobs logs --follow {job_id}, "
            f"emer jobs stop {job_id})",
            file=sys.stderr,
        )
        return 130
    print(f"job {job_id}: {status}", flush=True)
    return 0 if status == "SUCCEEDED" else 1


def _fail(action: str, err: Exception, address: str | None) -> int:
    text = str(err)
    if "401" in text or "Authentication required" in text:
        hint = "set RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) to the cluster's token"
    elif "403" in text:
        hint = "the token was refused: check RAY_AUTH_TOKEN"
    elif isinstance(err, ConnectionError) or "connect" in text.lower():
        hint = "is the dashboard reachable? open the tunnel with `ray dashboard ray_cluster.yaml`"
    else:
        hint = ""
    url = redact_url(address or os.environ.get("RAY_ADDRESS", ""))
    print(
        f"emer {action}: {url}: {text.splitlines()[0] if text else type(err).__name__}"
        + (f"\n  {hint}" if hint else ""),
        file=sys.stderr,
    )
    return 1


def _when(ms: int | None) -> str:
    return dt.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S") if ms else "-"


def _duration(job) -> str:
    if not job.start_time:
        return "-"
    end = job.end_time or dt.datetime.now().timestamp() * 1000
    return f"{(end - job.start_time) / 1000:.0f}s"


def cmd_list(args) -> int:
    try:
        jobs = [j for j in sb.client(args.address).list_jobs() if j.submission_id]
    except (RuntimeError, ConnectionError) as err:
        return _fail("jobs list", err, args.address)
    jobs.sort(key=lambda j: j.start_time or 0)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "id": j.submission_id,
                        "status": str(j.status.value),
                        "start": j.start_time,
                        "end": j.end_time,
                        "entrypoint": j.entrypoint,
                        "command": (j.metadata or {}).get("emer_command", ""),
                    }
                    for j in jobs
                ],
                indent=1,
            )
        )
        return 0
    print(f"{'ID':<30} {'STATUS':<10} {'STARTED':<19} {'TOOK':>7}  COMMAND")
    for j in jobs:
        command = j.entrypoint.split(" -- ", 1)[-1]
        print(
            f"{j.submission_id:<30} {str(j.status.value):<10} {_when(j.start_time):<19} "
            f"{_duration(j):>7}  {command[:80]}"
        )
    return 0


def cmd_status(args) -> int:
    try:
        info = sb.client(args.address).get_job_info(args.job_id)
    except (RuntimeError, ConnectionError) as err:
        return _fail("jobs status", err, args.address)
    status = str(info.status.value)
    print(f"{args.job_id}: {status}" + (f" ({info.message})" if info.message else ""))
    print(f"  started {_when(info.start_time)}, ended {_when(info.end_time)}")
    print(f"  entrypoint: {info.entrypoint}")
    return 1 if status == "FAILED" else 0


def cmd_logs(args) -> int:
    try:
        if args.follow:
            return _follow(args.address, args.job_id)
        sys.stdout.write(sb.client(args.address).get_job_logs(args.job_id))
        return 0
    except (RuntimeError, ConnectionError) as err:
        return _fail("jobs logs", err, args.address)


def cmd_stop(args) -> int:
    try:
        jc = sb.client(args.address)
        stopped = jc.stop_job(args.job_id)
        if args.wait:
            status = sb.wait(jc, args.job_id, timeout=60)
        else:
            status = str(jc.get_job_status(args.job_id).value)
    except (RuntimeError, ConnectionError) as err:
        return _fail("jobs stop", err, args.address)
    print(f"{args.job_id}: {'stop requested' if stopped else 'was not running'}; status {status}")
    return 0
