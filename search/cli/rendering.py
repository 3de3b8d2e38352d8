"""What a person sees in the terminal: tables (specs, budget reports, metrics, training histories, a
study's front), progress bars, and ``ConsoleEvents``, the rich rendering of the library's ``Events``.
Nothing here computes a result; the commands pass results in."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from posenas.events import EpochEvent, Events, Level, TrialEvent
from posenas.search.cli import interrupts
from posenas.space.graph import layer_graph, network_input
from posenas.space.spec import ArchSpec

if TYPE_CHECKING:
    from posenas.budgets.checker import BudgetReport
    from posenas.posenet.pose.evaluate import KeypointMetrics
    from posenas.search.pipeline import StudyResult

METRIC_COLUMNS = (
    ("AP", "ap"),
    ("AP50", "ap50"),
    ("AP75", "ap75"),
    ("AP_M", "ap_medium"),
    ("AP_L", "ap_large"),
    ("AR", "ar"),
)


def progress_bar(console: Console, *, status: bool = False) -> Progress:
    """A bar with count, elapsed time and ETA; with ``status``, a free text field (loss, img/s) after it.
    It disappears when done, and is invisible when the output is not a terminal (logs stay clean)."""
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    ]
    if status:
        columns.append(TextColumn("{task.fields[status]}"))
    return _WholeStartStopProgress(*columns, console=console, transient=True)


class _WholeStartStopProgress(Progress):
    """A Progress whose start and stop Ctrl-C cannot cut in half. Both push or pop the console's render hook,
    redirect the standard streams and start or join a refresh thread; an interrupt in the middle left them
    half done, and the next stop raised IndexError: a traceback where the user should read "interrupted"."""

    def start(self) -> None:
        with interrupts.held():
            super().start()

    def stop(self) -> None:
        with interrupts.held():
            super().stop()


def metrics_table(metrics: KeypointMetrics, title: str) -> Table:
    """COCO keypoint metrics as one row."""
    table = Table(*(name for name, _ in METRIC_COLUMNS), "images", "detections", title=title)
    values = metrics.to_dict()
    cells = ["-" if math.isnan(values[key]) else f"{values[key]:.3f}" for _, key in METRIC_COLUMNS]
    table.add_row(*cells, f"{metrics.images:,}", f"{metrics.detections:,}")
    return table


def history_table(history: list[dict], title: str) -> Table:
    """A training run's epochs, as stored in its checkpoint."""
    table = Table("epoch", "mode", "loss", "img/s", "s", "AP", "AP50", title=title)
    for record in history:
        table.add_row(
            str(record["epoch"] + 1),
            record["mode"],
            f"{record['loss']:.5f}",
            f"{record['images_per_s']:,.0f}",
            f"{record['seconds']:.1f}",
            *("-" if math.isnan(record[k]) else f"{record[k]:.3f}" for k in ("ap", "ap50")),
        )
    return table


def quantization_table(rows: list[dict], title: str) -> Table:
    """Per-layer quantization diagnostics (``LayerDiagnostics.to_dict()`` rows); low-bit layers in bold."""
    table = Table("layer", "weight bits", "bias bits", "shift", "nonzero", "weight cos", "output cos", title=title)
    for row in rows:
        style = "bold" if row["weight_bits"] < 8 else None
        table.add_row(
            row["layer"],
            str(row["weight_bits"]),
            str(row["bias_bits"]),
            str(row["shift"]),
            f"{row['nonzero']:.0%}",
            f"{row['weight_cosine']:.3f}",
            f"{row['output_cosine']:.3f}",
            style=style,
        )
    return table


def epoch_line(event: EpochEvent) -> str:
    """One finished epoch: a network's loss, speed and validation AP, or a supernet's largest-network and
    subnet losses; with the time the remaining epochs take at its pace (logs show no bar)."""
    record, epochs = event.record, event.epochs
    left = epochs - record.epoch - 1
    eta = f"  eta {left * record.seconds:.0f} s" if left > 0 else ""
    if hasattr(record, "loss_largest"):  # a supernet's epoch
        return (
            f"supernet epoch {record.epoch + 1}/{epochs} {record.mode:<5} loss largest {record.loss_largest:.5f}"
            f"  subnets {record.loss_subnets:.5f}  {record.subnets} subnet steps  {record.seconds:.1f} s{eta}"
        )
    return (
        f"epoch {record.epoch + 1}/{epochs} {record.mode:<5} loss {record.loss:.5f}  "
        f"{record.images_per_s:,.0f} img/s  {record.seconds:.1f} s  "
        + (f"val AP {record.ap:.3f}  AP50 {record.ap50:.3f}" if record.ap == record.ap else "not validated (time)")
        + eta
    )


