"""Which files of the project travel to the cluster: what git tracks, plus an explicit allow-list.

A job's ``working_dir`` (``emer submit``) and the cluster launcher's ``~/emer`` mount
(``make cluster-bundle``) carry only the files ``git ls-files`` lists in the folder, plus the paths
given with ``--ship``: everything else (``.env``, ``*.pem``, ``.aws/credentials``, a Ray token file,
caches, the virtual environment) stays here, whatever ``.gitignore`` says. For Ray's packaging this
is a default-deny ``excludes`` list (``allow_only``): exclude everything, re-include each shipped
file and its folders. A shipped file that looks secret by its name (``SECRET_FILE_PATTERNS``,
``SECRET_NAME_PATTERNS``: a tracked ``.env`` / ``.envrc`` / ``secrets.env`` / ``gcp-credentials.json``,
an allow-listed key) or a symlink that leaves the folder, names a folder or points at a secret-looking
file makes the caller refuse with the list of files and the fix. A folder that is not a git work tree
ships every file in it except ``SKIPPED_OUTSIDE_GIT`` (caches, the venv, run outputs), under the same
check (a secret-looking file or such a symlink in it refuses), with a warning.

Check what travels (the same packaging Ray uploads)::

    python -m cluster.shipping list [--dir DIR] [--ship PATH …]
    python -m cluster.shipping bundle build/cluster-bundle   # `make cluster-bundle`, for `ray up`
"""

from __future__ import annotations

import argparse
import fnmatch
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

log = logging.getLogger(__name__)

__all__ = [
    "SECRET_FILE_PATTERNS",
    "SECRET_NAME_PATTERNS",
    "SKIPPED_OUTSIDE_GIT",
    "allow_only",
    "check_no_secret_files",
    "folder_files",
    "is_secret_file",
    "packaged_files",
    "shipped_files",
    "working_dir_excludes",
    "write_bundle",
]

# File or folder names (any depth) that hold secrets: never shipped, also rsync_exclude'd in
# ray_cluster.yaml (except auth_token: the cluster's own token mount has that name).
SECRET_FILE_PATTERNS = (
    ".env",
    ".env.*",
    "*.env",
    ".envrc",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "*.token",
    "ray_token",
    "auth_token",
    "id_rsa",
    "id_dsa",
    "id_ecdsa",
    "id_ed25519",
    ".aws",
    ".ssh",
    ".gnupg",
    ".kube",
    "kubeconfig",
    "kubeconfig.*",
    "*.kubeconfig",
    ".docker",
    "credentials",
    ".git-credentials",
    ".netrc",
    ".npmrc",
    ".pgpass",
    ".pypirc",
)
# Broader names (``gcp-credentials.json``, ``secrets.env``, ``secrets.yaml``) that also match source
# code and its docs (``core/secrets.py``): a file with a ``SOURCE_SUFFIXES`` ending is exempt from these.
SECRET_NAME_PATTERNS = ("*credential*", "secrets.*", "secret.*")
SOURCE_SUFFIXES = (".py", ".pyi", ".md", ".rst")
SECRET_FILE_TEMPLATES = (".env.example", ".env.sample", ".env.template")  # documented, no values
# Outside git: caches, the venv, run outputs and big artefacts stay here (secret-looking files refuse).
SKIPPED_OUTSIDE_GIT = (
    ".git",
    ".venv",
    "venv",
    ".cache",
    "runs",
    "build",
    "dist",
    "__pycache__",
    "*.egg-info",
    ".pytest_cache",
    ".ruff_cache",
    "*.pt",
    "*.safetensors",
    "*.mp4",
)
BUNDLE_STAMP = ".emer-cluster-bundle"


def is_secret_file(relpath: str) -> bool:
    """Whether a path (relative, ``/``-separated) has a secret-looking name in any of its parts."""
    parts = [p.lower() for p in PurePosixPath(relpath).parts]
    if not parts or parts[-1] in SECRET_FILE_TEMPLATES:
        return False
    if any(fnmatch.fnmatchcase(part, pat) for part in parts for pat in SECRET_FILE_PATTERNS):
        return True
    return any(
        fnmatch.fnmatchcase(part, pat) and not part.endswith(SOURCE_SUFFIXES)
        for part in parts
        for pat in SECRET_NAME_PATTERNS
    )


