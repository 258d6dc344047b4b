"""Strict YAML configs: every key is declared by a dataclass; unknown keys are errors.

Why: a mistyped key in a config that is silently ignored produces a wrong experiment that looks
right. Every config in vqstack is a (possibly nested) dataclass loaded through :func:`load_config`,
which names the key and the file on any mismatch.

A config may start from another one: a top-level ``base: other.yml`` (relative to the file that names
it) loads that file first, then this file's keys override it, mapping by mapping. Why: an experiment
that changes one setting should say only that setting, so a reader sees the difference at a glance and
a fix to the shared settings reaches every variant.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from vqstack.errors import ConfigError

T = TypeVar("T")


def _suggest(key: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _convert(value: Any, tp: Any, where: str, source: str) -> Any:
    """Convert a YAML value to the annotated type ``tp`` or raise a ConfigError naming ``where``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where, source)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{source}: key '{where}' has an invalid value {value!r}")
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(
                f"{source}: key '{where}' must be one of {list(allowed)}, got {value!r}"
            )
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: key '{where}' must be a mapping, got {type(value).__name__}")
        return from_dict(tp, value, source=source, prefix=f"{where}.")
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{source}: key '{where}' must be a list, got {type(value).__name__}")
        args = typing.get_args(tp)
        item_tp = args[0] if args else Any
        items = [_convert(v, item_tp, f"{where}[{i}]", source) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: key '{where}' must be a mapping, got {type(value).__name__}")
        _, vt = typing.get_args(tp) or (Any, Any)
        return {str(k): _convert(v, vt, f"{where}.{k}", source) for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{source}: key '{where}' must be a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: key '{where}' must be an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: key '{where}' must be true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: key '{where}' must be a string, got {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: key '{where}' must be a path string, got {value!r}")
        return Path(value)
    return value


def from_dict(cls: type[T], data: dict[str, Any], *, source: str = "<config>", prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unknown or missing keys raise :class:`ConfigError`."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at '{prefix or 'top level'}', got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    allowed = sorted(fields)
    for key in data:
        if key not in fields:
            raise ConfigError(
                f"{source}: unknown key '{prefix}{key}'{_suggest(str(key), allowed)}; "
                f"allowed keys: {', '.join(allowed)}"
            )
    kwargs = {}
    for name, field in fields.items():
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], f"{prefix}{name}", source)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{source}: missing required key '{prefix}{name}'")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {exc}") from exc


BASE_KEY = "base"


def _read_mapping(path: Path) -> dict[str, Any]:
    """One YAML file as a mapping (an empty file is an empty mapping)."""
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at 'top level', got {type(data).__name__}")
    return data


def merge_over(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` laid over ``base``: mappings merge key by key, anything else (lists too) is replaced.

    Lists are replaced rather than concatenated because a list in a config is one setting (the
    features to use, the seeds to run); a variant that appended to it could not remove an item.
    """
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_over(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_config_data(path: str | Path) -> tuple[dict[str, Any], list[Path]]:
    """The mapping of ``path`` with its ``base:`` chain resolved, and the files it came from (base first)."""
    chain: list[Path] = []
    seen: set[Path] = set()
    layers: list[dict[str, Any]] = []
    current = Path(path)
    while True:
        if current.resolve() in seen:
            cycle = " -> ".join(str(p) for p in [*chain, current])
            raise ConfigError(f"{chain[-1]}: '{BASE_KEY}' makes a cycle ({cycle})")
        data = _read_mapping(current)
        chain.append(current)
        seen.add(current.resolve())
        base = data.pop(BASE_KEY, None)
        layers.append(data)
        if base is None:
            break
        if not isinstance(base, str) or not base:
            raise ConfigError(f"{current}: key '{BASE_KEY}' must be a path to another config, got {base!r}")
        nxt = current.parent / base
        if not nxt.is_file():
            raise ConfigError(f"{current}: base config {nxt} not found")
        current = nxt
    merged: dict[str, Any] = {}
    for layer in reversed(layers):
        merged = merge_over(merged, layer)
    return merged, chain[::-1]


def load_config(path: str | Path, cls: type[T]) -> T:
    """Read YAML file ``path`` (and its ``base:`` chain) into dataclass ``cls``, validating every key."""
    data, files = read_config_data(path)
    source = str(files[-1])
    if len(files) > 1:
        source += " (over base " + " <- ".join(str(f) for f in files[-2::-1]) + ")"
    return from_dict(cls, data, source=source)


def to_dict(obj: Any) -> Any:
    """A dataclass config as plain YAML/JSON-able data (paths become strings)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj
