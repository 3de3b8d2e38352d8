"""Build a PyTorch pose network from an architecture spec.

Layers are created in execution order from the same layer graph the budget checker places, so the
state_dict lists ``<layer>.op.weight`` keys in the order ai8x-synthesis assigns them to YAML layers.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from posenas.posenet.nets.config import LowBitRecipe
from posenas.posenet.nets.layers import HwConv2d, QuantMode, hardware_layers
from posenas.space.graph import INPUT, LayerNode, layer_graph
from posenas.space.spec import ArchSpec


class PoseNet(nn.Module):
    """An OpenPose-style network: returns (heatmaps [N, 19, H/8, W/8], PAFs [N, 38, H/8, W/8])."""

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.spec = spec
        self._nodes: tuple[LayerNode, ...] = layer_graph(spec)
        for node in self._nodes:
            self.add_module(node.name, _layer(node))
        # Each head's output layer, in head order (heatmaps, PAFs).
        self._outputs = tuple(node.index for node in self._nodes if node.is_output)
        # How many later layers read each tensor, to free intermediate results early.
        self._readers = {i: sum(1 for n in self._nodes if n.source == i) for i in range(-1, len(self._nodes))}

    @property
    def mode(self) -> QuantMode:
        return self.hardware_layers()[0].mode

    def hardware_layers(self) -> list[HwConv2d]:
        """The layers in execution order (they are registered in that order)."""
        return [layer for _, layer in hardware_layers(self)]

    def output_layers(self) -> tuple[HwConv2d, HwConv2d]:
        """The heatmap and PAF output layers."""
        layers = self.hardware_layers()
        heatmaps, pafs = (layers[i] for i in self._outputs)
        return heatmaps, pafs

    def start_qat(self, recipe: LowBitRecipe | None = None) -> None:
        """Fold batch-norm into the convolutions and switch every layer to quantization-aware training.

        Without ``recipe`` (or with a disabled one) every layer follows ai8x v1; with it, the layers below
        8 bits take the recipe's bias bits and shift rule (``HwConv2d.start_qat``)."""
        for layer in self.hardware_layers():
            if recipe is not None and recipe.applies_to(layer.target_bits):
                layer.start_qat(bias_bits=recipe.bias_bits or None, fixed_shift=recipe.shift == "mse")
                if recipe.shift == "quantile":
                    layer.set_shift_quantile(recipe.shift_quantile)
            else:
                layer.start_qat()

    def calibrate_shifts(self) -> dict[str, int]:
        """Re-choose the held shifts (``HwConv2d.calibrate_shift``) for the current weights: {layer: shift}.

        Output (wide) layers keep the shift chosen at the switch: a wide layer has no output shift, so its
        maps come out scaled by 2**-shift, and a new shift would double or halve every map at once (measured:
        fid02's 2-bit PAF head, loss 0.027 -> 0.041 and AP 0.004 -> 0 at the epoch it moved)."""
        return {
            name: layer.calibrate_shift()
            for name, layer in hardware_layers(self)
            if layer.shift_is_fixed and not layer.wide
        }

    def to_simulate(self) -> None:
        """Replace the weights by the integer checkpoint and compute as the chip does (eval only)."""
        for layer in self.hardware_layers():
            layer.to_simulate()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.spec.fold > 1:
            # Data folding happens on the host: the chip receives the space-to-depth tensor.
            x = F.pixel_unshuffle(x, self.spec.fold)
        return self.forward_folded(x)

    def forward_folded(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The layers alone, on the input as the chip receives it (after the host's data folding)."""
        results: dict[int, torch.Tensor] = {INPUT: x}
        pending = dict(self._readers)
        for node, layer in zip(self._nodes, self.hardware_layers()):
            results[node.index] = layer(results[node.source])
            pending[node.source] -= 1
            if pending[node.source] == 0 and node.source not in self._outputs:
                del results[node.source]
        heatmaps, pafs = (results[i] for i in self._outputs)
        return heatmaps, pafs


def _layer(node: LayerNode) -> HwConv2d:
    return HwConv2d(
        node.in_channels,
        node.out_channels,
        node.kernel_size,
        padding=node.padding,
        stride=node.stride,
        pool_size=node.pool,
        pool_type=node.pool_type,
        batchnorm=node.batchnorm,
        relu=node.relu,
        wide=node.wide,
        weight_bits=node.weight_bits,
    )


def build_model(spec: ArchSpec) -> PoseNet:
    return PoseNet(spec)


def trainable_parameters(model: nn.Module) -> int:
    """Parameters that training updates (the ai8x meta values are Parameters too, but frozen)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
