"""Config machinery shared by every component: frozen dataclasses, YAML + dotted overrides.

Each component declares one ``Config`` subclass (a frozen dataclass) whose ``problems()`` returns
a list of human-readable problems. Building from a dict (``from_dict``) converts and checks types,
rejects unknown keys with a suggestion, collects the problems of every nested config and raises
one ``ConfigError`` listing them all, each naming the dotted key, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from core.secrets import env_name_problem, redact_tree

T = TypeVar("T", bound="Config")


class ConfigError(ValueError):
    """One error for every problem found in a config; ``problems`` holds them one per line."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        head = f"invalid config{f' {source}' if source else ''}: {len(self.problems)} problem(s)"
        super().__init__(head + "\n" + "\n".join(f"  - {p}" for p in self.problems))


@dataclasses.dataclass(frozen=True)
class Config:
    """Base of every component config. Subclasses override ``problems``."""

    def problems(self) -> list[str]:
        return []

    def __post_init__(self) -> None:
        found = secret_field_problems(self) + self.problems()
        if found:
            raise ConfigError(found)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self: T, **changes: Any) -> T:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any] | None, source: str | None = None) -> T:
        problems: list[str] = []
        obj = _build(cls, data or {}, "", problems)
        if problems or obj is None:
            raise ConfigError(problems or ["could not build config"], source)
        return obj


# ---------------------------------------------------------------- checks used by problems()


def secret_field_problems(cfg: Config) -> list[str]:
    """The one check of secret-bearing fields, run for every config: a ``*_env`` field must hold the
    *name* of a variable, never a key (the message does not echo the value)."""
    out = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name.endswith("_env") and isinstance(value, str):
            problem = env_name_problem(f.name, value)
            if problem:
                out.append(problem)
    return out


def check_range(out: list[str], key: str, value: float, lo: float | None, hi: float | None) -> None:
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        allowed = (
            f"between {lo} and {hi}"
            if lo is not None and hi is not None
            else (f">= {lo}" if lo is not None else f"<= {hi}")
        )
        out.append(f"{key} = {value!r}: must be {allowed}")


def check_choice(out: list[str], key: str, value: Any, choices: typing.Iterable[Any]) -> None:
    choices = list(choices)
    if value not in choices:
        out.append(f"{key} = {value!r}: must be one of {', '.join(repr(c) for c in choices)}")


# ---------------------------------------------------------------- building from plain data


def _build(cls: type, data: Any, prefix: str, problems: list[str]) -> Any:
    if not isinstance(data, dict):
        problems.append(f"{prefix.rstrip('.') or '<root>'} = {data!r}: must be a mapping of keys")
        return None
    prepare = getattr(cls, "prepare_data", None)  # e.g. sections that inherit keys from a sibling
    if prepare is not None:
        data = prepare(data)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            near = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean '{prefix}{near[0]}'?" if near else f"; known keys: {', '.join(fields)}"
            problems.append(f"{prefix}{key}: unknown key{hint}")
            continue
        before = len(problems)
        value = _over_default(fields[key], value)
        converted = _convert(hints[key], value, f"{prefix}{key}", problems)
        if len(problems) == before:
            kwargs[key] = converted
    # Build even when some keys failed (their defaults stand in) so range checks still report.
    try:
        return cls(**kwargs)
    except ConfigError as err:
        problems.extend(p if p.startswith(prefix) else prefix + p for p in err.problems)
    except TypeError as err:
        problems.append(f"{prefix.rstrip('.') or '<root>'}: {err}")
    return None


def _over_default(field: dataclasses.Field, value: Any) -> Any:
    """A nested section given as a mapping starts from the field's own default (e.g. the evaluation
    LLM's defaults), not from its class defaults."""
    if not isinstance(value, dict):
        return value
    factory = field.default_factory
    default = factory() if factory is not dataclasses.MISSING else field.default
    if not isinstance(default, Config):
        return value
    return {**dataclasses.asdict(default), **value}


