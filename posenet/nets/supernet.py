"""A weight-sharing supernet over a study's search space (Once-for-All style), and subnet extraction.

The supernet holds every layer the space can produce at its largest: each backbone slot at its widest
width with a 3x3 kernel (where the slot allows 3x3), every optional slot present, the deepest CPM at the
widest CPM width, the widest heads, and one first layer per stem (``pool``: max-pool 2 + conv on 3
channels, ``fold``: conv on the 12-channel folded input, ``stride2``: the seeds' stride-2 conv). With a
spec *active*, a layer uses the first ``out`` output channels and the first ``in`` input channels of its
weights (``in`` is the width of the previous *kept* layer, so a dropped slot is simply skipped), a 1x1
kernel is the centre tap of the 3x3 kernel, and the CPM is truncated to the spec's depth.

Batch-norm is shared by slicing, like the weights: a subnet uses the first ``out`` entries of the
affine parameters and of the running statistics. In training mode BN normalises with the batch's own
statistics, so every subnet trains correctly whatever the others did; the shared running statistics are
then a mixture over subnets, which is why a subnet is scored after *recalibrating* them on a few hundred
training images (``recalibrate_batchnorm``). Slicing (rather than one BN per subnet, or per width) keeps
extraction simple and exact: the extracted model's BN is the slice.

Arithmetic follows ``HwConv2d`` exactly, through the same functions (``posenet.nets.layers``):

* FLOAT: conv -> BN / 4 -> ReLU and clamp (or the wide clamp), as a FLOAT ``PoseNet``;
* QAT: the supernet keeps its BN and folds it into each subnet's weight slice on the fly, then
  fake-quantizes at the spec's per-layer weight bits. In eval mode it folds with the running statistics,
  which is exactly what ``PoseNet.start_qat`` does, so ``extract(spec).start_qat()`` computes the same;
  in training mode it folds with the batch's statistics (detached), so that no subnet trains against
  another's statistics, and updates the running ones.

``extract(spec)`` returns a stand-alone FLOAT ``PoseNet`` with the same state_dict keys as
``build_model(spec)`` and the inherited weights (and BN statistics).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from posenas.errors import SpecOutsideSpace
from posenas.posenet.nets.config import LowBitRecipe
from posenas.posenet.nets.layers import (
    HwConv2d,
    QuantMode,
    apply_pool,
    float_activation,
    fold_batchnorm,
    mse_shift,
    qat_conv,
    quantile_shift,
)
from posenas.posenet.nets.model import PoseNet, build_model
from posenas.space.graph import INPUT, LayerNode, layer_graph
from posenas.space.sampling import STEMS, SearchSpace, fixed_params
from posenas.space.spec import ArchSpec

_BN_OUTPUT_SCALE = 0.25  # v1: the BN output is divided by 4 (as HwConv2d)
IN_CHANNELS = 3


def _widest(bounds: tuple[int, int], step: int) -> int:
    low, high = bounds
    return low + (high - low) // step * step  # the widest width sample_arch can produce


class SuperNet(nn.Module):
    """Every layer of ``space`` at its largest; ``forward(x, spec)`` runs the subnet ``spec``."""

    def __init__(self, space: SearchSpace, lowbit: LowBitRecipe | None = None) -> None:
        super().__init__()
        self.space = space
        # the low-bit recipe's layer arithmetic (bias bits, shift rule) for the QAT phase's layers below 8 bits
        self.lowbit = lowbit
        self._mode = QuantMode.FLOAT
        self._graphs: dict[ArchSpec, tuple[LayerNode, ...]] = {}  # checked specs (the search repeats them)
        slots, step = space.backbone, space.width_step
        widths = [_widest(slot.width, step) for slot in slots]
        cpm_width, head_width = _widest(space.cpm_width, step), _widest(space.head_width, step)

        def widest_input(index: int) -> int:
            """The widest layer that can feed slot ``index`` (the previous one, or one before dropped slots)."""
            best, j = 0, index - 1
            while j >= 0:
                best = max(best, widths[j])
                if not slots[j].optional:
                    break
                j -= 1
            return best

        self.stems = nn.ModuleDict()
        first = slots[0]
        for stem in space.stems:
            in_channels = IN_CHANNELS * (4 if stem == "fold" else 1)
            pool = 2 if stem == "pool" else first.pool
            self.stems[stem] = _layer(
                in_channels, widths[0], _kernel(first.kernels), pool=pool, stride=2 if stem == "stride2" else 1
            )
        self.layers = nn.ModuleDict()
        for i, slot in enumerate(slots[1:], start=1):
            self.layers[slot.name] = _layer(widest_input(i), widths[i], _kernel(slot.kernels), pool=slot.pool)
        cpm_in = widest_input(len(slots))
        for j in range(1, space.cpm_depth[1] + 1):
            self.layers[f"cpm{j}"] = _layer(cpm_in if j == 1 else cpm_width, cpm_width, _kernel(space.cpm_kernels))
        for head, channels in (("heat", 19), ("paf", 38)):
            self.layers[f"{head}_conv"] = _layer(cpm_width, head_width, 1)
            self.layers[f"{head}_out"] = _layer(head_width, channels, 1, wide=True)

    # -- mode ----------------------------------------------------------------------------------------
    @property
    def mode(self) -> QuantMode:
        return self._mode

    def start_qat(self) -> None:
        """FLOAT -> QAT: from now on each subnet folds its BN slice into its weights and fake-quantizes."""
        if self._mode is not QuantMode.FLOAT:
            raise RuntimeError(f"start_qat needs a FLOAT supernet, this one is {self._mode.value}")
        self._mode = QuantMode.QAT

    def set_mode(self, mode: QuantMode) -> None:
        """FLOAT or QAT (a resumed run sets the phase it stopped in); SIMULATE is for extracted models."""
        if mode not in (QuantMode.FLOAT, QuantMode.QAT):
            raise ValueError(f"a supernet runs in FLOAT or QAT, not {mode.value}")
        self._mode = mode

    # -- subnets -------------------------------------------------------------------------------------
    def check(self, spec: ArchSpec) -> None:
        """SpecOutsideSpace (one line) unless ``spec`` is a network of this supernet's space."""
        _check_in_space(spec, self.space)

    def forward(self, x: torch.Tensor, spec: ArchSpec) -> tuple[torch.Tensor, torch.Tensor]:
        """(heatmaps, PAFs) of the subnet ``spec`` on ``x`` (training scale, before the host's folding)."""
        nodes = self._graph(spec)
        if spec.fold > 1:
            x = F.pixel_unshuffle(x, spec.fold)
        results: dict[int, torch.Tensor] = {INPUT: x}
        outputs = []
        for node in nodes:
            results[node.index] = self._run(node, self.module_for(node, spec), results[node.source])
            if node.is_output:
                outputs.append(results[node.index])
        heatmaps, pafs = outputs
        return heatmaps, pafs

    def _graph(self, spec: ArchSpec) -> tuple[LayerNode, ...]:
        nodes = self._graphs.get(spec)
        if nodes is None:
            if len(self._graphs) > 4096:
                self._graphs.clear()
            nodes = self._graphs[spec] = _graph_in_space(spec, self.space)
        return nodes

    def module_for(self, node: LayerNode, spec: ArchSpec) -> HwConv2d:
        """The supernet layer whose weights the spec's layer ``node`` slices."""
        if node.index == 0:
            return self.stems[stem_of(spec)]
        return self.layers[node.name]

    def _run(self, node: LayerNode, layer: HwConv2d, x: torch.Tensor) -> torch.Tensor:
        weight, bias = _slices(layer, node)
        x = apply_pool(layer.pool, x, self._mode)

        def conv(inp: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
            return F.conv2d(inp, w, b, node.stride, node.padding)

        bn, out = layer.bn, node.out_channels
        if self._mode is QuantMode.FLOAT:
            y = conv(x, weight, bias)
            if bn is not None:
                momentum = 0.0
                if self.training:  # as nn.BatchNorm2d: count batches; momentum None is a cumulative average
                    bn.num_batches_tracked.add_(1)
                    momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
                y = (
                    F.batch_norm(
                        y,
                        bn.running_mean[:out],
                        bn.running_var[:out],
                        bn.weight[:out],
                        bn.bias[:out],
                        self.training,
                        momentum,
                        bn.eps,
                    )
                    * _BN_OUTPUT_SCALE
                )
            return float_activation(y, wide=node.wide, relu=node.relu)
        if bn is not None:
            if self.training:
                mean, var = _batch_statistics(conv(x.detach(), weight.detach(), bias.detach()), bn, out)
            else:
                mean, var = bn.running_mean[:out], bn.running_var[:out]
            weight, bias = fold_batchnorm(weight, bias, bn.weight[:out], bn.bias[:out], mean, var, bn.eps)
        bits, recipe = node.weight_bits, self.lowbit
        if recipe is not None and recipe.applies_to(bits):
            # The recipe as PoseNet.start_qat applies it; a held shift is chosen for the folded slice at hand
            # (each subnet and batch folds its own), as a stand-alone layer chooses it between epochs.
            if recipe.shift == "mse":
                shift = mse_shift(weight, bits)
            else:
                shift = quantile_shift(weight, bias, recipe.shift_quantile)
            return qat_conv(
                x,
                weight,
                bias,
                bits,
                shift,
                wide=node.wide,
                relu=node.relu,
                conv=conv,
                bias_bits=recipe.bias_bits or bits,
            )
        return qat_conv(
            x,
            weight,
            bias,
            bits,
            quantile_shift(weight, bias, layer.quantile),
            wide=node.wide,
            relu=node.relu,
            conv=conv,
        )

    def extract(self, spec: ArchSpec) -> PoseNet:
        """A stand-alone FLOAT ``PoseNet`` of ``spec`` with the inherited weights and BN statistics."""
        nodes = self._graph(spec)
        model = build_model(spec)
        with torch.no_grad():
            for node, target in zip(nodes, model.hardware_layers()):
                source = self.module_for(node, spec)
                weight, bias = _slices(source, node)
                target.op.weight.copy_(weight)
                target.op.bias.copy_(bias)
                if target.bn is not None:
                    assert source.bn is not None
                    out = node.out_channels
                    for key in ("weight", "bias", "running_mean", "running_var"):
                        getattr(target.bn, key).copy_(getattr(source.bn, key)[:out])
                    target.bn.num_batches_tracked.copy_(source.bn.num_batches_tracked)
        return model.to(next(self.parameters()).device)

    def subnet_parameters(self, spec: ArchSpec) -> Iterator[nn.Parameter]:
        """The supernet parameters that ``spec`` uses (whole tensors; it uses slices of them)."""
        for node in self._graph(spec):
            yield from self.module_for(node, spec).parameters()


def stem_of(spec: ArchSpec) -> str:
    """Which stem the spec's first layer is (the space's notion: fold, stride2 or pool)."""
    first = spec.backbone[0]
    return "fold" if spec.fold == 2 else "stride2" if first.stride == 2 else "pool"


def _layer(
    in_channels: int, out_channels: int, kernel: int, *, pool: int = 0, stride: int = 1, wide: bool = False
) -> HwConv2d:
    return HwConv2d(
        in_channels, out_channels, kernel, stride=stride, pool_size=pool, batchnorm=not wide, relu=not wide, wide=wide
    )


def _kernel(kernels: Iterable[int]) -> int:
    kernels = tuple(kernels)
    return 3 if 3 in kernels else max(kernels)


def _slices(layer: HwConv2d, node: LayerNode) -> tuple[torch.Tensor, torch.Tensor]:
    """The spec layer's weight (first out/in channels; the centre tap for a 1x1 kernel) and bias."""
    weight = layer.op.weight[: node.out_channels, : node.in_channels]
    full = layer.op.kernel_size[0]
    if node.kernel_size != full:
        start = (full - node.kernel_size) // 2
        weight = weight[:, :, start : start + node.kernel_size, start : start + node.kernel_size]
    assert layer.op.bias is not None
    return weight.contiguous(), layer.op.bias[: node.out_channels]


def _batch_statistics(y: torch.Tensor, bn: nn.BatchNorm2d, out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch's per-channel mean and (biased) variance of ``y``; updates the BN slice's running stats."""
    with torch.no_grad():
        mean = y.mean(dim=(0, 2, 3))
        var = y.var(dim=(0, 2, 3), unbiased=False)
        n = y.numel() // y.shape[1]
        momentum = bn.momentum if bn.momentum is not None else 0.1
        bn.running_mean[:out].mul_(1 - momentum).add_(mean, alpha=momentum)
        bn.running_var[:out].mul_(1 - momentum).add_(var * n / max(1, n - 1), alpha=momentum)
    return mean, var


def _check_in_space(spec: ArchSpec, space: SearchSpace) -> None:
    try:
        fixed_params(spec, space)  # names the first decision the space cannot make
    except SpecOutsideSpace as exc:
        raise SpecOutsideSpace(f"outside the supernet's search space: {exc}") from None
    if spec.in_channels != IN_CHANNELS:
        raise SpecOutsideSpace(f"{spec.name}: {spec.in_channels} input channels; the supernet takes {IN_CHANNELS}")
    if stem_of(spec) not in space.stems or stem_of(spec) not in STEMS:
        raise SpecOutsideSpace(f"{spec.name}: stem {stem_of(spec)} is outside the search space")
    odd = [layer.name for layer in spec.layers() if layer.pool and layer.pool_type != "max"]
    if odd:
        raise SpecOutsideSpace(f"{spec.name}: average pooling in {odd}; the space pools with max")


def _graph_in_space(spec: ArchSpec, space: SearchSpace) -> tuple[LayerNode, ...]:
    """The spec's layer graph, after checking that the supernet holds it."""
    _check_in_space(spec, space)
    return layer_graph(spec)


def recalibrate_batchnorm(model: nn.Module, batches: Iterable[Any], forward: Any = None) -> int:
    """Reset every BN's running statistics and re-estimate them (cumulative average) on ``batches``.

    ``forward(model, batch)`` runs one batch (default ``model(batch)``); returns the images seen. This is
    what makes a subnet's inherited statistics its own before it is folded and scored."""
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over all recalibration batches
    was_training = model.training
    model.train()
    seen = 0
    try:
        with torch.no_grad():
            for batch in batches:
                forward(model, batch) if forward is not None else model(batch)
                seen += len(batch) if isinstance(batch, torch.Tensor) else 0
    finally:
        for m, momentum in zip(norms, saved):
            m.momentum = momentum
        model.train(was_training)
    return seen
