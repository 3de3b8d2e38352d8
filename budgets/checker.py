"""The budget checker: does a network fit a device, and if not, exactly why.

``check`` builds the placement plan and turns everything that went wrong into :class:`Violation` records
that name the layer and the numbers (the processor and words for kernel memory, the memory instance and
bytes for data memory, ...), plus per-resource usage. It never adds up parameters or bytes to decide:
each budget is structural (docs/max78000.md section 9).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from posenas.budgets.device import Budget
from posenas.budgets.plan import PlacementPlan, build_plan
from posenas.space.graph import InputNode, LayerNode, layer_graph, network_input
from posenas.space.spec import ArchSpec

# Every resource a violation can name, in a fixed order: the one list that the search's per-resource
# constraints are built from (a resource added here is constrained there too).
RESOURCES = ("operation", "input", "layers", "kernel_memory", "bias_memory", "data_memory", "macs", "latency")


@dataclass(frozen=True)
class Violation:
    """One reason a network does not fit: the resource (one of ``RESOURCES``), the layer (if any), and the
    numbers."""

    resource: str
    layer: str | None
    message: str
    needed: float | None = None
    available: float | None = None

    def __post_init__(self) -> None:
        if self.resource not in RESOURCES:
            raise AssertionError(f"violation of unknown resource {self.resource!r}; add it to RESOURCES")


@dataclass(frozen=True)
class Usage:
    """How much of one resource the network uses (``used`` of ``available``, in ``unit``)."""

    resource: str
    used: float
    available: float | None
    unit: str
    detail: str = ""

    @property
    def fraction(self) -> float | None:
        return None if not self.available else self.used / self.available


@dataclass(frozen=True)
class BudgetReport:
    arch: str
    arch_hash: str | None
    device: str
    fits: bool
    violations: tuple[Violation, ...]
    usage: tuple[Usage, ...]
    params: int
    macs: int
    latency_cycles: int | None
    latency_ms: float | None
    plan: PlacementPlan

    def usage_of(self, resource: str) -> Usage:
        return next(u for u in self.usage if u.resource == resource)

    def to_dict(self, with_plan: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "arch": self.arch,
            "arch_hash": self.arch_hash,
            "device": self.device,
            "fits": self.fits,
            "params": self.params,
            "macs": self.macs,
            "latency_cycles": self.latency_cycles,
            "latency_ms": self.latency_ms,
            "violations": [asdict(v) for v in self.violations],
            "usage": {
                u.resource: {
                    "used": u.used,
                    "available": u.available,
                    "unit": u.unit,
                    "fraction": u.fraction,
                    "detail": u.detail,
                }
                for u in self.usage
            },
        }
        if with_plan:
            out["layers"] = [_layer_dict(layer) for layer in self.plan.layers]
        return out


def check(spec: ArchSpec, budget: Budget, input_format: str | None = None) -> BudgetReport:
    """Check an architecture against a budget."""
    return check_graph(
        network_input(spec),
        layer_graph(spec),
        budget,
        name=spec.name,
        arch_hash=spec.spec_hash(),
        input_format=input_format,
    )


def check_graph(
    inp: InputNode,
    nodes: Sequence[LayerNode],
    budget: Budget,
    name: str = "network",
    arch_hash: str | None = None,
    input_format: str | None = None,
) -> BudgetReport:
    """Check any layer graph (not only pose networks) against a budget."""
    device = budget.device
    plan = build_plan(inp, nodes, device, input_format)
    violations = [*_operation_violations(nodes, budget), *_input_violations(plan, budget)]
    violations += _allocation_violations(plan, nodes)
    macs = sum(n.macs for n in nodes)
    latency_ms = None if plan.latency_cycles is None else plan.latency_cycles / (device.clock_mhz * 1e3)
    violations += _limit_violations(macs, latency_ms, budget)
    return BudgetReport(
        arch=name,
        arch_hash=arch_hash,
        device=device.name,
        fits=not violations,
        violations=tuple(violations),
        usage=_usage(plan, nodes, budget, macs, latency_ms),
        params=sum(n.params for n in nodes),
        macs=macs,
        latency_cycles=plan.latency_cycles,
        latency_ms=latency_ms,
        plan=plan,
    )


def _operation_violations(nodes: Sequence[LayerNode], budget: Budget) -> list[Violation]:
    device = budget.device
    out: list[Violation] = []
    if len(nodes) > device.max_layers:
        out.append(
            Violation(
                "layers",
                None,
                f"{len(nodes)} layers, {device.name} runs at most {device.max_layers}",
                len(nodes),
                device.max_layers,
            )
        )
    for n in nodes:

        def bad(text: str, needed: float | None = None, available: float | None = None, n: LayerNode = n) -> None:
            out.append(Violation("operation", n.name, f"{n.name}: {text}", needed, available))

        if n.stride not in device.conv_strides:
            bad(
                f"convolution stride {n.stride} is not supported on {device.name} (stride "
                f"{'/'.join(map(str, device.conv_strides))} only; downsample with pooling in front of the layer)",
                n.stride,
                max(device.conv_strides),
            )
        if n.kernel_size not in device.kernel_sizes:
            bad(
                f"kernel {n.kernel_size}x{n.kernel_size} is not supported (only "
                f"{', '.join(f'{k}x{k}' for k in device.kernel_sizes)})"
            )
        if n.padding > device.max_padding or (n.padding and n.padding >= n.kernel_size):
            bad(f"padding {n.padding} is not supported with a {n.kernel_size}x{n.kernel_size} kernel")
        if n.pool > device.max_pool:
            bad(f"pooling {n.pool}x{n.pool} exceeds the maximum {device.max_pool}", n.pool, device.max_pool)
        for what, channels in (("input", n.in_channels), ("output", n.out_channels)):
            if channels > device.max_channels:
                bad(f"{channels} {what} channels exceed {device.max_channels}", channels, device.max_channels)
        if max(n.in_size) > device.max_dim:
            bad(
                f"{n.in_size[0]}x{n.in_size[1]} input exceeds {device.max_dim} rows/columns",
                max(n.in_size),
                device.max_dim,
            )
        if n.weight_bits not in device.weight_bits:
            bad(f"{n.weight_bits}-bit weights are not supported")
        if n.out_channels > device.bias_bytes_per_quadrant:
            bad(
                f"bias for {n.out_channels} outputs exceeds one quadrant's {device.bias_bytes_per_quadrant} bytes",
                n.out_channels,
                device.bias_bytes_per_quadrant,
            )
    return out


def _input_violations(plan: PlacementPlan, budget: Budget) -> list[Violation]:
    cap = budget.device.data_memory_bytes
    if plan.input_bytes <= cap:
        return []
    c, (h, w) = plan.input_channels, plan.input_size
    return [
        Violation(
            "input",
            None,
            f"input {c}x{h}x{w} needs {plan.input_bytes:,} B per data memory as {plan.input_format}, "
            f"{cap:,} B available (streaming is not modelled: fold the data or pool in the first layer)",
            plan.input_bytes,
            cap,
        )
    ]


def _allocation_violations(plan: PlacementPlan, nodes: Sequence[LayerNode]) -> list[Violation]:
    names = {n.index: n.name for n in nodes}
    out: list[Violation] = []
    for f in plan.kernels.failures:
        out.append(
            Violation(
                "kernel_memory",
                names[f.layer],
                f"{names[f.layer]}: kernel memory exhausted at processor {f.processor}; offset {f.offset}, "
                f"needed {f.words} words ({f.capacity} per processor)",
                f.offset + f.words,
                f.capacity,
            )
        )
    for f in plan.bias.failures:
        out.append(
            Violation(
                "bias_memory",
                names[f.layer],
                f"{names[f.layer]}: bias memory exhausted; needs {f.nbytes} B, best quadrant {f.quadrant} "
                f"has {f.free} B free",
                f.nbytes,
                f.free,
            )
        )
    for f in plan.data.failures:
        what = "input" if f.tensor < 0 else f"{names[f.tensor]} output"
        if f.nbytes > f.capacity:
            text = f"{what} needs {f.nbytes:,} B per data memory instance, {f.capacity:,} B available"
        else:
            text = (
                f"{what} ({f.nbytes:,} B per instance) does not fit beside the tensors still live: "
                f"memory {f.memory} holds {f.live_bytes:,} of {f.capacity:,} B"
            )
        out.append(
            Violation(
                "data_memory",
                None if f.tensor < 0 else names[f.tensor],
                text,
                f.nbytes + (0 if f.nbytes > f.capacity else f.live_bytes),
                f.capacity,
            )
        )
    return out


def _limit_violations(macs: int, latency_ms: float | None, budget: Budget) -> list[Violation]:
    limits, out = budget.limits, []
    if limits.max_macs is not None and macs > limits.max_macs:
        out.append(
            Violation("macs", None, f"{macs:,} MACs exceed the limit of {limits.max_macs:,}", macs, limits.max_macs)
        )
    if limits.max_latency_ms is not None:
        if latency_ms is None:
            out.append(
                Violation("latency", None, f"a latency limit is set but {budget.device.name} has no cycle model")
            )
        elif latency_ms > limits.max_latency_ms:
            out.append(
                Violation(
                    "latency",
                    None,
                    f"estimated latency {latency_ms:.3f} ms exceeds the limit of {limits.max_latency_ms} ms",
                    latency_ms,
                    limits.max_latency_ms,
                )
            )
    return out


def _usage(
    plan: PlacementPlan, nodes: Sequence[LayerNode], budget: Budget, macs: int, latency_ms: float | None
) -> tuple[Usage, ...]:
    device = budget.device
    kernels = plan.kernels
    busiest = kernels.busiest_processor
    worst_mem = max(range(len(plan.data.high_water)), key=lambda m: plan.data.high_water[m])
    worst_quad = max(range(len(plan.bias.used)), key=lambda q: plan.bias.used[q])
    naive = sum(n.weight_count * n.weight_bits for n in nodes) // 8
    return (
        Usage("layers", len(nodes), device.max_layers, "layers"),
        Usage(
            "kernel_memory",
            kernels.high_water,
            device.words_at(busiest),
            "words",
            f"processor {busiest}; {kernels.occupied_words:,} of {sum(device.kernel_capacities):,} words in all",
        ),
        Usage(
            "bias_memory",
            plan.bias.used[worst_quad],
            device.bias_bytes_per_quadrant,
            "bytes",
            f"quadrant {worst_quad}; per quadrant {'/'.join(map(str, plan.bias.used))}",
        ),
        Usage(
            "data_memory",
            plan.data.high_water[worst_mem],
            device.data_memory_bytes,
            "bytes",
            f"memory instance {worst_mem} (highest byte the plan uses)",
        ),
        Usage(
            "weight_bytes_naive",
            naive,
            device.processors * device.kernel_words * 9,
            "bytes",
            "izer's naive 'Weight memory' sum; not a budget",
        ),
        Usage("macs", macs, budget.limits.max_macs, "MAC"),
        Usage(
            "latency",
            latency_ms if latency_ms is not None else float("nan"),
            budget.limits.max_latency_ms,
            "ms",
            "" if latency_ms is not None else f"{device.name}: no cycle model",
        ),
    )


def _layer_dict(layer: Any) -> dict[str, Any]:
    d = layer._asdict()
    for key in ("in_processors", "out_processors"):
        d[key] = f"0x{d[key]:016x}"
    return d