def _convert(tp: Any, value: Any, key: str, problems: list[str]) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _convert(inner[0], value, key, problems)
        for a in inner:
            trial: list[str] = []
            out = _convert(a, value, key, trial)
            if not trial:
                return out
        problems.append(f"{key} = {value!r}: must be one of types {', '.join(map(_name, inner))}")
        return None
    if origin is typing.Literal:
        if value not in args:
            problems.append(f"{key} = {value!r}: must be one of {', '.join(repr(a) for a in args)}")
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key + ".", problems)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            problems.append(f"{key} = {value!r}: must be a list")
            return None
        item = args[0] if args else Any
        items = [_convert(item, v, f"{key}[{i}]", problems) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            problems.append(f"{key} = {value!r}: must be a mapping")
            return None
        return dict(value)
    return _scalar(tp, value, key, problems)


def _scalar(tp: Any, value: Any, key: str, problems: list[str]) -> Any:
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        problems.append(f"{key} = {value!r}: must be true or false")
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        problems.append(f"{key} = {value!r}: must be an integer")
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        problems.append(f"{key} = {value!r}: must be a number")
    elif tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        problems.append(f"{key} = {value!r}: must be a string")
    else:
        return value
    return None


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


# ---------------------------------------------------------------- YAML and dotted overrides


def parse_override(text: str) -> tuple[str, Any]:
    """``annotate.frames=8`` (with or without leading dashes) -> (``annotate.frames``, 8)."""
    body = text.lstrip("-")
    if "=" not in body:
        raise ConfigError([f"override {text!r}: expected KEY=VALUE, e.g. --annotate.frames=8"])
    key, raw = body.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def format_override(key: str, value: Any) -> str:
    """The dotted override that sets ``key`` to ``value`` (the inverse of ``parse_override``): the value
    is written as YAML, so a string that YAML would read as another type (``'1.5'``, ``'null'``, a path
    with ``: ``) stays a string."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    return f"{key}={text.removesuffix(chr(10) + '...')}"


def apply_overrides(data: dict[str, Any], overrides: typing.Iterable[str]) -> dict[str, Any]:
    data = _deep_copy(data)
    for text in overrides:
        key, value = parse_override(text)
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConfigError([f"override {key}: '{part}' is not a section"])
            node = nxt
        node[parts[-1]] = value
    return data


def _deep_copy(data: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in data.items()}


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            [f"config file {path} does not exist; pass a YAML file or a preset name from configs/"]
        )
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError([f"{path}: not valid YAML: {err}"]) from err
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: top level must be a mapping of sections"])
    return data


Sources = dict[str, str]  # dotted key -> the file or flag its value came from


def merge(
    base: dict[str, Any], update: dict[str, Any], origin: str, sources: Sources, prefix: str = ""
) -> None:
    """Merge ``update`` into ``base`` key by key (nested mappings merge, other values replace).

    ``sources`` records, for each leaf key set, the file or flag (``origin``) that set it."""
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value, origin, sources, dotted + ".")
            continue
        base[key] = _deep_copy(value) if isinstance(value, dict) else value
        for k in [k for k in sources if k == dotted or k.startswith(dotted + ".")]:
            del sources[k]
        for leaf in _leaves(value, dotted + ".") if isinstance(value, dict) and value else [dotted]:
            sources[leaf] = origin


def _leaves(data: dict[str, Any], prefix: str) -> list[str]:
    out = []
    for key, value in data.items():
        out += _leaves(value, f"{prefix}{key}.") if isinstance(value, dict) and value else [f"{prefix}{key}"]
    return out


def compose(
    paths: typing.Sequence[str | Path],
    overrides: typing.Iterable[str] = (),
    variables: typing.Mapping[str, str] | None = None,
) -> tuple[dict, Sources]:
    """YAML files merged in order (later files win key by key), then dotted overrides; with sources.

    ``${NAME}`` in a file's string values is replaced from ``variables`` (the caller's environment
    view, e.g. ``EMER_MODELS``); a name it lacks is an error naming the file and key."""
    data: dict[str, Any] = {}
    sources: Sources = {}
    for path in paths:
        problems: list[str] = []
        raw = expand_vars(read_yaml(path), variables or {}, "", problems)
        if problems:
            raise ConfigError(problems, str(path))
        merge(data, raw, str(path), sources)
    for text in overrides:
        key, value = parse_override(text)
        nested: dict[str, Any] = value if not key else {}
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
        merge(data, nested, f"--{key}", sources)
    return data, sources


_VAR = re.compile(r"\$\{(\w+)\}")


def expand_vars(data: Any, variables: typing.Mapping[str, str], key: str, problems: list[str]) -> Any:
    """``data`` with ``${NAME}`` in every string replaced by ``variables[NAME]``; unknown names are
    recorded in ``problems`` (with the dotted key) and left as they are."""
    if isinstance(data, dict):
        return {
            k: expand_vars(v, variables, f"{key}.{k}" if key else str(k), problems) for k, v in data.items()
        }
    if isinstance(data, list):
        return [expand_vars(v, variables, f"{key}[{i}]", problems) for i, v in enumerate(data)]
    if not isinstance(data, str) or "${" not in data:
        return data

    def sub(match: re.Match) -> str:
        if match.group(1) in variables:
            return variables[match.group(1)]
        problems.append(f"{key} = {data!r}: ${{{match.group(1)}}} is not set; set it in the environment")
        return match.group(0)

    return _VAR.sub(sub, data)


def source_of(key: str, sources: Sources) -> str | None:
    """The origin of ``key`` (a leaf, or a mapping-valued key: the origin of any of its leaves)."""
    key = re.sub(r"\[\d+\]", "", key)
    if key in sources:
        return sources[key]
    inside = sorted({v for k, v in sources.items() if k.startswith(key + ".")})
    return ", ".join(inside) if inside else None


def load(
    cls: type[T],
    paths: str | Path | typing.Sequence[str | Path] | None = None,
    overrides: typing.Iterable[str] = (),
) -> T:
    """Load ``cls`` from YAML files (or defaults) plus dotted overrides; one error for all problems,
    each problem naming the file or flag its key came from."""
    cfg, _ = load_with_sources(cls, paths, overrides)
    return cfg


def load_with_sources(
    cls: type[T],
    paths=None,
    overrides: typing.Iterable[str] = (),
    variables: typing.Mapping[str, str] | None = None,
) -> tuple[T, Sources]:
    """``load`` that also returns each key's origin; ``variables`` fill ``${NAME}`` in the files."""
    if paths is None:
        paths = []
    elif isinstance(paths, (str, Path)):
        paths = [paths]
    data, sources = compose(list(paths), overrides, variables)
    problems: list[str] = []
    obj = _build(cls, data, "", problems)
    if problems or obj is None:
        tagged = [_tag(p, sources) for p in problems] or ["could not build config"]
        raise ConfigError(tagged, ", ".join(map(str, paths)) or None)
    return obj, sources


