"""Decode clips in a child process that is abandoned (killed) when one clip takes too long.

``ChildRunner(timeout_s).run(fn, *args)`` runs a picklable module-level function in one long-lived
child (``spawn``: a fresh interpreter, no forked copy of the Ray worker's threads) and returns its
result, re-raises its exception, or raises ``DecodeTimeout`` after ``timeout_s`` (the child is
killed, the next call starts a new one) or ``ChildDied`` when the child exits mid-job (a native
crash in a decoder then costs one row, not the actor). One runner per decode actor: the child starts
once (its imports are not counted against the timeout) and serves every row. The child exits when
its pipe closes or its parent process is gone.

``decode_job`` is what ``DecodeStage`` runs there; ``hang_job`` never returns (the timeout tests'
``EMER_DEBUG_HANG_ON``).
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import os
import threading
import time
from typing import Any

from pipelines import media

log = logging.getLogger(__name__)

START_TIMEOUT_S = 120.0  # a child must be up (imports done) within this
# Imported by the child before it says it is ready: ``pipelines.media`` imports its decoders lazily,
# and on a loaded machine their import alone can outlast a short per-clip timeout of the first clip.
DECODERS = ("av", "decord", "PIL.Image")


class DecodeTimeout(Exception):
    """The job ran past the runner's timeout; its child was killed."""


class ChildDied(Exception):
    """The child process exited while it ran the job (native crash, killed for memory)."""


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(1)  # orphaned (the actor died): never keep decoding for nobody


def _serve(conn, parent_pid: int, preload: str) -> None:
    """The child's loop: (fn, args) in, ("ok", result) or ("err", exception) out."""
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    importlib.import_module(preload)
    for name in DECODERS:
        try:
            importlib.import_module(name)
        except ImportError:  # the job that needs it reports it
            pass
    conn.send(("ready", os.getpid()))
    while True:
        try:
            fn, args = conn.recv()
        except (EOFError, OSError):
            return
        try:
            reply = ("ok", fn(*args))
        except Exception as err:  # noqa: BLE001 - every error goes back to the caller
            reply = ("err", err)
        try:
            conn.send(reply)
        except Exception as err:  # noqa: BLE001 - e.g. an unpicklable result or exception
            conn.send(("err", RuntimeError(f"{type(err).__name__}: {err}")))


class ChildRunner:
    """Runs one job at a time in a child process, with a per-job timeout (see the module doc)."""

    def __init__(self, timeout_s: float, preload: str = __name__) -> None:
        self.timeout_s = timeout_s
        self.preload = preload
        self.proc = None
        self.conn = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def _start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        args = (child, os.getpid(), self.preload)
        self.proc = ctx.Process(target=_serve, args=args, daemon=True, name="emer-decode")
        self.proc.start()
        child.close()
        if not self.conn.poll(START_TIMEOUT_S):
            self.close()
            raise ChildDied(f"the decode process did not start within {START_TIMEOUT_S:g} s")
        self._recv()

    def run(self, fn, *args: Any) -> Any:
        """``fn(*args)`` in the child; raises ``DecodeTimeout`` / ``ChildDied`` / the job's error."""
        if self.proc is None or not self.proc.is_alive():
            self.close()
            self._start()
        self.conn.send((fn, args))
        if not self.conn.poll(self.timeout_s):
            self.close()
            raise DecodeTimeout(f"timed out after {self.timeout_s:g} s")
        status, value = self._recv()
        if status == "err":
            raise value
        return value

    def _recv(self) -> tuple[str, Any]:
        try:
            return self.conn.recv()
        except (EOFError, OSError) as err:
            self.proc.join(5.0)
            code = self.proc.exitcode
            self.close()
            raise ChildDied(f"the decode process died (exit code {code})") from err

    def close(self) -> None:
        """Kill the child (if any); the next ``run`` starts a new one."""
        if self.proc is not None:
            if self.proc.is_alive():
                self.proc.kill()
            self.proc.join(5.0)
        if self.conn is not None:
            self.conn.close()
        self.proc = self.conn = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown: nothing left to do
            pass


_FACES: list[media.FaceCounter] = []  # one face counter per child process, made on first use


def decode_job(path: str, cfg) -> media.Decoded:
    """``media.decode_clip`` with the child's own face counter when the face check is on."""
    if cfg.face_check and not _FACES:
        _FACES.append(media.FaceCounter())
    return media.decode_clip(path, cfg, _FACES[0] if cfg.face_check else None)


def hang_job(path: str, cfg) -> None:
    """A decode that never ends (fault injection for the timeout tests)."""
    while True:
        time.sleep(60)
