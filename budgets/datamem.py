"""Data (activation) memory: every live tensor gets one byte offset, the same in each memory it touches.

The MAX78000 has 16 data memories of 32 KiB; a tensor lives in the memories of its processors, at the
same offset in each. izer only checks that a layer's output does not overwrite that layer's own input or
an ``output: true`` result, but a tensor that a later layer still reads (the CPM output that the second
head consumes) must survive too (docs/max78000.md section 3.3), so this allocator works from
lifetimes: two tensors whose lifetimes overlap and that share a memory must not overlap in bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple


class TensorRequest(NamedTuple):  # a NamedTuple: the checker builds thousands per second
    """A tensor: ``nbytes`` in each memory of the bitmask ``memories``, live from step birth to death."""

    tensor: int  # -1 for the network input, else the index of the producing layer
    memories: int
    nbytes: int
    birth: int
    death: int


@dataclass(frozen=True)
class TensorFailure:
    tensor: int
    nbytes: int
    memory: int  # the fullest memory instance at the fullest step of the tensor's lifetime
    live_bytes: int  # bytes held there by the other live tensors at that step
    capacity: int


@dataclass(frozen=True)
class DataAllocation:
    offsets: dict[int, int]  # tensor -> byte offset, for every placed tensor
    failures: tuple[TensorFailure, ...]
    high_water: tuple[int, ...]  # per memory: the highest byte the placed tensors reach


def allocate_data(requests: Sequence[TensorRequest], n_memories: int, capacity: int) -> DataAllocation:
    """First-fit offsets in birth order; tensors that cannot be placed are reported, not placed."""
    placed: list[tuple[TensorRequest, int]] = []
    offsets: dict[int, int] = {}
    failures: list[TensorFailure] = []
    for req in sorted(requests, key=lambda r: (r.birth, r.tensor)):
        rivals = [
            (o, o + r.nbytes)
            for r, o in placed  # shares a memory and a moment of life
            if r.memories & req.memories and r.birth <= req.death and req.birth <= r.death
        ]
        offset = _lowest_gap(rivals, req.nbytes, capacity)
        if offset is None:
            failures.append(_failure(req, requests, capacity))
            continue
        placed.append((req, offset))
        offsets[req.tensor] = offset
    return DataAllocation(offsets, tuple(failures), _high_water(placed, n_memories))


def _lowest_gap(busy: list[tuple[int, int]], size: int, capacity: int) -> int | None:
    candidate = 0
    for start, end in sorted(busy):
        if candidate + size <= start:
            break
        candidate = max(candidate, end)
    return candidate if candidate + size <= capacity else None


def _failure(req: TensorRequest, requests: Sequence[TensorRequest], capacity: int) -> TensorFailure:
    """Name the fullest memory (other live tensors' bytes) over the failing tensor's lifetime."""
    best = (-1, 0)
    mem, bits = 0, req.memories
    while bits:
        if bits & 1:
            for step in range(req.birth, req.death + 1):
                live = sum(
                    r.nbytes for r in requests if r is not req and r.memories >> mem & 1 and r.birth <= step <= r.death
                )
                best = max(best, (live, mem))
        bits >>= 1
        mem += 1
    return TensorFailure(req.tensor, req.nbytes, best[1], best[0], capacity)


def _high_water(placed: Sequence[tuple[TensorRequest, int]], n_memories: int) -> tuple[int, ...]:
    top = [0] * n_memories
    for req, offset in placed:
        end, mems, m = offset + req.nbytes, req.memories, 0
        while mems:
            if mems & 1 and end > top[m]:
                top[m] = end
            mems >>= 1
            m += 1
    return tuple(top)
