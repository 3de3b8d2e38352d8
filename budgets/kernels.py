"""Kernel (weight) memory: words per layer and izer's first-fit allocation.

Each processor owns its own column of ``kernel_words`` 72-bit words. A layer's kernels live only on its
*input* processors, all starting at the same column, a multiple of 4. izer places the layers that read
all 64 processors first, then the others, each at the lowest column free on every one of its input
processors (shared/docs/max78000.md sections 1.3-1.4). Occupancy is kept as one Python int bitmask per
processor, so checking a window of columns is a shift and a mask.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

WORD_BITS = 72


def kernel_words(
    in_passes: int, out_passes: int, out_span: int, kernel_size: int, weight_bits: int
) -> int:
    """72-bit words one input processor needs for a layer (izer's packing of sub-8-bit kernels included).

    ``out_span`` is last minus first output processor plus one (gaps count).
    """
    count = out_span * out_passes * in_passes
    area = kernel_size * kernel_size
    per_byte = 8 // weight_bits
    # An incomplete group of sub-8-bit kernels still occupies its byte lanes.
    padding = (count % per_byte) * area * (per_byte - 1)
    return -(-(count * area * weight_bits + padding) // WORD_BITS)


@dataclass(frozen=True)
class KernelRequest:
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
    used: tuple[int, ...]  # per processor: highest occupied column + 1
    occupied: tuple[int, ...]  # per processor: number of occupied columns


def allocate_kernels(
    requests: Sequence[KernelRequest], capacities: Sequence[int], alignment: int = 4
) -> KernelAllocation:
    """Place every request the way izer's greedy allocator does; a layer that does not fit is reported
    and left out, and the others are still placed so that every failing layer is named."""
    full = (1 << len(capacities)) - 1
    order = [r for r in requests if r.processors == full] + [r for r in requests if r.processors != full]
    masks = [0] * len(capacities)
    offsets: dict[int, int] = {}
    failures: list[KernelFailure] = []
    uniform = min(capacities) == max(capacities)
    for req in order:
        if req.words == 0:
            continue
        procs = _bits(req.processors)
        limit = capacities[0] if uniform else min(capacities[p] for p in procs)
        offset = _first_fit(masks, procs, req.words, alignment, limit)
        if offset is None:
            proc, stop = _izer_scan_failure(masks, procs, req.words, alignment, capacities)
            failures.append(KernelFailure(req.layer, proc, stop, req.words, capacities[proc]))
            continue
        window = ((1 << req.words) - 1) << offset
        for p in procs:
            masks[p] |= window
        offsets[req.layer] = offset
    return KernelAllocation(
        offsets=offsets,
        failures=tuple(sorted(failures, key=lambda f: f.layer)),
        used=tuple(m.bit_length() for m in masks),
        occupied=tuple(m.bit_count() for m in masks),
    )


@functools.lru_cache(maxsize=1024)
def _bits(mask: int) -> tuple[int, ...]:
    """Processor numbers set in a bitmask (few distinct maps occur, hence the cache)."""
    return tuple(p for p in range(mask.bit_length()) if mask >> p & 1)


def _first_fit(masks: list[int], procs: tuple[int, ...], words: int, alignment: int, limit: int) -> int | None:
    """Lowest aligned column whose window of ``words`` columns is free on every processor, or None."""
    combined = 0
    for p in procs:
        combined |= masks[p]
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
