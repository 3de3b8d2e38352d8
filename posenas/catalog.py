"""Named-or-file lookups, the one reader of YAML/JSON mapping files, and the one check of a mapping's keys.

Three things are given on the command line either by a built-in name or as a file: architectures
(``tiny-hw`` or ``net.yaml``), devices (``max78000`` or ``board.yaml``) and studies (``max78000`` or
``study.yaml``). :func:`lookup` resolves all three the same way, and :func:`read_mapping` reads every such
file, so that each failure reads alike whatever the kind: one line naming the file and the problem, raised
as the caller's error class (SpecError, BudgetError, StudyError: each stage keeps its own exit code).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, TypeVar

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
