"""When a run counts as failed, in one place: the failure budget and the early stop.

- ``check_failure_budget``: a command whose rows failed beyond ``max_failure_fraction`` (or all of
  them) raises ``RunFailed`` after its outputs are written, so it exits non-zero (a Ray job ends
  FAILED) while the rows it finished are kept for the resume.
- ``FatalStreak``: errors that every later row would repeat (HTTP 401 / 403 / 404: a wrong key, a
  wrong model name or endpoint) stop the run after ``limit`` of them in a row, instead of failing
  every row one by one.
- ``BlockErrors``: the errors of the blocks Ray Data gave up on, for the reason of the rows lost
  with them (a lost node, a crashed worker).
"""

from __future__ import annotations

import logging
import re

FATAL_RE = re.compile(r"\bHTTP (401|403|404)\b")
FATAL_HINT = "check the API key variable, the model name and base_url, then rerun the same command"


class RunFailed(RuntimeError):
    """The run finished (outputs written) but failed as a whole; the CLI exits 1 with this message."""


def is_fatal(reason: str | None) -> bool:
    """Whether a row's failure reason is one every later request would repeat (auth, not found)."""
    return bool(reason) and bool(FATAL_RE.search(reason))


class FatalStreak:
    """Counts fatal failures in a row; ``observe`` returns the reason once ``limit`` is reached."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self.reason = ""

    def observe(self, failed: bool, reason: str | None) -> str | None:
        if failed and is_fatal(reason):
            self.count += 1
            self.reason = str(reason)
        elif not failed:
            self.count = 0
        return self.tripped()

    def tripped(self) -> str | None:
        """Why the streak stops the run, once ``limit`` fatal failures came in a row; else None."""
        if self.limit and self.count >= self.limit:
            return f"{self.count} in a row failed with: {self.reason[:300]}"
        return None


def check_failure_budget(
    what: str, failed: int, total: int, max_fraction: float, kept: str, unit: str = "rows"
) -> None:
    """Raise ``RunFailed`` when all ``total`` rows failed, or more than ``max_fraction`` of them.

    ``kept`` says what stays written, e.g. 'the 7 finished samples are kept'."""
    if total <= 0 or failed <= 0:
        return
    share = failed / total
    if failed < total and share <= max_fraction:
        return
    raise RunFailed(
        f"{what}: {failed} of {total} {unit} failed ({share:.0%}, allowed {max_fraction:.0%}; "
        f"--max-failure-fraction sets it); {kept}: fix the cause (see the recorded reasons) and "
        "rerun the same command"
    )


class BlockErrors(logging.Handler):
    """While entered, collects the errors of the blocks Ray Data gave up on (``max_errored_blocks``):
    its streaming executor logs each one with the exception, the only place the driver sees it
    (distinct messages, in order, in ``messages``). ``lost_nodes()``: the nodes that died meanwhile,
    since Ray's errors for a lost node often do not name it (``ActorUnavailableError: ... Socket
    closed``, ``ObjectReconstructionFailedError`` for the blocks its object store held)."""

    LOGGER = "ray.data._internal.execution.streaming_executor_state"

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []
        self._dead_before: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        err = record.exc_info[1] if record.exc_info else None
        if err is not None and "raised from a task of operator" in record.getMessage():
            text = f"{type(err).__name__}: {' '.join(str(err).split())}"[:600]
            if text not in self.messages:
                self.messages.append(text)

    def lost_nodes(self) -> list[str]:
        """``"<node id> (<address>): <Ray's death reason>"`` of each node that died while entered."""
        return [
            f"{n['NodeID']} ({n.get('NodeManagerAddress', '?')}): "
            + " ".join(str(n.get("DeathReasonMessage") or n.get("DeathReason") or "no reason given").split())
            for n in _nodes()
            if not n.get("Alive") and n["NodeID"] not in self._dead_before
        ]

    def __enter__(self) -> BlockErrors:
        self._dead_before = {n["NodeID"] for n in _nodes() if not n.get("Alive")}
        logging.getLogger(self.LOGGER).addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger(self.LOGGER).removeHandler(self)


def _nodes() -> list[dict]:
    """``ray.nodes()`` when connected to Ray, else none."""
    import ray

    return ray.nodes() if ray.is_initialized() else []
