"""The integer network: a trained run checkpoint in the chip's arithmetic, and the checkpoint
ai8x-synthesis reads.

ai8x-synthesis' ``quantize.py`` turns a QAT checkpoint into integers: per layer, weights and bias are
scaled by 2**(bits-1) * 2**bit_shift (bit_shift from the largest parameter magnitude), rounded half up
and clamped to the layer's bits; the bias is stored times 2**(bits-1); ``output_shift`` = -bit_shift;
``adjust_output_shift`` becomes 0 and ``quantize_activation`` 1 (docs/quantization.md section 2.4).
``HwConv2d.to_simulate`` implements exactly that conversion, so the integer checkpoint written here and
the SIMULATE model that computes the expected outputs hold the same numbers by construction. Layers below
8 bits trained with posenas's low-bit recipe convert with their held shift and an 8-bit bias (on the
weights' grid, stored times 2**(bits-1)), which ai8x-synthesis reads back the same way; quantize.py, which
recomputes the shift from the quantile and quantizes the bias otherwise, does not reproduce them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from posenas.posenet.nets.checkpoint import RunCheckpoint, model_for, recipe_of
from posenas.posenet.nets.layers import QuantMode, wide_output_scale
from posenas.posenet.nets.model import PoseNet
from posenas.space.graph import LayerNode, layer_graph

CLIPPING_METHOD = "MAX_BIT_SHIFT"  # quantize.py's default (no --clip-method), recorded in extras as it does


@dataclass(frozen=True, eq=False)  # eq=False: arrays do not compare to a bool
class IntegerLayer:
    """One hardware layer as the chip runs it.

    ``weight`` is (out, in, k, k) int64 in the signed ``bits`` range; ``bias`` is (out,) int64 in
    [-128, 127] (the hardware adds it times 128) or None. ``output_shift`` is the checkpoint's value;
    ``shift`` = output_shift + 8 - bits is what the hardware applies: y = round(acc * 2**shift / 128).
    """

    node: LayerNode
    weight: np.ndarray
    bias: np.ndarray | None
    output_shift: int
    bits: int

    @property
    def shift(self) -> int:
        return self.output_shift + 8 - self.bits

    @property
    def wide_scale(self) -> float:
        """A wide (32-bit) output divided by this is the map the network was trained to produce:
        the accumulator is 128 * 2**(bits-1) times the QAT output (docs/quantization.md section 2.6)."""
        return wide_output_scale(self.bits)


def simulation_model(checkpoint: RunCheckpoint) -> tuple[PoseNet, bool]:
    """The checkpoint's network in SIMULATE mode, and whether it had to be quantized post-training.

    A QAT checkpoint converts as quantize.py would. A float checkpoint (e.g. best-float.pt) is first
    folded and quantized without training (post-training quantization), which usually costs accuracy.
    """
    model = model_for(checkpoint)
    post_training = model.mode is QuantMode.FLOAT
    if post_training:
        model.start_qat(recipe_of(checkpoint))
    model.to_simulate()
    return model.eval(), post_training


def integer_layers(model: PoseNet) -> tuple[IntegerLayer, ...]:
    """Every hardware layer of a SIMULATE-mode model with its integer weights, in execution order."""
    layers = []
    for node, layer in zip(layer_graph(model.spec), model.hardware_layers()):
        weight, bias, _ = layer.integer_weights()
        layers.append(
            IntegerLayer(
                node=node,
                weight=weight.numpy(),
                bias=None if bias is None else bias.numpy(),
                output_shift=int(layer.output_shift.item()),
                bits=layer.target_bits,
            )
        )
    return tuple(layers)


def synthesis_checkpoint(checkpoint: RunCheckpoint, model: PoseNet) -> dict[str, Any]:
    """The dict ai8x-synthesis' ``ai8xize.py --checkpoint-file`` reads (what quantize.py would write).

    Keys in layer order (izer pairs ``*.weight`` keys with YAML layers by order): per layer the six meta
    values as float32 [1] tensors, ``op.weight`` (integers as float32) and ``op.bias`` (integer times
    2**(bits-1), float32). Top level: ``state_dict``, ``arch`` (lower case, must equal the YAML's),
    ``epoch``, ``extras`` (the run's, plus ``clipping_method``), and posenas' own section so that the
    file still says which spec it belongs to. Everything is a tensor, number or string: the file loads
    with ``torch.load(weights_only=True)``.
    """
    if model.mode is not QuantMode.SIMULATE:
        raise ValueError(f"synthesis_checkpoint needs a simulate-mode model, got {model.mode.value}")
    state = {}
    for key, value in model.state_dict().items():
        # quantize.py writes every meta value as float32 (bits, flags and shift alike).
        state[key] = value.detach().to(torch.float32).clone()
    return {
        "state_dict": state,
        "arch": checkpoint.spec.name.lower(),
        "epoch": checkpoint.epoch,
        "extras": {**_plain_extras(checkpoint.extras), "clipping_method": CLIPPING_METHOD},
        "posenas": {
            "spec": checkpoint.spec.to_dict(),
            "mode": QuantMode.SIMULATE.value,
            "source_mode": checkpoint.mode.value,
        },
    }


def _plain_extras(extras: dict[str, Any]) -> dict[str, Any]:
    """The run's extras with numbers as plain Python numbers."""
    return {k: (v.item() if isinstance(v, torch.Tensor) and v.numel() == 1 else v) for k, v in extras.items()}