def _git_tracked(root: Path) -> list[str] | None:
    """Files git tracks under ``root`` (relative to it, submodules included), or None outside git."""
    try:
        inside = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--is-inside-work-tree"], capture_output=True, text=True
        )
        if inside.returncode != 0 or inside.stdout.strip() != "true":
            return None
        listed = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--recurse-submodules"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError) as err:  # no git, or not a folder
        log.debug("git ls-files in %s failed: %s", root, err)
        return None
    names = [n for n in listed.stdout.split("\0") if n]
    return [n for n in names if os.path.lexists(root / n)]  # deleted here: nothing to ship


def _allow_listed(root: Path, ship: list[str] | tuple[str, ...]) -> list[str]:
    """Files under the ``--ship`` paths (relative to ``root``); explains a wrong path."""
    out: list[str] = []
    for given in ship:
        path = (root / given).resolve() if not Path(given).is_absolute() else Path(given).resolve()
        if not path.is_relative_to(root.resolve()):
            raise ValueError(f"--ship {given}: not inside the working dir {root}; copy it there first")
        if not path.exists():
            raise ValueError(f"--ship {given}: no such file or folder in {root}")
        files = [path] if path.is_file() else [p for p in sorted(path.rglob("*")) if p.is_file()]
        out += [p.relative_to(root.resolve()).as_posix() for p in files]
    return out


def shipped_files(root: str | Path, ship: list[str] | tuple[str, ...] = ()) -> list[str] | None:
    """Tracked files plus allow-listed ones (relative paths, sorted), or None when not in git."""
    root = Path(root)
    tracked = _git_tracked(root)
    if tracked is None:
        return None
    return sorted(set(tracked) | set(_allow_listed(root, ship)))


def folder_files(root: str | Path) -> list[str]:
    """Every file of a folder outside git (relative, sorted), but ``SKIPPED_OUTSIDE_GIT``; a symlink
    (to a file or a folder) is listed as itself and not followed, so the secret check sees it."""
    root = Path(root)
    out: list[str] = []
    for folder, dirs, names in os.walk(root):
        here = Path(folder).relative_to(root)
        kept = []
        for d in dirs:
            if _skipped_outside_git(d):
                continue
            if (Path(folder) / d).is_symlink():
                out.append((here / d).as_posix())  # a link to a folder: refused by the check
            else:
                kept.append(d)
        dirs[:] = kept
        out += [(here / n).as_posix() for n in names if not _skipped_outside_git(n)]
    return sorted(out)


def _skipped_outside_git(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name.lower(), pat) for pat in SKIPPED_OUTSIDE_GIT)


def check_no_secret_files(root: str | Path, files: list[str]) -> None:
    """Refuse files with secret-looking names and symlinks that point out of ``root``, at a folder or
    at a secret-looking file (Ray's packaging would copy the target's contents)."""
    root = Path(root).resolve()
    secret = [f for f in files if is_secret_file(f)]
    links = []
    for f in files:
        path = root / f
        if path.is_symlink():
            target = path.resolve()
            if not target.is_relative_to(root) or target.is_dir():
                links.append(f"{f} -> outside the working dir or a folder")
            elif is_secret_file(target.relative_to(root).as_posix()) and f not in secret:
                secret.append(f"{f} (-> {target.relative_to(root)})")
    if secret or links:
        raise ValueError(
            f"{root} would ship secret-looking files: {', '.join(secret + links)}. Fix: untrack them "
            "(`git rm --cached FILE` and add them to .gitignore) or, in a folder outside git, move them "
            "out of it; drop them from --ship, or replace a link by the file itself; secrets reach the "
            "cluster from its nodes' environment (docs/cluster.md, 'Secrets')"
        )


def _escape(relpath: str) -> str:
    """A path as a literal gitwildmatch pattern (``*?[]\\`` and trailing blanks escaped)."""
    escaped = re.sub(r"([\\*?\[\]])", r"\\\1", relpath)
    return re.sub(r" $", r"\\ ", escaped)


def allow_only(files: list[str]) -> list[str]:
    """Ray ``excludes`` that leave exactly ``files`` (and their folders) in the package.

    Last match wins: ``*`` excludes everything, ``!.`` keeps the root, each folder is re-included
    with its contents excluded again (``!/d``, ``/d/*``), then each file is re-included.
    """
    folders = sorted(
        {str(PurePosixPath(f).parents[i]) for f in files for i in range(len(PurePosixPath(f).parts) - 1)}
    )
    patterns = ["*", "!."]
    for folder in folders:
        patterns += [f"!/{_escape(folder)}", f"/{_escape(folder)}/*"]
    return patterns + [f"!/{_escape(f)}" for f in sorted(files)]


