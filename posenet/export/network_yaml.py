"""The ai8x-synthesis network description (YAML), written from the budget checker's placement plan.

Every processor map, offset and input link comes from the ``PlacementPlan`` that decided the network
fits; nothing is re-derived here, so the file describes exactly what the checker approved
(docs/max78000.md sections 5 and 8.2). The text is written line by line rather than through a
YAML dumper so that processor maps stay 64-bit hex and each layer carries a comment with its shapes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from posenas.budgets.plan import PlacementPlan
from posenas.space.graph import INPUT, LayerNode


def network_yaml(arch: str, dataset: str, nodes: Sequence[LayerNode], plan: PlacementPlan) -> str:
    """The YAML text for ai8xize.py's ``--config-file``; ``arch`` must equal the checkpoint's ``arch``."""
    if len(nodes) != len(plan.layers):
        raise ValueError(f"{len(nodes)} layers but the plan places {len(plan.layers)}")
    lines = [
        f"# ai8x-synthesis network description of {arch}, written by posenas export from the placement",
        "# plan the budget checker approved. Both heads read the CPM output and are marked as outputs.",
        "---",
        f"arch: {arch}",
        f"dataset: {dataset}",
        "",
        "layers:",
    ]
    for node, placed in zip(nodes, plan.layers):
        lines.append(f"  # {node.index}: {_shape_comment(node)}")
        for i, (key, value) in enumerate(layer_entries(node, placed, plan, first=node.index == 0)):
            lines.append(("  - " if i == 0 else "    ") + f"{key}: {value}")
    return "\n".join(lines) + "\n"


def layer_entries(node: LayerNode, placed: Any, plan: PlacementPlan, first: bool) -> list[tuple[str, str]]:
    """(key, YAML value) pairs of one layer, in the order izer's documentation lists them."""
    if placed.in_offset is None or placed.out_offset is None:
        raise ValueError(f"{node.name}: the plan has no data memory offsets (the network does not fit)")
    entries = [
        ("name", node.name),
        ("processors", _hex64(placed.in_processors)),
        ("output_processors", _hex64(placed.out_processors)),
        ("in_offset", f"0x{placed.in_offset:04x}"),
        ("out_offset", f"0x{placed.out_offset:04x}"),
    ]
    if first:
        entries.append(("data_format", plan.input_format))
    if node.source != INPUT and node.source != node.index - 1:
        entries.append(("in_sequences", f"[{plan.layers[node.source].name}]"))
    entries += [
        ("op", "conv2d"),
        ("kernel_size", f"{node.kernel_size}x{node.kernel_size}"),
        ("pad", str(node.padding)),
        ("activate", "ReLU" if node.relu else "None"),
    ]
    if node.pool:
        entries += [
            ("max_pool" if node.pool_type == "max" else "avg_pool", str(node.pool)),
            ("pool_stride", str(node.pool)),
        ]
    if node.weight_bits != 8:
        entries.append(("quantization", str(node.weight_bits)))
    if node.wide:
        entries.append(("output_width", "32"))
    if node.is_output:
        entries.append(("output", "true"))
    return entries


def _hex64(mask: int) -> str:
    return f"0x{mask:016x}"


def _shape_comment(node: LayerNode) -> str:
    pool = f" {node.pool_type}pool {node.pool} ->" if node.pool else ""
    out_h, out_w = node.out_size
    return (
        f"{node.name} ({node.role}): {node.in_channels}x{node.in_size[0]}x{node.in_size[1]} ->{pool} "
        f"conv {node.kernel_size}x{node.kernel_size} -> {node.out_channels}x{out_h}x{out_w}"
        f"{', 32-bit output' if node.wide else ''}"
    )
