"""The placement plan: where every layer of a network lives on the accelerator.

One plan serves two masters: the budget checker reads its failures and usage to say whether a network
fits, and the exporter writes it out as the ai8x-synthesis network YAML (processors, offsets, in_sequences,
output flags). Because both read the same object, what the checker approved is what gets synthesised.

Processor maps are canonical: every tensor is packed from processor 0 (``t`` processors per pass, rounded
up to a multiple of 4 beyond 64 channels), except a CHW input, which puts one channel per data memory
(processors 0, 4, 8, ...). This is conservative: a planner that rotated narrow layers onto idle processors
could fit more weights, but every plan made here is one izer accepts.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from posenas.budgets.bias import BiasAllocation, BiasRequest, allocate_bias
from posenas.budgets.datamem import DataAllocation, TensorRequest, allocate_data
from posenas.budgets.device import Device
from posenas.budgets.kernels import KernelAllocation, KernelRequest, allocate_kernels, kernel_words
from posenas.budgets.latency import NETWORK_STARTUP_CYCLES, layer_cycles
from posenas.space.graph import INPUT, InputNode, LayerNode

WORD_BYTES = 4  # one 32-bit data word holds the 4 channels of the 4 processors sharing a memory
WIDE_FACTOR = 4  # a 32-bit output value takes 4 bytes instead of 1


class TensorLayout(NamedTuple):
    """How a tensor is spread over processors: ``passes`` of ``per_pass`` processors (bitmask ``processors``)
    and so over data memories (bitmask ``memories``; memory m serves processors 4m..4m+3)."""

    channels: int
    passes: int
    per_pass: int
    processors: int
    memories: int


def _memories(processors: int) -> int:
    mask, m = 0, 0
    while processors:
        if processors & 0xF:
            mask |= 1 << m
        processors >>= 4
        m += 1
    return mask


@functools.lru_cache(maxsize=4096)
def hwc_layout(channels: int, processors: int = 64) -> TensorLayout:
    """izer's multi-pass split: ceil(C/64) passes, per-pass count rounded up to 4 beyond 64 channels."""
    passes = -(-channels // processors)
    per_pass = -(-channels // passes)
    if channels > processors:
        per_pass = min(processors, -(-per_pass // 4) * 4)
    mask = (1 << per_pass) - 1
    return TensorLayout(channels, passes, per_pass, mask, _memories(mask))


def chw_layout(channels: int) -> TensorLayout:
    """CHW input: one channel per data memory, i.e. processors 0, 4, 8, ..."""
    mask = sum(1 << (4 * c) for c in range(channels))
    return TensorLayout(channels, 1, channels, mask, _memories(mask))


class LayerPlacement(NamedTuple):  # a NamedTuple: built for every layer of every checked network
    """One layer as placed: processors, passes, memory offsets, kernel and bias positions, cycles."""

    index: int
    name: str
    source: int  # producing layer, INPUT (-1) for the network input
    in_processors: int
    out_processors: int
    in_passes: int
    out_passes: int
    in_offset: int | None
    out_offset: int | None
    out_bytes: int  # bytes per data memory instance
    kernel_words: int
    kernel_offset: int | None  # None: did not fit
    bias_bytes: int
    bias_quadrant: int | None
    bias_offset: int | None
    cycles: int


@dataclass(frozen=True)
class PlacementPlan:
    device: str
    input_format: str  # "HWC" or "CHW"
    input_channels: int
    input_size: tuple[int, int]
    input_bytes: int  # per data memory instance
    layers: tuple[LayerPlacement, ...]
    kernels: KernelAllocation
    bias: BiasAllocation
    data: DataAllocation
    latency_cycles: int | None  # None where the device has no cycle model


def input_layout(inp: InputNode, device: Device, input_format: str | None = None) -> tuple[str, TensorLayout, int]:
    """Choose HWC when the input fits one memory instance that way, else CHW (izer's two input formats).

    Returns the format, the layout and the bytes per memory instance. Streaming is not modelled: an
    input that fits neither way is left to the checker to report.
    """
    h, w = inp.size
    hwc = hwc_layout(inp.channels, device.processors)
    hwc_bytes = h * w * hwc.passes * WORD_BYTES
    if input_format == "HWC" or (
        input_format is None and (hwc_bytes <= device.data_memory_bytes or inp.channels > device.data_memories)
    ):
        return "HWC", hwc, hwc_bytes
    return "CHW", chw_layout(inp.channels), h * w


def build_plan(
    inp: InputNode, nodes: Sequence[LayerNode], device: Device, input_format: str | None = None
) -> PlacementPlan:
    """Lay ``nodes`` out on ``device``: processor maps, kernel columns, bias, data offsets and cycles."""
    fmt, in_layout, in_bytes = input_layout(inp, device, input_format)
    outs = [hwc_layout(n.out_channels, device.processors) for n in nodes]

    def layout_of(source: int) -> TensorLayout:
        return in_layout if source == INPUT else outs[source]

    kernel_requests, bias_requests, tensors = [], [], []
    words, cycles = [], []
    last_use = {INPUT: 0}
    for node in nodes:
        last_use[node.source] = node.index
    end = len(nodes)
    tensors.append(TensorRequest(INPUT, in_layout.memories, in_bytes, -1, last_use[INPUT]))
    for node, out in zip(nodes, outs):
        src = layout_of(node.source)
        w = kernel_words(src.passes, out.passes, out.per_pass, node.kernel_size, node.weight_bits)
        words.append(w)
        kernel_requests.append(KernelRequest(node.index, src.processors, w))
        bias_requests.append(BiasRequest(node.index, node.out_channels))
        out_bytes = _tensor_bytes(node, out)
        death = end if node.is_output else last_use.get(node.index, node.index)
        tensors.append(TensorRequest(node.index, out.memories, out_bytes, node.index, death))
        cycles.append(
            layer_cycles(
                src.passes,
                node.pool,
                node.pooled_size,
                node.kernel_size,
                node.padding,
                node.out_size[1],
                out.per_pass * out.passes,
            )
        )

    kernels = allocate_kernels(kernel_requests, device.kernel_capacities, device.kernel_column_alignment)
    touched = in_layout.processors
    for out in outs:
        touched |= out.processors
    quadrant_mask = (1 << device.processors_per_quadrant) - 1
    quadrants = [q for q in range(device.quadrants) if touched >> (q * device.processors_per_quadrant) & quadrant_mask]
    bias = allocate_bias(bias_requests, quadrants, device.quadrants, device.bias_bytes_per_quadrant)
    data = allocate_data(tensors, device.data_memories, device.data_memory_bytes)

    offsets, columns, bias_at = data.offsets, kernels.offsets, bias.placement
    layers = []
    for node, out, w, cyc, tensor in zip(nodes, outs, words, cycles, tensors[1:]):
        src = layout_of(node.source)
        quadrant, bias_offset = bias_at.get(node.index, (None, None))
        # Positional: LayerPlacement's field order (this loop runs for every layer of every check).
        layers.append(
            LayerPlacement(
                node.index,
                node.name,
                node.source,
                src.processors,
                out.processors,
                src.passes,
                out.passes,
                offsets.get(node.source),
                offsets.get(node.index),
                tensor.nbytes,
                w,
                columns.get(node.index),
                node.out_channels,
                quadrant,
                bias_offset,
                cyc,
            )
        )
    latency = sum(cycles) + NETWORK_STARTUP_CYCLES if device.latency_model else None
    return PlacementPlan(
        device=device.name,
        input_format=fmt,
        input_channels=inp.channels,
        input_size=inp.size,
        input_bytes=in_bytes,
        layers=tuple(layers),
        kernels=kernels,
        bias=bias,
        data=data,
        latency_cycles=latency,
    )


def _tensor_bytes(node: LayerNode, layout: TensorLayout) -> int:
    h, w = node.out_size
    return h * w * layout.passes * WORD_BYTES * (WIDE_FACTOR if node.wide else 1)