def working_dir_excludes(root: str | Path, ship: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The ``excludes`` of a job whose ``working_dir`` is ``root``; refuses secret files (ValueError)."""
    files = shipped_files(root, ship)
    if files is None:
        files = sorted(set(folder_files(root)) | set(_allow_listed(Path(root), ship)))
        check_no_secret_files(root, files)
        log.warning(
            "%s is not a git work tree: shipping its %d files but caches and run outputs (%s); in a "
            "git work tree only tracked files travel",
            root,
            len(files),
            ", ".join(SKIPPED_OUTSIDE_GIT),
        )
        return allow_only(files)
    if not files:
        raise ValueError(f"{root}: git tracks no file here; `git add` the project or pass --no-working-dir")
    check_no_secret_files(root, files)
    _warn_left_behind(Path(root), files)
    return allow_only(files)


def _warn_left_behind(root: Path, files: list[str]) -> None:
    """Warn about untracked, not ignored files (a new module not yet ``git add``-ed stays here); a
    secret-looking one is only mentioned as staying here, never with advice to add it."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--others", "--exclude-standard"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return
    untracked = sorted(set(n for n in listed.split("\0") if n) - set(files))
    left = [n for n in untracked if not is_secret_file(n)]
    if left:
        shown = ", ".join(left[:5]) + (f" and {len(left) - 5} more" if len(left) > 5 else "")
        log.warning("not shipped (untracked): %s; `git add` them or pass --ship PATH", shown)
    kept = len(untracked) - len(left)
    if kept:
        log.info("%d secret-looking untracked file(s) stay here, as they should (never shipped)", kept)


def packaged_files(root: str | Path, excludes: list[str]) -> list[str]:
    """The files Ray's own packaging puts into the job's ``working_dir`` zip (built in a temp dir)."""
    from ray._private.runtime_env.packaging import create_package  # heavy: only when listing

    include_gitignore = os.environ.get("RAY_RUNTIME_ENV_IGNORE_GITIGNORE", "0") != "1"
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "working_dir.zip"
        create_package(str(root), target, include_gitignore=include_gitignore, excludes=excludes)
        with zipfile.ZipFile(target) as zf:
            return sorted(n for n in zf.namelist() if not n.endswith("/"))


def write_bundle(root: str | Path, out: str | Path, ship: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Copy the shipped files of ``root`` into ``out`` (a previous bundle there is replaced)."""
    root, out = Path(root), Path(out)
    files = shipped_files(root, ship)
    if files is None:
        raise ValueError(f"{root}: not a git work tree; a bundle holds git-tracked files only")
    check_no_secret_files(root, files)
    if out.exists():
        if not (out / BUNDLE_STAMP).is_file():
            raise ValueError(
                f"{out}: exists and is not an emer bundle (no {BUNDLE_STAMP}); pick another folder"
            )
        shutil.rmtree(out)
    for rel in files:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, out / rel)
    (out / BUNDLE_STAMP).write_text("made by `python -m cluster.shipping bundle`: git-tracked files only\n")
    return files


def main(argv: list[str] | None = None) -> int:
    """``list``: the files a job would ship; ``bundle OUT``: copy them into OUT (for ``ray up``)."""
    parser = argparse.ArgumentParser(prog="python -m cluster.shipping", description=main.__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    listing = sub.add_parser("list", help="print the files Ray would package for a job")
    bundle = sub.add_parser(
        "bundle", help="copy the shipped files into a folder (ray_cluster.yaml mounts it)"
    )
    bundle.add_argument("out", help="the bundle folder, e.g. build/cluster-bundle")
    for p in (listing, bundle):
        p.add_argument("--dir", default=".", help="the project folder (default: .)")
        p.add_argument("--ship", action="append", default=[], metavar="PATH", help="an untracked path to add")
    args = parser.parse_args(argv)
    try:
        if args.action == "list":
            print("\n".join(packaged_files(args.dir, working_dir_excludes(args.dir, args.ship))))
        else:
            files = write_bundle(args.dir, args.out, args.ship)
            print(f"{args.out}: {len(files)} files (git-tracked or --ship)", file=sys.stderr)
    except ValueError as err:
        print(f"cluster.shipping {args.action}: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
