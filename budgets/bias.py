"""Bias memory: one memory of ``bias_bytes_per_quadrant`` per quadrant, izer's fit-first-descending.

A layer's bias (8-bit, one byte per output channel) must sit contiguously in a single quadrant's memory.
The candidates are the quadrants the network touches at all; the largest biases are placed first, each
into the candidate with the fewest bytes used so far (docs/max78000.md section 2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple


class BiasRequest(NamedTuple):  # a NamedTuple: the checker builds thousands per second
    layer: int
    nbytes: int


@dataclass(frozen=True)
class BiasFailure:
    layer: int
    nbytes: int
    quadrant: int  # the best candidate, which still lacked room
    free: int


@dataclass(frozen=True)
class BiasAllocation:
    placement: dict[int, tuple[int, int]]  # layer -> (quadrant, byte offset)
    used: tuple[int, ...]  # bytes used per quadrant
    failures: tuple[BiasFailure, ...]


def allocate_bias(
    requests: Sequence[BiasRequest], quadrants: Sequence[int], n_quadrants: int, capacity: int
) -> BiasAllocation:
    """Place each request the way izer does; a request that does not fit is reported, not placed."""
    used = [0] * n_quadrants
    placement: dict[int, tuple[int, int]] = {}
    failures: list[BiasFailure] = []
    # sorted() is stable, so equal sizes keep layer order, as in izer.
    for req in sorted(requests, key=lambda r: -r.nbytes):
        quadrant = min(quadrants, key=lambda q: used[q])
        if used[quadrant] + req.nbytes > capacity:
            failures.append(BiasFailure(req.layer, req.nbytes, quadrant, capacity - used[quadrant]))
            continue
        placement[req.layer] = (quadrant, used[quadrant])
        used[quadrant] += req.nbytes
    return BiasAllocation(placement, tuple(used), tuple(sorted(failures, key=lambda f: f.layer)))
