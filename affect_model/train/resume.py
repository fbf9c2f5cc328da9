"""A training run resumes only with the settings it was started with (``core.fingerprint``).

``run_record(run_cfg)`` is the run's output-affecting config (the ``model`` and ``train`` sections, and
``evaluate`` when ``train.eval_each_epoch`` scores every epoch with it) and its fingerprint. Rank 0
writes it into every checkpoint (``run_config.json``, sealed with the checkpoint's digests). Before a
rerun overwrites anything, the driver compares the newest checkpoint's record with the current one
(``check_run_folder``), and every worker does so again for the checkpoint Ray hands it
(``check_checkpoint``): a changed setting raises ``ResumeMismatch`` naming each key, old -> new.

``IGNORED_KEYS``: settings that cannot change what training computes, so a resume may change them.
Everything else counts, conservatively, including ``train.workers.num_gpus``,
``train.workers.actors`` (the data split and the batch), ``train.epochs`` / ``train.max_steps`` (the
lr schedule) and the model paths.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from affect_model.train.config import TrainRun
from core import storage
from core.config import to_plain
from core.fingerprint import check_resume, fingerprint, output_affecting

log = logging.getLogger(__name__)
RECORD_FILE = "run_config.json"
FORMAT = "emer-train-record/1"
IGNORED_KEYS = frozenset(
    {
        "train.storage_path",  # where the run is written (with run_name: which run this is)
        "train.run_name",
        "train.workers.num_cpus",  # resources
        "train.max_failures",  # fault tolerance
        "train.checkpoint_every",  # checkpoint housekeeping (the training steps are the same)
        "train.keep_checkpoints",
        "train.checkpoint_key_env",  # where the key comes from (a wrong key is refused by the HMAC check)
        "train.checkpoint_key_file",
        "train.log_every",  # logging
        "train.tensorboard",
        "train.mlflow",
        "train.mlflow_tracking_uri",
        "train.mlflow_experiment",
        "train.materialize",  # the same rows in the same order, kept in Ray's object store or not
        "train.features",  # settings of `emer features`, which training does not read
        "train.infer",  # settings of `emer infer`, which training does not read
        "evaluate.out",  # where an evaluation report would go
        "evaluate.llm.concurrency",  # how the scoring LLM is called, not what it answers
        "evaluate.llm.timeout_s",
        "evaluate.llm.max_retries",
        "evaluate.llm.retry_backoff_s",
        "evaluate.llm.api_key_env",
        "evaluate.llm.cache_dir",
    }
)


def _sections(run_cfg: TrainRun) -> dict[str, Any]:
    out = {"model": to_plain(run_cfg.model), "train": to_plain(run_cfg.train)}
    evaluate = getattr(run_cfg, "evaluate", None)
    if run_cfg.train.eval_each_epoch and evaluate is not None:
        out["evaluate"] = to_plain(evaluate)  # URL credentials redacted: the record is saved
    return out


def run_record(run_cfg: TrainRun) -> dict[str, Any]:
    """The output-affecting config of a training run and its fingerprint (JSON-ready)."""
    sections = _sections(run_cfg)
    return {
        "format": FORMAT,
        "fingerprint": fingerprint(sections, IGNORED_KEYS),
        "config": output_affecting(sections, IGNORED_KEYS),
    }


def write_record(record: dict[str, Any], folder: str) -> None:
    with open(os.path.join(folder, RECORD_FILE), "w") as f:
        json.dump(record, f, indent=1, sort_keys=True)


def _check(saved: dict[str, Any] | None, record: dict[str, Any], what: str, run_uri: str) -> None:
    fix = (
        f"to resume, restore the old value(s) (they are in {storage.join(run_uri, 'config.yaml')}); "
        "to train with the new ones, start a new run: another train.run_name or train.storage_path"
    )
    check_resume(saved["config"] if saved else None, record["config"], IGNORED_KEYS, what, fix)


def _parse(text: str, where: str) -> dict[str, Any]:
    try:
        saved = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{where}: not JSON ({err}); delete that checkpoint or start a new run") from err
    if not isinstance(saved, dict) or saved.get("format") != FORMAT or "config" not in saved:
        raise ValueError(f"{where}: not an emer training record ({FORMAT}); start a new run")
    return saved


def check_checkpoint(folder: str, record: dict[str, Any], run_uri: str) -> None:
    """Raise ``ResumeMismatch`` if the local checkpoint ``folder`` was saved with other settings."""
    path = os.path.join(folder, RECORD_FILE)
    saved = None
    if os.path.exists(path):
        with open(path) as f:
            saved = _parse(f.read(), path)
    _check(saved, record, f"training run {run_uri} from its checkpoint {folder}", run_uri)


def check_run_folder(run_uri: str, record: dict[str, Any]) -> str | None:
    """Compare with the newest checkpoint under ``run_uri`` that holds a record (local or s3://);
    returns that checkpoint's URI (None: nothing to resume) or raises ``ResumeMismatch``."""
    _, base = storage.filesystem(run_uri)
    prefix = ("s3://" + base if storage.is_s3(run_uri) else base).rstrip("/") + "/"
    found = []
    for uri in storage.list_files(run_uri, suffixes=[RECORD_FILE]):
        parts = uri[len(prefix) :].split("/") if uri.startswith(prefix) else []
        if len(parts) == 2 and parts[0].startswith("checkpoint_") and parts[1] == RECORD_FILE:
            found.append(uri)
    if not found:
        return None
    newest = max(found)  # checkpoint_<zero-padded step>
    _check(_parse(storage.read_text(newest), newest), record, f"training run {run_uri}", run_uri)
    log.info("%s: resuming with the settings it was started with (%s)", run_uri, newest)
    return newest.rsplit("/", 1)[0]
