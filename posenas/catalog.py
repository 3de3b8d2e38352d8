"""Named-or-file lookups, the one reader of YAML/JSON mapping files, the one check of a mapping's keys, and
the one strict loader of a mapping into a frozen dataclass (:func:`load_dataclass`).

Three things are given on the command line either by a built-in name or as a file: architectures
(``tiny-hw`` or ``net.yaml``), devices (``max78000`` or ``board.yaml``) and studies (``max78000`` or
``study.yaml``). :func:`lookup` resolves all three the same way, and :func:`read_mapping` reads every such
file, so that each failure reads alike whatever the kind: one line naming the file and the problem, raised
as the caller's error class (SpecError, BudgetError, StudyError: each stage keeps its own exit code).
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Callable, Collection, Mapping
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from posenas.errors import PosenasError

T = TypeVar("T")


def lookup(
    key: str | Path,
    *,
    kind: str,
    names: Collection[str],
    builtin: Callable[[str], T],
    from_file: Callable[[Path], T],
    suffixes: tuple[str, ...],
    error: type[PosenasError],
    fold_case: bool = False,
) -> T:
    """``builtin(name)`` when ``key`` is one of ``names`` (compared lower-cased with ``fold_case``), else
    ``from_file(path)`` when ``key`` names a file with one of ``suffixes``; otherwise ``error``, in one line
    that lists the names (``unknown architecture 'x' (known: tiny, ..., or a .yaml/.json file)``)."""
    text = str(key)
    name = text.lower() if fold_case else text
    if name in names:
        return builtin(name)
    path = Path(text)
    if path.suffix.lower() in suffixes or path.exists():
        if not path.exists():
            raise error(f"{kind} file {path} does not exist")
        if path.is_dir():
            raise error(f"{kind} file {path} is a directory")
        return from_file(path)
    files = "/".join(suffixes[:1] + tuple(s for s in suffixes[1:] if s != ".yml"))
    raise error(f"unknown {kind} {text!r} (known: {', '.join(names)}, or a {files} file)")


def read_text(source: Path | Traversable, label: str, error: type[PosenasError]) -> str:
    """A file's UTF-8 text; ``error`` naming ``label`` when it cannot be read or is not text."""
    if isinstance(source, Path) and source.is_dir():
        raise error(f"{label} is a directory")
    try:
        return source.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"cannot read {label}: {exc.strerror or exc.__class__.__name__}") from None
    except UnicodeDecodeError:
        raise error(f"{label}: not a UTF-8 text file") from None


def parse_mapping(text: str, label: str, error: type[PosenasError], *, json_text: bool = False) -> Mapping[str, Any]:
    """The mapping that ``text`` holds, as YAML (or JSON with ``json_text``); ``error`` naming ``label`` when
    it is malformed or not a mapping."""
    kind = "JSON" if json_text else "YAML"
    try:
        data = json.loads(text) if json_text else yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        raise error(f"malformed {kind} in {label}: {_first_line(exc)}") from None
    if not isinstance(data, Mapping):
        raise error(f"{label}: must be a {kind} mapping")
    return data


def read_mapping(source: Path | Traversable, label: str, error: type[PosenasError]) -> Mapping[str, Any]:
    """The mapping in a YAML file (JSON when its name ends in .json): :func:`read_text` then
    :func:`parse_mapping`."""
    text = read_text(source, label, error)
    return parse_mapping(text, label, error, json_text=str(source).lower().endswith(".json"))


def check_keys(
    data: Any,
    *,
    known: Collection[str],
    where: str,
    error: type[PosenasError],
    required: Collection[str] = (),
) -> Mapping[str, Any]:
    """``data`` when it is a mapping whose keys are all ``known`` and include every ``required`` one; otherwise
    ``error`` naming the place and the keys (``space.backbone[0]: unknown key 'widht' (known: name, width,
    ...)``, ``device: missing keys 'kernel_words', 'max_layers'``). Every loader of a settings file (specs,
    search spaces, devices, studies) checks its mappings here, so a typo reads the same in all of them."""
    if not isinstance(data, Mapping):
        raise error(f"{where}: must be a mapping, got {type(data).__name__}")
    unknown = [k for k in data if k not in known]
    if unknown:
        raise error(f"{where}: unknown {_keys(unknown)} (known: {', '.join(known)})")
    missing = [k for k in required if k not in data]
    if missing:
        raise error(f"{where}: missing {_keys(missing)}")
    return data


