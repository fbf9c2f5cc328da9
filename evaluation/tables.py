"""Reading ground truth and predictions (CSV or Parquet, local or s3://) and parsing label lists.

A label cell is a list (Parquet ``list<string>``) or a list-literal string such as
``"['happy', 'sad']"``; an empty cell is an empty list. Labels are lower-cased and stripped.
Every input problem raises ``EvalInputError``: one line naming the file, the row and the fix.
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import io
import logging
import re

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from core import storage
from core.schema import DESCRIPTION_EN, OV_LABELS

log = logging.getLogger(__name__)

_ITEM = r"'[^'\\\n]*'|\"[^\"\\\n]*\""
_SIMPLE_LIST = re.compile(rf"\[\s*(?:(?:{_ITEM})\s*(?:,\s*(?:{_ITEM})\s*)*,?\s*)?\]")
_ITEMS = re.compile(_ITEM)
_LIST_FIX = "write a Python list literal such as ['happy', 'sad'] (or [] / an empty cell for none)"


class EvalInputError(ValueError):
    """Bad evaluation input; the message is one line with the file, the row and the fix."""


def parse_literal_list(text: str) -> list[str]:
    """A list-literal string -> its strings, parsed safely (never ``eval``); ValueError if malformed."""
    text = text.strip()
    if not text:
        return []
    if _SIMPLE_LIST.fullmatch(text):  # fast path, identical to literal_eval for escape-free strings
        return [m[1:-1] for m in _ITEMS.findall(text)]
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as err:
        raise ValueError(f"malformed list literal {_clip(text)}") from err
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"not a list of strings: {_clip(text)}")
    return list(value)


def parse_mertools_list(text: str) -> list[str]:
    """The organisers' parser (MERTools ``string_to_list``): split at every quote and comma.

    Bug-compatible on purpose: "don't believe" becomes ``don`` and ``t believe``, which is how the
    organisers' ``openset-synonym`` groups were built, so their published numbers need it.
    """
    text = text.strip()
    if text.startswith("["):
        text = text[1:]
    if text.endswith("]"):
        text = text[:-1]
    return [item.strip() for item in re.split("['\",]", text) if item.strip()]


def clean_labels(labels: list[str]) -> list[str]:
    out = []
    for label in labels:
        label = label.strip().lower()
        if label:
            out.append(label)
    return out


def _clip(text: str, n: int = 60) -> str:
    return repr(text if len(text) <= n else text[:n] + "...")


@dataclasses.dataclass
class Table:
    """One input file: its URI, the ordered sample names and the raw column values."""

    uri: str
    names: list[str]
    columns: dict[str, list]

    def has(self, column: str) -> bool:
        """Whether ``column`` (or its EMER-Coarse stand-in, ``SCHEMA_FALLBACK``) is present."""
        return column in self.columns or SCHEMA_FALLBACK.get(column) in self.columns

    def where(self, i: int) -> str:
        return f"{self.uri} row {i + 1} (name={self.names[i]!r})"


def read_table(uri: str, name_column: str = "name") -> Table:
    """Read a CSV/Parquet file into a ``Table``; names must be present and unique."""
    lower = uri.lower().rstrip("/")
    if lower.endswith(".csv"):
        table = _read_csv(uri)
    elif lower.endswith(".parquet") or (storage.is_dir(uri) and storage.list_files(uri, [".parquet"])):
        if not storage.exists(uri):
            raise EvalInputError(f"{uri}: no such file; check the path")
        fs, path = storage.filesystem(uri)
        try:
            table = pq.read_table(path, filesystem=fs)
        except pa.ArrowInvalid as err:
            raise EvalInputError(
                f"{uri}: not a valid Parquet file ({str(err).splitlines()[0]}); "
                "rewrite it, or save it as .csv"
            ) from err
    else:
        suffix = uri.rsplit(".", 1)[-1] if "." in uri.rsplit("/", 1)[-1] else "(none)"
        raise EvalInputError(
            f"{uri}: unknown file type '.{suffix.lstrip('.')}' (before row 1); "
            "save it as .csv or .parquet with columns name, openset"
        )
    if name_column not in table.column_names:
        raise EvalInputError(
            f"{uri} row 0 (header): no column {name_column!r} (columns: "
            f"{', '.join(table.column_names)}); add a {name_column!r} column with the sample ids"
        )
    columns = {c: table.column(c).to_pylist() for c in table.column_names}
    names = ["" if v is None else str(v) for v in columns[name_column]]
    _check_names(uri, names)
    return Table(uri, names, columns)


def _read_csv(uri: str) -> pa.Table:
    try:
        data = storage.read_bytes(uri)
    except FileNotFoundError as err:
        raise EvalInputError(f"{uri}: no such file; check the path") from err
    first = data.split(b"\n", 1)[0].decode("utf-8-sig", errors="replace")
    header = next(csv.reader([first]), [])
    if not header:
        raise EvalInputError(f"{uri} row 0 (header): empty file; write a header line such as name,openset")
    try:
        return pacsv.read_csv(
            io.BytesIO(data),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in header}, strings_can_be_null=False
            ),
        )
    except pa.ArrowInvalid as err:
        raise EvalInputError(
            f"{uri}: not a valid CSV ({str(err).splitlines()[0]}); "
            "quote cells that contain commas, e.g. \"['a', 'b']\""
        ) from err


def _check_names(uri: str, names: list[str]) -> None:
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if not name.strip():
            raise EvalInputError(f"{uri} row {i + 1}: empty name; give every row its sample id")
        if name in seen:
            raise EvalInputError(
                f"{uri} row {i + 1} (name={name!r}): duplicate name, first at row "
                f"{seen[name] + 1}; keep one row per sample"
            )
        seen[name] = i


# An EMER-Coarse table (core.schema) read where a MER-layout table is expected: its columns stand in.
SCHEMA_FALLBACK = {"openset": OV_LABELS, "description": DESCRIPTION_EN}


def require_column(table: Table, column: str, flag: str) -> list:
    fallback = SCHEMA_FALLBACK.get(column)
    if column not in table.columns and fallback in table.columns:
        log.info("%s: no column %r; using the EMER-Coarse column %r", table.uri, column, fallback)
        return table.columns[fallback]
    if column not in table.columns:
        raise EvalInputError(
            f"{table.uri} row 0 (header): no column {column!r} (columns: "
            f"{', '.join(table.columns)}); add it, or name the column with {flag}"
        )
    return table.columns[column]


def label_lists(table: Table, column: str, parser: str = "literal") -> list[list[str]]:
    """The cleaned label list of every row of ``column``."""
    values = require_column(table, column, "--labels-column")
    parse = parse_mertools_list if parser == "mertools" else parse_literal_list
    out: list[list[str]] = []
    for i, value in enumerate(values):
        if value is None:
            out.append([])
        elif isinstance(value, str):
            try:
                out.append(clean_labels(parse(value)))
            except ValueError as err:
                raise EvalInputError(f"{table.where(i)}: column {column!r}: {err}; {_LIST_FIX}") from None
        elif isinstance(value, (list, tuple)) and all(isinstance(v, str) or v is None for v in value):
            out.append(clean_labels([v for v in value if v is not None]))
        else:
            raise EvalInputError(
                f"{table.where(i)}: column {column!r} holds {type(value).__name__}; {_LIST_FIX}"
            )
    return out


def text_values(table: Table, column: str) -> list[str]:
    values = require_column(table, column, "--text-column")
    return ["" if v is None else str(v) for v in values]


def by_name(table: Table, values: list) -> dict[str, object]:
    return dict(zip(table.names, values))
