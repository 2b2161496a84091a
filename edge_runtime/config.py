"""The one config approach: dataclasses validated in `__post_init__`, loaded from TOML, written as JSON.

`from_dict(cls, data, where)` builds a (nested) dataclass from a mapping, converting lists to
tuples and the string "none" to None for optional fields; an unknown or mistyped key raises one
`ConfigError` line naming the file and the field. `load_toml(path, cls)` reads a TOML file (or
the JSON one written back) into `cls`. `to_jsonable(obj)` gives the resolved config that is
written beside every output.
"""
from __future__ import annotations

import dataclasses
import json
import math
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from edge_runtime.errors import ConfigError, EcgEdgeError

T = TypeVar("T")


def _is_optional(tp: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) < len(typing.get_args(tp)):
            return True, args[0] if len(args) == 1 else typing.Union[tuple(args)]
    return False, tp


def _convert(tp: Any, value: Any, where: str) -> Any:
    optional, inner = _is_optional(tp)
    if value is None or (optional and isinstance(value, str) and value.lower() == "none"):
        if optional:
            return None
        raise ConfigError(f"{where}: expected a value, got none")
    if dataclasses.is_dataclass(inner) and isinstance(inner, type):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {type(value).__name__}")
        return from_dict(inner, value, where)
    origin = typing.get_origin(inner)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(inner)
        item = args[0] if args else Any
        return tuple(_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if inner is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if inner in (int, float, str, bool) and not isinstance(value, inner) or (inner in (int, float) and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {inner.__name__}, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass `cls` from `data`; unknown keys and type mismatches raise ConfigError naming the key.

    `where` is the dotted path of this table ("" at the top); the dataclass's own validation names
    its fields itself (e.g. "preprocess.lowpass_hz").
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a table, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - fields)
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ConfigError(f"{key}: unknown key; expected one of {', '.join(sorted(fields))}")
    return cls(**{k: _convert(hints[k], v, f"{where}.{k}" if where else k) for k, v in data.items()})


#: Rules for `check_values`: what is expected, and the test a value must pass.
POSITIVE_INT = ("a positive integer", lambda v: v >= 1)
NON_NEGATIVE = ("a non-negative number", lambda v: v >= 0)
POSITIVE = ("a positive number", lambda v: v > 0)


def expect(where: str, ok: bool, expected: str, value: Any) -> None:
    """Raise `where: expected <expected>, got <value>` unless `ok` (a table's validation line)."""
    if not ok:
        raise ConfigError(f"{where}: expected {expected}, got {value!r}")


def check_values(table: str, obj: Any, rules: dict[str, tuple[str, Any]]) -> None:
    """Check numeric fields of a config dataclass: `rules` maps a field to (expected, test); a field
    that is None (an optional one not given) passes; errors name `table.field`."""
    for name, (expected, ok) in rules.items():
        value = getattr(obj, name)
        if value is not None:
            expect(f"{table}.{name}", isinstance(value, (int, float)) and not isinstance(value, bool)
                   and math.isfinite(value) and ok(value), expected, value)


def load_toml(path: str | Path, cls: type[T]) -> T:
    """Load a TOML file into dataclass `cls`; errors name the file and the field.

    A `.json` file is read as the resolved config `write_json` wrote beside an output, so a run is
    repeated from it (`--config OUT/config.json`)."""
    path = Path(path)
    kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if kind == "JSON" else tomllib.loads(text)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {exc.start}); expected a {kind} config") from None
    except OSError as exc:  # a folder, no permission
        raise ConfigError(f"{path}: unreadable config file ({exc.strerror or exc}); expected a {kind} file") from None
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not valid {kind} ({exc})") from None
    try:
        return from_dict(cls, data)
    except EcgEdgeError as exc:  # config and lead-name errors alike: prefix the file
        raise type(exc)(f"{path}: {exc}") from None


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, tuples and paths as plain JSON values (the resolved config written beside outputs)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | Path, obj: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_jsonable(obj), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path