def _tag(problem: str, sources: Sources) -> str:
    match = re.match(r"[\w.\[\]]+", problem)
    origin = source_of(match.group(0), sources) if match else None
    return f"{problem} (from {origin})" if origin else problem


def dump_yaml(cfg: Config) -> str:
    """The config as YAML, as it is saved beside outputs (URL credentials redacted)."""
    return yaml.safe_dump(to_plain(cfg), sort_keys=False)


def to_plain(cfg: Config) -> dict[str, Any]:
    """The config as plain data for printing or saving: every URL in every string value has its
    ``user:password@`` part and its secret query parameters redacted (``core.secrets.redact_tree``)."""
    return redact_tree(cfg.to_dict())


def dump_yaml_with_sources(cfg: Config, sources: Sources) -> str:
    """The config as YAML, each value followed by ``# <file or flag>`` where it did not come from the
    dataclass default."""
    lines: list[str] = []
    _emit(to_plain(cfg), "", 0, sources, lines)
    return "\n".join(lines) + "\n"


def _emit(data: dict[str, Any], prefix: str, depth: int, sources: Sources, lines: list[str]) -> None:
    pad = "  " * depth
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            lines.append(f"{pad}{key}:")
            _emit(value, dotted + ".", depth + 1, sources, lines)
            continue
        text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
        text = text.removesuffix("\n...").removesuffix("...").strip()
        origin = sources.get(dotted) or source_of(dotted, sources)
        lines.append(f"{pad}{key}: {text}" + (f"  # {origin}" if origin else "  # default"))
