"""How synonyms are merged before set-level scoring: exact, precomputed groups, emotion wheel, LLM.

Each grouping turns (ground truth, predictions) into one or more ``Encoded`` views (label -> group
id pairs) plus diagnostics. ``groups`` and ``llm`` follow MER2024: per sample, every label maps to
the first element of the group holding it (later groups win on a repeat); labels in no group stay
themselves. ``wheel`` gives ten views: five wheels x level-1 / level-2 clusters.
"""

from __future__ import annotations

import ast
import dataclasses
import io
import json
import logging
import posixpath
import zipfile
from collections.abc import Callable, Sequence

import numpy as np

from core import storage
from core.llm.base import LLMConfig, LLMRequest, request_for
from core.llm.labels import parse_label_groups
from core.llm.prompts import REASK_SUFFIX
from evaluation.ov import Encoded, encode, flatten
from evaluation.tables import EvalInputError, read_table
from evaluation.wheel import Wheel

log = logging.getLogger(__name__)
Groups = list[list[str]]
_GROUPS_FIX = "each entry must be a list literal of lists of labels, e.g. [['happy', 'joyful'], ['sad']]"


def _parse_groups(text: str, where: str) -> Groups:
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise EvalInputError(
            f"{where}: malformed groups literal {text.strip()[:60]!r}; {_GROUPS_FIX}"
        ) from None
    return _check_groups(value, where)


def _check_groups(value, where: str) -> Groups:
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(g, (list, tuple)) and all(isinstance(x, str) for x in g) for g in value
    ):
        raise EvalInputError(f"{where}: not a list of lists of strings; {_GROUPS_FIX}")
    return [[x.strip().lower() for x in g if x.strip()] for g in value]


def _npy_text(data: bytes, where: str) -> str:
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as err:
        raise EvalInputError(
            f"{where}: not a plain .npy string array ({err}); save the groups as a unicode "
            "string (np.save(path, str(groups))) or use a name,groups CSV"
        ) from None
    return str(arr.tolist() if arr.shape == () else arr.ravel()[0])


def load_groups(uri: str) -> dict[str, Groups]:
    """Sample name -> groups, from the organisers' zip of ``<name>.npy``, a folder of them, a JSON
    object ``{name: groups}`` or a CSV/Parquet table with columns ``name, groups``."""
    lower = uri.lower().rstrip("/")
    out: dict[str, Groups] = {}
    if lower.endswith(".zip"):
        if not storage.exists(uri):
            raise EvalInputError(f"{uri}: no such file; check --groups")
        with zipfile.ZipFile(io.BytesIO(storage.read_bytes(uri))) as zf:
            for member in zf.namelist():
                if member.endswith(".npy"):
                    where = f"{uri} entry {member}"
                    out[posixpath.basename(member)[:-4]] = _parse_groups(
                        _npy_text(zf.read(member), where), where
                    )
    elif lower.endswith(".json"):
        data = json.loads(storage.read_text(uri))
        if not isinstance(data, dict):
            raise EvalInputError(f"{uri}: expected a JSON object {{name: groups}}; {_GROUPS_FIX}")
        out = {str(k): _check_groups(v, f"{uri} entry {k!r}") for k, v in data.items()}
    elif lower.endswith((".csv", ".parquet")):
        table = read_table(uri)
        if "groups" not in table.columns:
            raise EvalInputError(f"{uri} row 0 (header): no column 'groups'; write columns name, groups")
        for i, value in enumerate(table.columns["groups"]):
            where = table.where(i)
            out[table.names[i]] = (
                _parse_groups(value, where) if isinstance(value, str) else _check_groups(value or [], where)
            )
    elif storage.is_dir(uri):
        for path in storage.list_files(uri, [".npy"]):
            out[posixpath.basename(path)[:-4]] = _parse_groups(
                _npy_text(storage.read_bytes(path), path), path
            )
    else:
        raise EvalInputError(
            f"{uri}: unknown groups file type (before row 1); use the organisers' .zip of "
            ".npy, a folder of .npy, a .json {name: groups} or a name,groups .csv/.parquet"
        )
    if not out:
        raise EvalInputError(f"{uri}: holds no groups; check --groups")
    return out