class ConsoleEvents(Events):
    """The library's events on a rich console: messages and epochs as lines, counted work as transient
    progress bars (invisible when the output is not a terminal, so logs stay clean), trials as one line
    each, cuts as "time budget: ..." lines. Use as a context manager: the bars close on leaving."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = progress_bar(console, status=True)
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> ConsoleEvents:
        return self

    def __exit__(self, *exc: Any) -> None:
        for task in list(self.tasks):
            self.progress_end(task)
        self.progress.stop()  # also when Ctrl-C came between starting the display and recording its first task

    def message(self, text: str, level: Level = "info") -> None:
        if level == "warning":
            self.console.print(text, style="yellow", highlight=False, markup=False)
        else:
            self.console.print(text, highlight=False, markup=False)

    def cut(self, what: str) -> None:
        self.message(f"time budget: {what}")

    def progress_start(self, task: str, total: int | None = None) -> None:
        if not self.tasks:
            self.progress.start()
        self.tasks[task] = self.progress.add_task(task, total=total, status="")

    def progress_step(self, task: str, completed: int, total: int | None = None, status: str = "") -> None:
        if task not in self.tasks:
            self.progress_start(task, total)
        self.progress.update(self.tasks[task], completed=completed, total=total, status=status)

    def progress_end(self, task: str) -> None:
        found = self.tasks.pop(task, None)
        if found is not None:
            self.progress.remove_task(found)
        if not self.tasks:
            self.progress.stop()

    def epoch(self, event: EpochEvent) -> None:
        self.message(epoch_line(event))

    def trial(self, event: TrialEvent) -> None:
        self.message(f"trial {event.number} {event.name}: {event.detail}")


def counting(progress: Progress, description: str, total: int | None) -> Callable[[int], None]:
    """A ``progress(n)`` callback that advances a new task of ``progress`` by n."""
    task = progress.add_task(description, total=total, status="")
    return lambda n: progress.advance(task, n)


def layer_table(spec: ArchSpec) -> Table:
    """One row per hardware layer: shapes, kernel, pooling, bits, parameters and MACs."""
    inp = network_input(spec)
    title = (
        f"{spec.name}  (hash {spec.spec_hash()}; input {spec.in_channels}x{spec.input_size}x{spec.input_size}"
        + (f", folded x{spec.fold} to {inp.channels}x{inp.size[0]}x{inp.size[1]}" if spec.fold > 1 else "")
        + ")"
    )
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
        table.add_row(
            str(n.index),
            n.name,
            reads,
            _shape(n.in_channels, n.in_size),
            op,
            _shape(n.out_channels, n.out_size),
            str(n.weight_bits),
            f"{n.params:,}",
            f"{n.macs:,}",
        )
    table.add_section()
    table.add_row(
        "", "total", "", "", "", "", "", f"{sum(n.params for n in nodes):,}", f"{sum(n.macs for n in nodes):,}"
    )
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
    plan = Table(
        title=f"placement plan (input {result.plan.input_format}, {result.plan.input_channels}x"
        f"{result.plan.input_size[0]}x{result.plan.input_size[1]})",
        title_justify="left",
    )
    for col in (
        "layer",
        "in procs",
        "out procs",
        "passes",
        "in/out offset",
        "kernel words @ col",
        "bias q@off",
        "cycles",
    ):
        plan.add_column(col, justify="left" if col == "layer" else "right")
    for p in result.plan.layers:
        kernel = f"{p.kernel_words} @ {'-' if p.kernel_offset is None else p.kernel_offset}"
        bias = "-" if p.bias_quadrant is None else f"{p.bias_quadrant}@{p.bias_offset}"
        offsets = f"{_hex(p.in_offset)}/{_hex(p.out_offset)}"
        plan.add_row(
            p.name,
            processor_ranges(p.in_processors),
            processor_ranges(p.out_processors),
            f"{p.in_passes}/{p.out_passes}",
            offsets,
            kernel,
            bias,
            f"{p.cycles:,}",
        )
    console.print(plan)
    latency = (
        "no cycle model"
        if result.latency_ms is None
        else f"{result.latency_cycles:,} cycles = {result.latency_ms:.3f} ms"
    )
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


def front_table(result: StudyResult, title: str) -> Table:
    """The front, best first by the study's ranking score: the stand-alone AP where a network was trained
    on its own, the score that ranked it (an estimate when the supernet gave it), size, latency, fit."""
    from posenas.search.records import QUALITY_NAMES

    estimated = any(r.score_is_estimate for r in result.front)
    score = QUALITY_NAMES[result.objective] + (" (supernet estimate)" if estimated else " (QAT, trained)")
    form = "{:.3f}" if result.objective == "ap" else "{:.5f}"
    table = Table("trial", "name", "AP stand-alone", score, "parameters", "latency ms", "fits", title=title)
    for r in result.front:
        table.add_row(
            str(r.trial),
            r.name,
            number(r.standalone_ap, "{:.3f}"),
            number(r.score, form),
            f"{r.params:,}",
            number(r.latency_ms, "{:.2f}"),
            "yes" if r.fits else "no",
        )
    if estimated:
        table.caption = "AP stand-alone: after training on its own ('-': not trained); the estimate only ranks networks"
    return table


def retrained_table(result: StudyResult) -> Table:
    """The networks the last stage trained stand-alone (the front's best and the baselines), best first."""
    table = Table(
        "trial",
        "name",
        "AP stand-alone (QAT)",
        "supernet loss",
        "supernet fg loss",
        "supernet AP",
        "parameters",
        "latency ms",
        title="Trained stand-alone from the supernet's weights, the same schedule for all",
    )
    for r in result.retrained:
        table.add_row(
            str(r.trial),
            r.name,
            number(r.standalone_ap, "{:.3f}"),
            number(r.val_loss, "{:.5f}"),
            number(r.fg_loss, "{:.4f}"),
            number(r.ap, "{:.3f}"),
            f"{r.params:,}",
            number(r.latency_ms, "{:.2f}"),
        )
    return table


def number(value: float | None, form: str) -> str:
    """A table cell: ``-`` for an absent value."""
    return "-" if value is None or value != value else form.format(value)


def print_study_counts(result: StudyResult, console: Console) -> None:
    """What became of the trials, and what the time budget cut."""
    c = result.counts
    console.print(
        f"{c.trials} trials: {c.scored} scored, {c.rejected} rejected before scoring, {c.reused} reused, "
        f"{c.failed} failed"
        + (f"; {c.retrained} retrained stand-alone" if c.retrained else "")
        + f"; this worker ran {result.minutes:.1f} min"
    )
    if result.budget_minutes is not None:
        if result.cuts:
            console.print(f"what the {result.budget_minutes:g}-minute budget cut:")
            for cut in result.cuts:
                console.print(f"  - {cut}", highlight=False)
        else:
            console.print(f"the {result.budget_minutes:g}-minute budget cut nothing")


def print_study_result(result: StudyResult, console: Console) -> None:
    """A finished study: the fixed baseline's line or the front, the retrained networks, the counts, the
    recommendation with its next steps, and where the summary is."""
    if result.fixed is not None:  # one network, perhaps over budget: its own line rather than a front
        r = result.fixed
        fits = "fits" if r.fits else f"does not fit {result.budget}"
        console.print(
            f"{r.name}: AP {number(r.ap, '{:.3f}')} (QAT), {number(r.float_ap, '{:.3f}')} (float), "
            f"{r.params:,} parameters, {fits}"
        )
    console.print(front_table(result, f"Pareto front of {result.study}"))
    if result.retrained:
        console.print(retrained_table(result))
    print_study_counts(result, console)
    if result.report is not None:
        console.print(f"plots: {result.report}", highlight=False)
    chosen = result.recommended
    if chosen is None:
        console.print(f"[bold]no recommendation:[/] {result.reason}")
    else:
        latency = number(chosen.latency_ms, "{:.2f}")
        console.print(
            f"[bold]recommended: trial {chosen.trial} {chosen.name}[/] ({chosen.params:,} parameters, "
            f"{latency} ms): {result.reason}",
            highlight=False,
        )
        console.print("next steps:")
        for step in result.next_steps:
            console.print(f"  {step}", highlight=False, markup=False)
    if result.summary is not None:
        console.print(f"summary: {result.summary}", highlight=False)
