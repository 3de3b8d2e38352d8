"""Terminal tables for specs and budget reports (rich)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from budgets.checker import BudgetReport
from space.graph import layer_graph, network_input
from space.spec import ArchSpec


def layer_table(spec: ArchSpec) -> Table:
    """One row per hardware layer: shapes, kernel, pooling, bits, parameters and MACs."""
    inp = network_input(spec)
    title = (f"{spec.name}  (hash {spec.spec_hash()}; input {spec.in_channels}x{spec.input_size}x{spec.input_size}"
             + (f", folded x{spec.fold} to {inp.channels}x{inp.size[0]}x{inp.size[1]}" if spec.fold > 1 else "") + ")")
    table = Table(title=title, title_justify="left")
    for col in ("#", "layer", "reads", "input", "op", "output", "bits", "params", "MACs"):
        table.add_column(col, justify="right" if col in ("#", "bits", "params", "MACs") else "left")
    nodes = layer_graph(spec)
    for n in nodes:
        reads = "input" if n.source < 0 else nodes[n.source].name
        op = f"{n.kernel_size}x{n.kernel_size} conv"
        if n.stride != 1:
            op += f" /{n.stride}"
        if n.pool:
            op = f"{n.pool_type}pool {n.pool} + " + op
        op += " wide" if n.wide else " BN ReLU"
        table.add_row(str(n.index), n.name, reads, _shape(n.in_channels, n.in_size), op,
                      _shape(n.out_channels, n.out_size), str(n.weight_bits), f"{n.params:,}", f"{n.macs:,}")
    table.add_section()
    table.add_row("", "total", "", "", "", "", "", f"{sum(n.params for n in nodes):,}",
                  f"{sum(n.macs for n in nodes):,}")
    return table


def print_budget_report(result: BudgetReport, console: Console) -> None:
    verdict = "[bold green]fits[/]" if result.fits else "[bold red]does not fit[/]"
    console.print(f"{result.arch} on {result.device}: {verdict}")
    usage = Table(title="usage", title_justify="left")
    for col in ("resource", "used", "available", "%", "where"):
        usage.add_column(col, justify="right" if col in ("used", "available", "%") else "left")
    for u in result.usage:
        used = f"{u.used:,.3f}" if isinstance(u.used, float) else f"{u.used:,}"
        avail = "-" if u.available is None else (f"{u.available:,}")
        pct = "-" if u.fraction is None else f"{100 * u.fraction:.1f}"
        usage.add_row(f"{u.resource} ({u.unit})", used, avail, pct, u.detail)
    console.print(usage)
    plan = Table(title=f"placement plan (input {result.plan.input_format}, {result.plan.input_channels}x"
                       f"{result.plan.input_size[0]}x{result.plan.input_size[1]})", title_justify="left")
    for col in ("layer", "in procs", "out procs", "passes", "in/out offset", "kernel words @ col", "bias q@off",
                "cycles"):
        plan.add_column(col, justify="left" if col == "layer" else "right")
    for p in result.plan.layers:
        kernel = f"{p.kernel_words} @ {'-' if p.kernel_offset is None else p.kernel_offset}"
        bias = "-" if p.bias_quadrant is None else f"{p.bias_quadrant}@{p.bias_offset}"
        offsets = f"{_hex(p.in_offset)}/{_hex(p.out_offset)}"
        plan.add_row(p.name, processor_ranges(p.in_processors), processor_ranges(p.out_processors),
                     f"{p.in_passes}/{p.out_passes}", offsets, kernel, bias, f"{p.cycles:,}")
    console.print(plan)
    latency = ("no cycle model" if result.latency_ms is None
               else f"{result.latency_cycles:,} cycles = {result.latency_ms:.3f} ms")
    console.print(f"params {result.params:,}   MACs {result.macs:,}   latency {latency}")
    if result.violations:
        console.print(f"[bold red]{len(result.violations)} violation(s):[/]")
        for v in result.violations:
            console.print(f"  [red]{v.resource}[/]: {v.message}", highlight=False)


def processor_ranges(mask: int) -> str:
    """A processor bitmask as compact ranges, e.g. 0x111 -> "0,4,8", 0xffff -> "0-15"."""
    procs = [p for p in range(mask.bit_length()) if mask >> p & 1]
    parts, start = [], None
    for i, p in enumerate(procs):
        if start is None:
            start = p
        if i + 1 == len(procs) or procs[i + 1] != p + 1:
            parts.append(str(start) if start == p else f"{start}-{p}")
            start = None
    return ",".join(parts) or "-"


def _shape(channels: int, size: tuple[int, int]) -> str:
    return f"{channels}x{size[0]}x{size[1]}"


def _hex(value: int | None) -> str:
    return "-" if value is None else f"0x{value:04x}"
