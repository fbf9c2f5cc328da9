"""The entrypoint of a job submitted by ``emer submit``: ``python -m emer.job_entry --env-names … -- CMD``.

It reports which required variables the cluster node has (names only), fails early with the fix
when one is missing, then runs the ``emer`` command. See ``cluster.submit`` for what a submission
carries and what it never carries.
"""

from __future__ import annotations

import argparse
import os
import sys

from cluster.submit import check_env
from emer.cli import main


def entry_main(argv: list[str] | None = None) -> int:
    """Run ``emer <command…>`` inside a Ray job after checking the required variables by name."""
    parser = argparse.ArgumentParser(
        prog="python -m emer.job_entry", description="Entrypoint of a job submitted by `emer submit`."
    )
    parser.add_argument("--env-names", default="", help="comma-separated variables the job needs")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- emer subcommand and arguments")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    names = [n for n in args.env_names.split(",") if n]
    lacking = check_env(names)
    if lacking:
        print(
            f"emer job: the cluster nodes lack {', '.join(lacking)}: start Ray on them with these "
            "variables set (see docs/cluster.md, 'Secrets'); they are never sent with the job",
            file=sys.stderr,
            flush=True,
        )
        return 2
    # The job's runtime env (project folder, env vars) is merged with what the command's own
    # ray.init adds (init_ray's pass-through variables, same values): allow the overlap.
    os.environ["RAY_OVERRIDE_JOB_RUNTIME_ENV"] = "1"

    return main(command)


if __name__ == "__main__":
    sys.exit(entry_main())
