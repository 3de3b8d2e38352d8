"""Bad values for the keys of a study file, shared by tests/test_study_keys.py and
benchmarks/bench_bad_input.py: the keys are walked from the file itself, so a new key is covered by both."""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["get", "leaves", "out_of_range", "replaced", "wrong_type"]


def leaves(node: Any, path: tuple = ()) -> list[tuple]:
    """The paths of every value of a study mapping (lists of mappings walked by index)."""
    if isinstance(node, dict):
        return [leaf for key, value in node.items() for leaf in leaves(value, (*path, key))]
    if isinstance(node, list) and node and all(isinstance(x, dict) for x in node):
        return [leaf for i, value in enumerate(node) for leaf in leaves(value, (*path, i))]
    return [path]


def get(node: Any, path: tuple) -> Any:
    for part in path:
        node = node[part]
    return node


def replaced(study: dict, path: tuple, value: Any) -> dict:
    """A copy of ``study`` with the value at ``path`` replaced."""
    study = copy.deepcopy(study)
    get(study, path[:-1])[path[-1]] = value
    return study


def wrong_type(value: Any) -> Any:
    """A value of another type than ``value``'s."""
    if isinstance(value, bool):
        return 3
    if isinstance(value, (int, float)):
        return "many"
    if isinstance(value, str):
        return {"a": 1}
    return "text"


def out_of_range(path: tuple, value: Any) -> list[Any]:
    """Values of ``value``'s type that no key like ``path`` accepts (none for booleans and free text)."""
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [-1, 10**12, float("nan")]
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value):  # [low, high]
        return [[value[1] + 8, value[0]], [0, value[1]], [value[0], 10**6]]
    if isinstance(value, list):
        return [[], ["no-such-choice"]]
    if path[-1] in ("sampler", "scorer", "score_arithmetic", "arch"):
        return ["no-such-choice"]
    return []
