"""The emotion wheel (EW) of MER-UniBench / the MER2025 OV track: labels -> wheel clusters.

Shared by evaluation (wheel grouping of the set-level scores) and the EMER-Fine quality filter
(labels outside every cluster, label agreement), so it lives in the foundation.

A label goes: inflected form -> base words (``format_mapping``) -> wheel words (``raw_mapping``)
-> the level-1 or level-2 cluster of each of five wheels. Of the candidate wheel words the
alphabetically first one present in a wheel decides its cluster; a label that maps nowhere is
dropped. The folder holds ``wheel_mapping.json`` (the organisers' precomputed mappings) or the
sources it is built from: ``wheel1..5.xlsx``, ``format.csv`` and ``synonym.xlsx``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import re

from core import storage

log = logging.getLogger(__name__)

WHEELS = ("wheel1", "wheel2", "wheel3", "wheel4", "wheel5")
LEVELS = ("level1", "level2")


class WheelError(ValueError):
    """The wheel folder is missing or unreadable; the message names the folder and the fix."""


@dataclasses.dataclass
class Wheel:
    format_mapping: dict[str, list[str]]  # any form -> base words
    raw_mapping: dict[str, list[str]]  # base word -> wheel words
    clusters: dict[str, dict[str, dict[str, str]]]  # wheel -> level -> {wheel word: cluster}
    source: str = ""

    def views(self) -> list[tuple[str, str]]:
        return [(w, lv) for lv in LEVELS for w in WHEELS if w in self.clusters]

    def candidates(self, label: str) -> list[str]:
        """The wheel words a (lower-cased) label reaches, sorted; empty if the label is unknown."""
        forms = self.format_mapping.get(label)
        if not forms:
            return []
        return sorted(w for f in forms for w in self.raw_mapping.get(f, ()))

    def cluster(self, label: str, wheel: str, level: str) -> str:
        table = self.clusters[wheel][level]
        for word in self.candidates(label):
            if word in table:
                return table[word]
        return ""

    def reaches_any(self, label: str) -> bool:
        """Whether ``label`` reaches a cluster of at least one wheel view."""
        return any(self.cluster(label, w, lv) for w, lv in self.views())


def load_wheel(folder: str, setting: str = "the wheel setting") -> Wheel:
    """Load the wheel folder (JSON if present, else built from the spreadsheets); ``setting`` names
    the flag or key the folder came from, for the error message."""
    path = storage.join(folder, "wheel_mapping.json")
    if storage.exists(path):
        try:
            data = json.loads(storage.read_text(path))
            wheel = Wheel(data["format_mapping"], data["raw_mapping"], data["wheel_map_whole"], path)
        except (ValueError, KeyError, TypeError) as err:
            raise WheelError(
                f"{path}: not a wheel mapping ({err}); it needs keys format_mapping, "
                "raw_mapping and wheel_map_whole, or delete it to build from the xlsx files"
            ) from err
        return wheel
    if not storage.exists(storage.join(folder, "wheel1.xlsx")):
        raise WheelError(
            f"{folder}: no wheel_mapping.json and no wheel1.xlsx; point {setting} at the "
            f"emotion-wheel folder (emer models prepare copies one into .cache/models/emotion-wheel)"
        )
    return build_wheel(folder)


def build_wheel(folder: str) -> Wheel:
    """Build the three mappings from ``wheel*.xlsx``, ``format.csv`` and ``synonym.xlsx``."""
    import pandas as pd  # heavy: pandas, only to read the spreadsheets

    clusters = {}
    for w in WHEELS:
        uri = storage.join(folder, f"{w}.xlsx")
        if storage.exists(uri):
            tree = _wheel_tree(pd.read_excel(io.BytesIO(storage.read_bytes(uri))))
            clusters[w] = {lv: _clusters(tree, lv) for lv in LEVELS}
    fmt = pd.read_csv(
        io.BytesIO(storage.read_bytes(storage.join(folder, "format.csv"))), keep_default_na=False
    )
    format_mapping: dict[str, list[str]] = {}
    for raw, forms in zip(fmt["name"], fmt["format"]):
        for form in _split(forms):
            format_mapping.setdefault(form, []).append(raw)
        format_mapping.setdefault(raw, []).append(raw)
    syn = pd.read_excel(io.BytesIO(storage.read_bytes(storage.join(folder, "synonym.xlsx"))))
    merged: dict[str, set[str]] = {}
    runs = sorted(c[len("word_") :] for c in syn.columns if str(c).startswith("word_"))
    for run in runs:
        for word, synonyms in zip(syn[f"word_{run}"], syn[f"synonym_{run}"]):
            if not isinstance(word, str):
                continue
            raw = word.strip().lower()
            merged.setdefault(raw, set()).add(raw)
            for s in _split(synonyms):
                merged.setdefault(s.lower(), set()).add(raw)
    raw_mapping = {k: sorted(v) for k, v in merged.items()}
    log.info(
        "built emotion wheel from %s: %d forms, %d words, %d wheels",
        folder,
        len(format_mapping),
        len(raw_mapping),
        len(clusters),
    )
    return Wheel(format_mapping, raw_mapping, clusters, folder)


def _split(text) -> list[str]:
    if not isinstance(text, str):
        return []
    text = text.strip().removeprefix("[").removesuffix("]")
    return [t.strip() for t in re.split("['\",]", text) if t.strip()]


def _wheel_tree(df) -> dict[str, dict[str, list[str]]]:
    """level1 -> level2 -> [level3]; empty cells continue the cell above (spreadsheet merges)."""
    tree: dict[str, dict[str, list[str]]] = {}
    cur = ["", "", ""]
    for row in df[["level1", "level2", "level3"]].itertuples(index=False):
        for j, value in enumerate(row):
            if isinstance(value, str) and value.strip():
                cur[j] = value
        l1, l2, l3 = (c.lower().strip() for c in cur)
        tree.setdefault(l1, {}).setdefault(l2, []).append(l3)
    return tree


def _clusters(tree: dict[str, dict[str, list[str]]], level: str) -> dict[str, str]:
    """Every word of a wheel -> its level-1 cluster, or its level-2 cluster (a level-1 word goes to
    the alphabetically first of its level-2 children)."""
    out: dict[str, str] = {}
    for l1, children in tree.items():
        out[l1] = l1 if level == "level1" else sorted(children)[0]
        for l2, leaves in children.items():
            out[l2] = l1 if level == "level1" else l2
            for l3 in leaves:
                out[l3] = l1 if level == "level1" else l2
    return out