def _keys(names: list[Any]) -> str:
    return ("key " if len(names) == 1 else "keys ") + ", ".join(repr(n) for n in names)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else exc.__class__.__name__)[:200]


def load_dataclass(
    cls: type[T],
    data: Any,
    *,
    where: str,
    error: type[PosenasError],
    required: Collection[str] | None = None,
    skip: Collection[str] = (),
    checks: Mapping[str, Callable[[str, Any], Any]] | None = None,
) -> T:
    """An instance of the dataclass ``cls`` from the mapping ``data``, strictly: unknown and missing keys
    (:func:`check_keys`) and every value of the wrong type are refused as ``error``, named with their path
    (``device.kernel_sizes[2]: must be an integer, got '3'``). The types come from the field annotations:
    bool, int, float (finite; an int is taken), str, ``X | None``, ``Literal[...]``, ``tuple[X, ...]``
    (from a list), ``Mapping[K, V]`` and nested dataclasses (loaded the same way). ``required`` defaults to
    the fields without a default; ``skip`` names fields the caller fills itself (not in ``data``). The
    dataclass's own ``__post_init__`` then checks ranges; its TypeError or ValueError becomes ``error``.
    ``checks`` replaces the annotation's check for some keys: ``check(path, value)`` returns the value to
    use or raises ``error`` (a study file's numbers take the ranges of their command-line flags)."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init and f.name not in skip]  # type: ignore[arg-type]
    if required is None:
        required = [
            f.name
            for f in dataclasses.fields(cls)  # type: ignore[arg-type]
            if f.init
            and f.name not in skip
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
    check_keys(data, known=names, where=where, error=error, required=required)
    checks = checks or {}
    values = {}
    for key, value in data.items():
        at = f"{where}.{key}"
        values[key] = checks[key](at, value) if key in checks else _typed(hints[key], value, at, error)
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise error(f"{where}: {_first_line(exc)}") from None


def _typed(kind: Any, value: Any, where: str, error: type[PosenasError]) -> Any:
    """``value`` checked against the annotation ``kind`` (converted where the file's form differs: a list
    for a tuple, a mapping for a nested dataclass)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _typed(option, value, where, error)
            except error:
                continue
        raise error(f"{where}: must be {_describe(kind)}, got {value!r}")
    if origin is Literal:
        if value in args and not isinstance(value, bool):
            return value
        raise error(f"{where}: must be one of {', '.join(repr(a) for a in args)}, got {value!r}")
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return value
    elif kind is str:
        if isinstance(value, str):
            return value
    elif origin is tuple:
        if isinstance(value, (list, tuple)):
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(_typed(args[0], v, f"{where}[{i}]", error) for i, v in enumerate(value))
            if len(args) == len(value):
                return tuple(_typed(a, v, f"{where}[{i}]", error) for i, (a, v) in enumerate(zip(args, value)))
    elif origin in (dict, Mapping, typing.Mapping):
        if isinstance(value, Mapping):
            key_kind, value_kind = args or (Any, Any)
            return {
                _typed(key_kind, k, f"{where} key {k!r}", error): _typed(value_kind, v, f"{where}[{k!r}]", error)
                for k, v in value.items()
            }
    elif dataclasses.is_dataclass(kind):
        if isinstance(value, kind):
            return value
        return load_dataclass(kind, value, where=where, error=error)
    else:
        return value  # an annotation this loader does not know: the dataclass checks it
    raise error(f"{where}: must be {_describe(kind)}, got {value!r}")


def _describe(kind: Any) -> str:
    """An annotation in words, for an error message."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _describe(a) for a in args)
    if origin is tuple:
        plural = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}
        item = args[0] if args else None
        return "a list" + (f" of {'mappings' if dataclasses.is_dataclass(item) else plural.get(item, 'values')}")
    if origin in (dict, Mapping, typing.Mapping):
        return "a mapping"
    if dataclasses.is_dataclass(kind):
        return "a mapping"
    names = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}
    return names.get(kind, getattr(kind, "__name__", str(kind)))
