"""The layer graph of a spec: every hardware layer with its shapes, in execution order.

This is the one description of a network that the budget checker places on a device, the model builder
turns into modules and the exporter writes out, so shapes, parameter and MAC counts are computed once,
here. Nodes are plain frozen dataclasses; ``source`` links a layer to the layer whose output it reads
(-1 for the network input), which is how the second head reads the CPM output.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from posenas.space.spec import ArchSpec, LayerSpec

INPUT = -1


@dataclass(frozen=True)
class LayerNode:
    """One hardware layer: [pool] -> conv -> [BN] -> [ReLU], or a wide output layer."""

    index: int
    name: str
    role: str  # "backbone", "cpm", "head" or "output"
    source: int  # index of the producing layer, INPUT for the network input
    in_channels: int
    in_size: tuple[int, int]
    out_channels: int
    kernel_size: int
    padding: int
    stride: int
    pool: int  # window and stride of the pooling in front of the conv; 0 = none
    pool_type: str
    weight_bits: int
    batchnorm: bool
    relu: bool
    wide: bool
    is_output: bool
    # Derived from the fields above in __post_init__ (stored, not recomputed: the checker reads them often).
    pooled_size: tuple[int, int] = field(init=False)
    out_size: tuple[int, int] = field(init=False)

    def __post_init__(self) -> None:
        p = max(self.pool, 1)
        h, w = self.in_size[0] // p, self.in_size[1] // p
        k, pad, s = self.kernel_size, self.padding, self.stride
        object.__setattr__(self, "pooled_size", (h, w))
        object.__setattr__(self, "out_size", ((h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1))

    @property
    def weight_count(self) -> int:
        return self.in_channels * self.out_channels * self.kernel_size**2

    @property
    def params(self) -> int:
        """Trainable parameters: weights, bias, and the affine batch-norm scale and shift."""
        bn = 2 * self.out_channels if self.batchnorm else 0
        return self.weight_count + self.out_channels + bn

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the convolution, padding positions included (as izer counts them)."""
        h, w = self.out_size
        return self.weight_count * h * w


@dataclass(frozen=True)
class InputNode:
    """What the first layer receives: the image after host-side data folding."""

    channels: int
    size: tuple[int, int]
    fold: int


def network_input(spec: ArchSpec) -> InputNode:
    side = spec.input_size // spec.fold
    return InputNode(channels=spec.in_channels * spec.fold**2, size=(side, side), fold=spec.fold)


def layer_graph(spec: ArchSpec) -> tuple[LayerNode, ...]:
    """All hardware layers of ``spec`` in execution order: backbone, CPM, heatmap head, PAF head."""
    inp = network_input(spec)
    nodes: list[LayerNode] = []
    channels, size = inp.channels, inp.size

    def add(layer: LayerSpec, role: str, source: int, in_ch: int, in_size: tuple[int, int]) -> LayerNode:
        node = LayerNode(
            index=len(nodes),
            name=layer.name,
            role=role,
            source=source,
            in_channels=in_ch,
            in_size=in_size,
            out_channels=layer.out_channels,
            kernel_size=layer.kernel_size,
            padding=layer.kernel_size // 2,
            stride=layer.stride,
            pool=layer.pool,
            pool_type=layer.pool_type,
            weight_bits=layer.weight_bits,
            batchnorm=True,
            relu=True,
            wide=False,
            is_output=False,
        )
        nodes.append(node)
        return node

    for role, chain in (("backbone", spec.backbone), ("cpm", spec.cpm)):
        for layer in chain:
            node = add(layer, role, len(nodes) - 1 if nodes else INPUT, channels, size)
            channels, size = node.out_channels, node.out_size
    trunk = nodes[-1]
    for head in spec.heads:
        source, channels = trunk.index, trunk.out_channels
        for layer in head.hidden:
            node = add(layer, "head", source, channels, trunk.out_size)
            source, channels = node.index, node.out_channels
        nodes.append(
            LayerNode(
                index=len(nodes),
                name=head.out_name,
                role="output",
                source=source,
                in_channels=channels,
                in_size=trunk.out_size,
                out_channels=head.out_channels,
                kernel_size=1,
                padding=0,
                stride=1,
                pool=0,
                pool_type="max",
                weight_bits=head.out_bits,
                batchnorm=False,
                relu=False,
                wide=True,
                is_output=True,
            )
        )
    return tuple(nodes)


def count_params(spec: ArchSpec) -> int:
    return sum(node.params for node in layer_graph(spec))


def count_macs(spec: ArchSpec) -> int:
    return sum(node.macs for node in layer_graph(spec))
