"""Picking networks out of a search space without Optuna: the largest, the smallest, random ones.

A weight-sharing supernet trains with the *sandwich rule* (each step the largest network, the smallest and
a few random ones), and it is scored on random networks too. These pickers answer ``sample_arch``'s
questions directly (they are ``TrialLike``), so every network they produce is one the search itself can
sample, with the same parameter names. Drawing only networks a device accepts is rejection sampling
against the budget checker (``feasible_random_arch``); it is cheap because the checker places thousands
of networks per second.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from posenas.errors import SpecOutsideSpace
from posenas.space.sampling import LOWEST_BITS, SearchSpace, sample_arch
from posenas.space.spec import ArchSpec, LayerSpec


class _Extreme:
    """Answers every question with the largest (``largest=True``) or smallest choice; ``fixed`` wins.

    "Largest" keeps optional layers, takes 3x3 kernels and the deepest CPM; weight bits are ``bits``
    (default: the largest of the space for the largest network, the smallest for the smallest)."""

    number = 0

    def __init__(self, largest: bool, fixed: dict[str, Any], bits: int | None) -> None:
        self.largest, self.fixed, self.bits = largest, fixed, bits

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1) -> int:
        return self.fixed.get(name, high if self.largest else low)

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        if name in self.fixed:
            return self.fixed[name]
        if name.endswith(".bits") and self.bits is not None:
            return self.bits
        if name.endswith(".keep"):
            return self.largest
        return max(choices) if self.largest else min(choices)


class RandomTrial:
    """Uniform random answers from a NumPy generator (``fixed`` answers win); ``params`` records them."""

    def __init__(self, rng: np.random.Generator, fixed: dict[str, Any] | None = None, number: int = 0) -> None:
        self.rng, self.fixed, self.number = rng, dict(fixed or {}), number
        self.params: dict[str, Any] = {}

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1) -> int:
        value = self.fixed.get(name, low + step * int(self.rng.integers(0, (high - low) // step + 1)))
        self.params[name] = value
        return value

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        value = self.fixed[name] if name in self.fixed else choices[int(self.rng.integers(0, len(choices)))]
        self.params[name] = value
        return value


def _stem_fixed(space: SearchSpace, stem: str | None) -> dict[str, Any]:
    if stem is None:
        return {}
    if stem not in space.stems:
        raise SpecOutsideSpace(f"stem {stem!r} is not in the space's stems {list(space.stems)}")
    return {"stem": stem}


def largest_arch(space: SearchSpace, stem: str | None = None, bits: int | None = None) -> ArchSpec:
    """Every slot at its widest with 3x3 kernels, optional layers kept, the deepest CPM, the widest heads."""
    fixed = _stem_fixed(space, stem or space.stems[0])
    return sample_arch(_Extreme(True, fixed, bits or max(space.bits)), space, name=f"largest-{fixed['stem']}")


def smallest_arch(space: SearchSpace, stem: str | None = None, bits: int | None = None) -> ArchSpec:
    """Every slot at its narrowest with the smallest kernels, optional layers dropped, the shallowest CPM."""
    fixed = _stem_fixed(space, stem or space.stems[0])
    return sample_arch(_Extreme(False, fixed, bits or max(space.bits)), space, name=f"smallest-{fixed['stem']}")


def random_arch(
    space: SearchSpace,
    rng: np.random.Generator,
    *,
    stems: Sequence[str] | None = None,
    bits: Sequence[int] | None = None,
    lowest_bits: int | None = None,
    name: str = "random",
) -> ArchSpec:
    """A uniformly random network of ``space`` (optionally only ``stems``; ``bits`` per layer from ``bits``,
    default the space's own), drawn as ``sample_arch`` asks: the network's lowest bits, then each layer's.
    ``lowest_bits`` fixes that floor instead; ``min(space.bits)`` gives every layer a uniform draw."""
    fixed: dict[str, Any] = {} if lowest_bits is None else {LOWEST_BITS: lowest_bits}
    if stems is not None:
        fixed["stem"] = stems[int(rng.integers(0, len(stems)))]
        _stem_fixed(space, fixed["stem"])
    trial = RandomTrial(rng, fixed)
    if bits is not None:
        trial = _BitsOverride(trial, tuple(bits))
    return sample_arch(trial, space, name=name)


class _BitsOverride:
    """A RandomTrial whose weight-bit answers come from another list than the space's."""

    def __init__(self, inner: RandomTrial, bits: tuple[int, ...]) -> None:
        self.inner, self.bits, self.number = inner, bits, inner.number

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1) -> int:
        return self.inner.suggest_int(name, low, high, step=step)

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        return self.inner.suggest_categorical(name, list(self.bits) if name.endswith(".bits") else choices)


def with_random_bits(spec: ArchSpec, rng: np.random.Generator, bits: Sequence[int]) -> ArchSpec:
    """``spec`` with every layer's weight bits (head outputs included) drawn uniformly from ``bits``."""

    def draw() -> int:
        return int(bits[int(rng.integers(0, len(bits)))])

    def layers(chain: Sequence[LayerSpec]) -> tuple[LayerSpec, ...]:
        return tuple(dataclasses.replace(layer, weight_bits=draw()) for layer in chain)

    heads = tuple(dataclasses.replace(head, hidden=layers(head.hidden), out_bits=draw()) for head in spec.heads)
    return dataclasses.replace(spec, backbone=layers(spec.backbone), cpm=layers(spec.cpm), heads=heads)
