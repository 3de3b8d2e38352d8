"""Kernel (weight) memory: words per layer and izer's first-fit allocation.

Each processor owns its own column of ``kernel_words`` 72-bit words. A layer's kernels live only on its
*input* processors, all starting at the same column, a multiple of 4. izer places the layers that read
all 64 processors first, then the others, each at the lowest column free on every one of its input
processors (docs/max78000.md sections 1.3-1.4). Occupancy is kept as one Python int bitmask per
processor, so checking a window of columns is a shift and a mask.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

WORD_BITS = 72


def kernel_words(in_passes: int, out_passes: int, out_span: int, kernel_size: int, weight_bits: int) -> int:
    """72-bit words one input processor needs for a layer (izer's packing of sub-8-bit kernels included).

    ``out_span`` is last minus first output processor plus one (gaps count).
    """
    count = out_span * out_passes * in_passes
    area = kernel_size * kernel_size
    per_byte = 8 // weight_bits
    # An incomplete group of sub-8-bit kernels still occupies its byte lanes.
    padding = (count % per_byte) * area * (per_byte - 1)
    return -(-(count * area * weight_bits + padding) // WORD_BITS)


class KernelRequest(NamedTuple):  # a NamedTuple: the checker builds thousands per second
    """One layer's kernel demand: ``words`` columns on each processor of ``processors`` (a bitmask)."""

    layer: int
    processors: int
    words: int


@dataclass(frozen=True)
class KernelFailure:
    """izer's "Kernel memory exhausted at processor P; offset: O, needed: W" for one layer."""

    layer: int
    processor: int
    offset: int
    words: int
    capacity: int


@dataclass(frozen=True)
class KernelAllocation:
    offsets: dict[int, int]  # layer index -> first column, for every placed layer
    failures: tuple[KernelFailure, ...]
    placed: tuple[KernelRequest, ...]  # the requests that were placed, in placement order

    @property
    def high_water(self) -> int:
        """The highest occupied column + 1 over all processors."""
        return max((self.offsets[r.layer] + r.words for r in self.placed), default=0)

    @property
    def busiest_processor(self) -> int:
        """A processor that reaches the high-water column (the lowest-numbered one)."""
        top = self.high_water
        tops = [r.processors for r in self.placed if self.offsets[r.layer] + r.words == top]
        return min(_bits(m)[0] for m in tops) if tops else 0

    @property
    def occupied_words(self) -> int:
        """Words occupied summed over all processors."""
        return sum(r.words * r.processors.bit_count() for r in self.placed)

    def columns_used(self, processors: int) -> list[int]:
        """Per processor: the highest occupied column + 1 (0 when unused)."""
        used = [0] * processors
        for r in self.placed:
            for p in _bits(r.processors):
                used[p] = max(used[p], self.offsets[r.layer] + r.words)
        return used


def allocate_kernels(
    requests: Sequence[KernelRequest], capacities: Sequence[int], alignment: int = 4
) -> KernelAllocation:
    """Place every request the way izer's greedy allocator does; a layer that does not fit is reported
    and left out, and the others are still placed so that every failing layer is named.

    Occupancy is kept per placed layer (its processor bitmask and column window), not per processor:
    the columns blocked for a new layer are the union of the windows of placed layers sharing a processor
    with it, which costs one AND per placed layer instead of one OR per processor.
    """
    full = (1 << len(capacities)) - 1
    order = [r for r in requests if r.processors == full] + [r for r in requests if r.processors != full]
    windows: list[tuple[int, int]] = []  # (processors, column bitmask) of each placed layer
    offsets: dict[int, int] = {}
    placed: list[KernelRequest] = []
    failures: list[KernelFailure] = []
    uniform = min(capacities) == max(capacities)
    for req in order:
        if req.words == 0:
            continue
        blocked = 0
        for procs, cols in windows:
            if procs & req.processors:
                blocked |= cols
        limit = capacities[0] if uniform else min(capacities[p] for p in _bits(req.processors))
        offset = _first_fit(blocked, req.words, alignment, limit)
        if offset is None:
            masks = _per_processor(windows, len(capacities))
            proc, stop = _izer_scan_failure(masks, _bits(req.processors), req.words, alignment, capacities)
            failures.append(KernelFailure(req.layer, proc, stop, req.words, capacities[proc]))
            continue
        windows.append((req.processors, ((1 << req.words) - 1) << offset))
        offsets[req.layer] = offset
        placed.append(req)
    return KernelAllocation(offsets, tuple(sorted(failures, key=lambda f: f.layer)), tuple(placed))


def _per_processor(windows: list[tuple[int, int]], n: int) -> list[int]:
    masks = [0] * n
    for procs, cols in windows:
        for p in _bits(procs):
            masks[p] |= cols
    return masks


@functools.lru_cache(maxsize=1024)
def _bits(mask: int) -> tuple[int, ...]:
    """Processor numbers set in a bitmask (few distinct maps occur, hence the cache)."""
    return tuple(p for p in range(mask.bit_length()) if mask >> p & 1)


def _first_fit(combined: int, words: int, alignment: int, limit: int) -> int | None:
    """Lowest aligned column whose window of ``words`` columns is free in ``combined``, or None."""
    window = (1 << words) - 1
    col = 0
    while col + words <= limit:
        clash = (combined >> col) & window
        if not clash:
            return col
        # Jump past the highest occupied column in the window and the occupied run that follows it.
        col += clash.bit_length()
        rest = combined >> col
        col += (~rest & (rest + 1)).bit_length() - 1
        col = -(-col // alignment) * alignment
    return None


def _izer_scan_failure(
    masks: list[int], procs: tuple[int, ...], words: int, alignment: int, capacities: Sequence[int]
) -> tuple[int, int]:
    """Replay izer's column scan to report the processor and offset its error message names."""
    offset, first = 0, procs[0]
    while (masks[first] >> offset) & 1:
        offset += alignment
        if offset + words > capacities[first]:
            return first, offset
    i = 0
    while i < len(procs):
        p = procs[i]
        clash = (masks[p] >> offset) & ((1 << words) - 1)
        if clash:
            lowest = (clash & -clash).bit_length() - 1
            offset = -(-(offset + lowest + 1) // alignment) * alignment
            if offset + words > capacities[p]:
                return p, offset
            i = 0
            continue
        i += 1
    # A clash-free window that runs past the end: izer's final overflow check names the last processor.
    return procs[-1], offset
