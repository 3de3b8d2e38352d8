"""Small layer graphs for budget tests (plain chains, not pose networks)."""

from __future__ import annotations

from posenas.space.graph import INPUT, InputNode, LayerNode


def chain(
    in_channels: int, size: int, layers: list[tuple], wide_last: bool = False
) -> tuple[InputNode, list[LayerNode]]:
    """A chain of convolutions; each layer is (out_channels, kernel[, bits[, pool]])."""
    nodes: list[LayerNode] = []
    channels, hw = in_channels, (size, size)
    for i, spec in enumerate(layers):
        out, kernel, bits, pool = (*spec, 8, 0)[:4] if len(spec) == 2 else (*spec, 0)[:4] if len(spec) == 3 else spec
        last = wide_last and i == len(layers) - 1
        node = LayerNode(
            index=i,
            name=f"l{i}",
            role="backbone",
            source=i - 1 if i else INPUT,
            in_channels=channels,
            in_size=hw,
            out_channels=out,
            kernel_size=kernel,
            padding=kernel // 2,
            stride=1,
            pool=pool,
            pool_type="max",
            weight_bits=bits,
            batchnorm=not last,
            relu=not last,
            wide=last,
            is_output=last,
        )
        nodes.append(node)
        channels, hw = out, node.out_size
    return InputNode(in_channels, (size, size), 1), nodes
