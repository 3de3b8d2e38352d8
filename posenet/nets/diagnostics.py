"""Per-layer quantization diagnostics of a QAT network: what each layer's weight bits leave of it.

For every hardware layer: its weight and bias bits, its shift, the fraction of weights that quantize to a
nonzero level, the cosine between the float (folded, unquantized) weights and the quantized ones, and the
cosine between the layer's output with exact and with quantized arithmetic on the same input (the
input the QAT network gives the layer on one batch). A layer whose nonzero fraction or output cosine lies
far below the others' is *collapsing*: at 2 bits with ai8x v1's shift most weights of a layer round to 0
and its output is little more than its bias (BENCHMARKS.md, "Low-bit QAT").
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass
from typing import Any

import torch

from posenas.posenet.nets.layers import HwConv2d, QuantMode, hardware_layers, weight_levels
from posenas.posenet.nets.model import PoseNet

COLLAPSE_COSINE = 0.5
"""An output cosine below this, and ``COLLAPSE_MARGIN`` below the network's median, marks a collapsing layer."""
COLLAPSE_MARGIN = 0.3
COLLAPSE_NONZERO_RATIO = 0.25
"""A nonzero fraction below this share of the network's median marks a collapsing layer."""
COLLAPSE_NONZERO = 0.15
"""A nonzero fraction below this marks a collapsing layer whatever the others do: when every 2-bit layer
collapses at once (ai8x v1's shift on tiny-hw at 2 bits: 0-13 % nonzero), none lies far below the median.
The recipe's 2-bit layers keep 36-78 % (BENCHMARKS.md, "Low-bit QAT")."""


@dataclass(frozen=True)
class LayerDiagnostics:
    """One layer's quantization, as the table and the run's JSON show it."""

    layer: str
    weight_bits: int
    bias_bits: int
    shift: int
    nonzero: float  # fraction of the weights whose quantized level is not 0
    weight_cosine: float  # float (folded) weights against quantized weights
    output_cosine: float  # layer output, exact against quantized arithmetic, on the same input

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().flatten(), b.detach().double().flatten()
    norms = float(a.norm() * b.norm())
    return float(a @ b) / norms if norms > 0 else (1.0 if float(a.norm()) == float(b.norm()) else 0.0)


def layer_diagnostics(model: PoseNet, x: torch.Tensor) -> list[LayerDiagnostics]:
    """The diagnostics of every layer of a QAT-mode ``model`` on the batch ``x`` (model input)."""
    if model.mode is not QuantMode.QAT:
        raise ValueError(f"layer diagnostics need a QAT-mode network, this one is {model.mode.value}")
    inputs: dict[str, torch.Tensor] = {}
    hooks = [
        layer.register_forward_pre_hook(lambda module, args, name=name: inputs.__setitem__(name, args[0]))
        for name, layer in hardware_layers(model)
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
            rows = [_diagnose(name, layer, inputs[name]) for name, layer in hardware_layers(model)]
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return rows


def _diagnose(name: str, layer: HwConv2d, x: torch.Tensor) -> LayerDiagnostics:
    levels, scale, shift = weight_levels(layer)
    weight = layer.op.weight.detach()
    quantized = layer(x)
    exact = layer.exact_output(x)
    return LayerDiagnostics(
        layer=name,
        weight_bits=layer.target_bits,
        bias_bits=int(layer.bias_bits.item()),
        shift=shift,
        nonzero=float((levels != 0).double().mean()),
        weight_cosine=_cosine(weight, levels * scale),
        output_cosine=_cosine(exact, quantized),
    )


def collapsing_layers(rows: list[LayerDiagnostics]) -> list[str]:
    """The layers whose nonzero fraction or output cosine lies far below the network's others (or whose
    nonzero fraction is below ``COLLAPSE_NONZERO``)."""
    if not rows:
        return []
    median_nonzero = statistics.median(r.nonzero for r in rows)
    median_cosine = statistics.median(r.output_cosine for r in rows)
    return [
        r.layer
        for r in rows
        if r.nonzero < COLLAPSE_NONZERO
        or r.nonzero < COLLAPSE_NONZERO_RATIO * median_nonzero
        or (r.output_cosine < COLLAPSE_COSINE and r.output_cosine < median_cosine - COLLAPSE_MARGIN)
    ]


def collapse_warning(rows: list[LayerDiagnostics]) -> str | None:
    """One line naming the collapsing layers, or None."""
    names = collapsing_layers(rows)
    if not names:
        return None
    by_name = {r.layer: r for r in rows}
    parts = [
        f"{n} ({by_name[n].weight_bits}-bit: {by_name[n].nonzero:.0%} nonzero, output cosine "
        f"{by_name[n].output_cosine:.2f})"
        for n in names
    ]
    return f"collapsing layer{'s' if len(names) > 1 else ''}: {', '.join(parts)}"
