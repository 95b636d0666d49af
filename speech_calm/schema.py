"""Settings as typed dataclasses loaded from YAML, with `a.b=value` overrides from the command line.

A recipe (`speech_calm.training.recipe`) is a tree of such dataclasses, each section defined beside the code
that reads it. Loading is strict: an unknown key or a value of the wrong type fails with
a `ConfigError` that names the dotted key path and, for unknown keys, the closest valid key. The resolved
recipe (after overrides) is what a run saves beside its outputs, so a run directory always says exactly how
it was made.

    data = read_yaml("recipes/telugu.yaml", ["compose.train.max_steps=200"])   # a mapping, overrides applied
    recipe = from_dict(Recipe, data)                                              # typed and checked
    save_config(recipe, run_dir / "recipe.yaml")
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A recipe or override is invalid; the message names the key path and what to do."""


def read_yaml(path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """A YAML recipe as a mapping, with `a.b=value` overrides applied (not yet checked against a schema)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe {path} does not exist; recipes live in recipes/ (e.g. recipes/telugu.yaml)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"recipe {path} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {path} must be a mapping of keys to values at the top level")
    for item in overrides or []:
        apply_override(data, item)
    return data


def apply_override(data: dict[str, Any], item: str) -> None:
    """Apply one `a.b.c=value` override in place; the value is parsed as YAML (`x=[1, 2]`, `y=null`)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} must look like section.key=value (e.g. train.max_steps=200)")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ConfigError(f"override {item!r}: the value is not valid YAML: {e}") from e
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {item!r}: {part} is a value, not a section")
        node = child
    node[parts[-1]] = value


def from_dict(cls: type[T], data: Any, path: str = "") -> T:
    """Build dataclass `cls` from a mapping, checking every key and type. `path` prefixes error messages."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'recipe'} must be a mapping, got {type(data).__name__} {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.5)
            hint = f"; did you mean {(path + '.' if path else '') + close[0]}?" if close else ""
            raise ConfigError(f"unknown key {where}{hint} (valid keys here: {', '.join(fields)})")
        kwargs[key] = _coerce(hints[key], value, where)
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{path or 'recipe'}: {e}") from e
    return obj


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Check `value` against type `tp` (and convert lists to tuples, ints to floats, mappings to dataclasses)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {_name(tp)}")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where} must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list ({_name(tp)}), got {type(value).__name__} {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where} must have {len(args)} items ({_name(tp)}), got {value!r}")
            return tuple(_coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item_tp = args[0] if args else Any
        items = [_coerce(item_tp, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {type(value).__name__} {value!r}")
        key_tp, val_tp = args or (Any, Any)
        return {_coerce(key_tp, k, where): _coerce(val_tp, v, f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 3e-4 (no dot) as a string; it is a number to a person
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {type(value).__name__} {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {type(value).__name__} {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported recipe type {_name(tp)}")  # a bug in the recipe classes


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def to_dict(obj: Any) -> Any:
    """A recipe as plain YAML-able data (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def save_config(config: Any, path: str | Path) -> None:
    """Write a config (a resolved recipe) as YAML, atomically (temporary name, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(to_dict(config), sort_keys=False, allow_unicode=True), encoding="utf-8")
    tmp.replace(path)