def group_maps(groups: Sequence[Groups | None]) -> list[dict[str, str]]:
    maps = []
    for gs in groups:
        m: dict[str, str] = {}
        for g in gs or ():
            for x in g:
                m[x] = g[0]
        maps.append(m)
    return maps


def encode_groups(
    gt: Sequence[list[str]], pred: Sequence[list[str]], groups: Sequence[Groups | None]
) -> tuple[Encoded, dict]:
    maps = group_maps(groups)
    enc = encode(gt, pred, lambda s, lab: maps[s].get(lab, lab))
    missing = [i for i, g in enumerate(groups) if g is None]
    outside = sum(
        1 for i, m in enumerate(maps) if groups[i] is not None for lab in (*gt[i], *pred[i]) if lab not in m
    )
    return enc, {"missing_groups": len(missing), "labels_not_in_groups": outside}


def encode_wheel(wheel: Wheel, gt: Sequence[list[str]], pred: Sequence[list[str]]) -> dict[str, Encoded]:
    """One ``Encoded`` per wheel view ``wheelK/levelL``; labels that reach no cluster are dropped."""
    gs, gflat = flatten(gt)
    ps, pflat = flatten(pred)
    vocab: dict[str, int] = {}
    gidx = np.asarray([vocab.setdefault(lab, len(vocab)) for lab in gflat], dtype=np.int64)
    pidx = np.asarray([vocab.setdefault(lab, len(vocab)) for lab in pflat], dtype=np.int64)
    cands = [wheel.candidates(lab) for lab in vocab]
    views = {}
    for w, lv in wheel.views():
        table = wheel.clusters[w][lv]
        ids: dict[str, int] = {}
        lut = np.full(len(cands) + 1, -1, dtype=np.int64)
        for j, words in enumerate(cands):
            hit = next((table[c] for c in words if c in table), None)
            if hit is not None:
                lut[j] = ids.setdefault(hit, len(ids))
        gid, pid = lut[gidx], lut[pidx]
        gm, pm = gid >= 0, pid >= 0
        views[f"{w}/{lv}"] = Encoded(len(gt), gs[gm], gid[gm], ps[pm], pid[pm])
    return views


def llm_groups(
    names: Sequence[str],
    gt: Sequence[list[str]],
    pred: Sequence[list[str]],
    complete: Callable[[list[LLMRequest]], list[str]],
    llm: LLMConfig | None = None,
    reask: int = 2,
) -> tuple[list[Groups | None], dict]:
    """Ask the LLM to group each sample's label union (sorted, so equal sets share one cached answer).
    Malformed answers are re-asked ``reask`` times; what stays malformed falls back to exact and is
    reported in ``llm_failures``."""
    unions = [sorted(set(g) | set(p)) for g, p in zip(gt, pred)]
    out: list[Groups | None] = [[[lab] for lab in u] if len(u) <= 1 else None for u in unions]
    pending = [i for i, g in enumerate(out) if g is None]
    suffix = ""
    malformed = 0
    for attempt in range(reask + 1):
        if not pending:
            break
        reqs = [
            request_for(llm or LLMConfig(), "synonym_grouping", {"labels": repr(unions[i])}) for i in pending
        ]
        answers = complete([dataclasses.replace(r, prompt=r.prompt + suffix) for r in reqs])
        still = []
        for i, answer in zip(pending, answers):
            parsed = parse_label_groups(answer, unions[i])
            if parsed is None:
                still.append(i)
                malformed += 1
            else:
                out[i] = parsed
        pending, suffix = still, f"{REASK_SUFFIX} (attempt {attempt + 2})"
        if still and attempt < reask:
            log.warning("llm grouping: %d malformed answers, asking again", len(still))
    failures = [names[i] for i in pending]
    for i in pending:
        out[i] = [[lab] for lab in unions[i]]
    return out, {
        "llm_malformed_answers": malformed,
        "llm_failures": len(failures),
        "llm_failed_names": failures[:50],
    }
