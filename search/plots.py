"""The Plotly figures of a search: AP against parameters and against latency with the Pareto front, and
the hypervolume of the (AP, parameters) front over trial number.

Everything here takes ``TrialRecord`` lists (``search.records``), never an Optuna study. ``write_plots``
writes self-contained HTML (plotly.js embedded, so the files open offline) and, where plotly's static
export works (kaleido and a Chrome), PNGs next to them.

Hypervolume (``hypervolume_2d``): the area that the trained records dominate in the (parameters, AP)
plane, bounded by the reference point (AP 0, ``reference_params`` parameters), divided by
``reference_params``. It is in AP units: the mean, over parameter budgets from 0 to the reference, of the
best AP among the records that fit that budget (1.0 would be AP 1 with no parameters). The figure's
reference is 1.1 x the largest parameter count among the trained feasible records (``reference_params``).
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import plotly.graph_objects as go

from posenas.search.records import QUALITY_NAMES, TrialRecord, pareto_front, quality, quality_value

REFERENCE_FACTOR = 1.1  # hypervolume reference: this x the largest parameter count among trained records
FIGURES = ("ap_vs_params", "ap_vs_latency", "hypervolume")
_MAX_VIOLATIONS_SHOWN = 6

_COLORS = {"trained": "#4c78a8", "front": "#e45756", "baseline": "#f58518", "infeasible": "#b3362c",
           "untrained": "#888888", "reused": "#9ecae9", "hypervolume": "#54a24b"}  # fmt: skip


def figures_of(records: list[TrialRecord], title: str, objective: str = "ap") -> dict[str, go.Figure]:
    """The search's figures by name: quality against parameters and against latency, and (AP studies) the
    hypervolume by trial. A study ranked by a loss has no hypervolume (it is defined on AP here)."""
    if objective == "ap":
        return {
            "ap_vs_params": ap_figure(records, "params", title),
            "ap_vs_latency": ap_figure(records, "latency_ms", title),
            "hypervolume": hypervolume_figure(records, title),
        }  # fmt: skip
    return {f"{objective}_vs_params": ap_figure(records, "params", title, objective),
            f"{objective}_vs_latency": ap_figure(records, "latency_ms", title, objective)}  # fmt: skip


def write_plots(records: list[TrialRecord], out_dir: Path, title: str, png: bool = True,
                objective: str = "ap") -> list[Path]:  # fmt: skip
    """Write ``report.html`` into ``out_dir`` (created if missing): every figure of ``figures_of`` on one
    self-contained page (plotly.js embedded once, so it opens offline), with the counts and the
    stand-alone results above them. With ``png``, also one PNG per figure when plotly's static export
    works here (it needs kaleido and a Chrome), else no PNGs and no error. Returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = figures_of(records, title, objective)
    parts = [figure.to_html(full_html=False, include_plotlyjs=(i == 0), default_height="620px")
             for i, figure in enumerate(figures.values())]  # fmt: skip
    path = out_dir / "report.html"
    path.write_text(_page(title, records, parts, objective), encoding="utf-8")
    paths = [path]
    if png:
        paths += _write_pngs(figures, out_dir)
    return paths


def _page(title: str, records: list[TrialRecord], parts: list[str], objective: str = "ap") -> str:
    """One HTML page: a heading, what the study holds, the stand-alone table, then the figures."""
    scored = sum(1 for r in records if r.trained and r.reused_from is None)
    rejected = sum(1 for r in records if r.state == "COMPLETE" and not r.feasible)
    reused = sum(1 for r in records if r.reused_from is not None)
    retrained = sorted((r for r in records if r.standalone_ap == r.standalone_ap), key=lambda r: -r.standalone_ap)
    rows = "".join(
        f"<tr><td>{r.number}</td><td>{html.escape(r.baseline or r.name)}</td><td>{r.standalone_ap:.3f}</td>"
        f"<td>{_number(quality_value(r, objective))}</td><td>{r.params:,}</td>"
        f"<td>{r.latency_ms:.2f}</td></tr>"
        for r in retrained
    )  # fmt: skip
    table = ("<h2>Trained stand-alone</h2><table><tr><th>trial</th><th>name</th><th>AP stand-alone (QAT)</th>"
             f"<th>search's {QUALITY_NAMES[objective]}</th><th>parameters</th><th>latency ms</th></tr>{rows}</table>") if retrained else ""
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}: posenas search</title>"
        "<style>body{font-family:sans-serif;margin:1.5em;max-width:1100px}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{len(records)} trials: {scored} scored, {rejected} rejected by the "
        f"budget before scoring, {reused} reused (an architecture scored before).</p>{table}"
        + "".join(f"<div>{part}</div>" for part in parts)
        + "</body></html>"
    )


def _write_pngs(figures: dict[str, go.Figure], out_dir: Path) -> list[Path]:
    """The PNGs that plotly's static export manages; stops quietly at the first failure (no kaleido, no
    Chrome, ...), removing any partial file."""
    written = []
    for stem, figure in figures.items():
        path = out_dir / f"{stem}.png"
        try:
            figure.write_image(path, width=1000, height=650)
        except Exception:  # noqa: BLE001 - any export failure means "no PNGs here", never a failed plot
            path.unlink(missing_ok=True)
            break
        written.append(path)
    return written


# --- fronts and hypervolume --------------------------------------------------------------------------


def front_2d(records: Iterable[TrialRecord], cost: Callable[[TrialRecord], float],
             objective: str = "ap") -> list[TrialRecord]:  # fmt: skip
    """Trained records (reused ones left out, as in ``pareto_front``) that no other such record beats on
    both ``objective`` (AP up or loss down) and ``cost`` (down), sorted by cost; records whose cost or
    quality is not finite are left out. Ties in both keep the lowest trial number. With ``cost`` =
    parameters this is ``pareto_front(records, objective=objective)``."""
    pool = [r for r in records if r.trained and r.reused_from is None and math.isfinite(cost(r))
            and math.isfinite(quality(r, objective))]  # fmt: skip
    front, best = [], -math.inf
    for r in sorted(pool, key=lambda r: (cost(r), -quality(r, objective), r.number)):
        if quality(r, objective) > best:
            front.append(r)
            best = quality(r, objective)
    return front


def latency_front(records: Iterable[TrialRecord], objective: str = "ap") -> list[TrialRecord]:
    """The 2-D quality-vs-latency front, the one ``ap_vs_latency.html`` draws. (``pareto_front(records,
    latency=True)`` is the 3-D front with parameters; projected onto this plane some of its members look
    dominated, so the latency figure uses this one.)"""
    return front_2d(records, lambda r: r.latency_ms, objective)


def reference_params(records: Iterable[TrialRecord]) -> float:
    """The hypervolume reference on the parameter axis: 1.1 x the largest parameter count among the
    trained feasible records; 0.0 when none is trained."""
    trained = [r.params for r in records if r.trained]
    return REFERENCE_FACTOR * max(trained) if trained else 0.0


def hypervolume_2d(records: Iterable[TrialRecord], reference_params: float) -> float:
    """Area dominated by the trained records in the (parameters down, AP up) plane, bounded by the
    reference point (AP 0, ``reference_params``), divided by ``reference_params`` (see the module
    docstring: AP units, between 0 and the best AP).

    Only trained records count (complete, feasible, AP not NaN); reused records (an identical earlier
    architecture) are left out as in ``pareto_front``; records with AP <= 0 or parameters >=
    ``reference_params`` add nothing."""
    if not reference_params > 0:
        return 0.0
    points = sorted((float(r.params), r.ap) for r in records
                    if r.trained and r.reused_from is None and r.ap > 0 and r.params < reference_params)
    area, best, last = 0.0, 0.0, 0.0
    for params, ap in points:
        if ap > best:  # dominated points neither add area nor split a step (so the sum is the front's alone)
            area += best * (params - last)
            best, last = ap, params
    area += best * (reference_params - last)
    return area / reference_params


def hypervolume_curve(records: Sequence[TrialRecord], reference: float | None = None) -> list[tuple[int, float]]:
    """(trial number, hypervolume of the records up to and including that trial) for every record, in
    trial-number order, all against one reference (default ``reference_params(records)``), so the curve
    never decreases."""
    ordered = sorted(records, key=lambda r: r.number)
    reference = reference_params(ordered) if reference is None else reference
    curve, counted, value = [], [], 0.0
    for r in ordered:
        if r.trained and r.reused_from is None:
            counted.append(r)
            value = hypervolume_2d(counted, reference)
        curve.append((r.number, value))
    return curve


# --- figures -----------------------------------------------------------------------------------------


def ap_figure(records: Sequence[TrialRecord], x: str, title: str, objective: str = "ap") -> go.Figure:
    """AP against ``x`` ("params" or "latency_ms"): trained trials as points, the 2-D front (AP up, x
    down) highlighted and joined by a step line, baselines as labelled stars, reused trials faint, and
    the trials that were never trained (infeasible: red x; feasible but failed, pruned or still running:
    grey rings) on a strip below AP 0. Records whose ``x`` is not finite are not drawn. With ``objective``
    "loss" or "fg_loss" the y axis is that loss, drawn downwards (better is still up) and the strip sits
    above the worst loss."""
    if x not in ("params", "latency_ms"):
        raise ValueError(f"x must be 'params' or 'latency_ms', not {x!r}")
    label = "parameters" if x == "params" else "latency (ms, izer's estimate)"

    def xval(r: TrialRecord) -> float:
        return float(r.params) if x == "params" else r.latency_ms

    def yval(r: TrialRecord) -> float:
        return quality_value(r, objective)

    shown = [r for r in records if math.isfinite(xval(r))]
    front = pareto_front(shown, objective=objective) if x == "params" else latency_front(shown, objective)
    on_front = {r.number for r in front}
    trained = [r for r in shown if r.trained and math.isfinite(yval(r))]
    if objective == "ap":
        top = max([r.ap for r in trained] + [1e-3])  # the axis follows the data, however small the APs
        strip, y_range, y_title = -0.06 * top, [-0.13 * top, 1.1 * top], "AP (QAT, validation)"
    else:
        losses = [yval(r) for r in trained] or [1.0]
        low, high = min(losses), max(losses)
        pad = max(high - low, 1e-3 * high, 1e-9)
        strip, y_range = high + 0.12 * pad, [high + 0.25 * pad, low - 0.1 * pad]
        y_title = f"{QUALITY_NAMES[objective]} (lower is better)"

    figure = go.Figure()

    def add(name: str, rows: list[TrialRecord], ys: list[float] | None = None, **style) -> None:
        if rows:
            figure.add_trace(go.Scatter(
                x=[xval(r) for r in rows], y=ys if ys is not None else [yval(r) for r in rows], name=name,
                hovertext=[_hover(r) for r in rows], hoverinfo="text", customdata=[r.number for r in rows],
                **style,
            ))  # fmt: skip

    # Baselines first, so the front and the other trials are drawn over their stars, not hidden under them;
    # their labels take turns above, below and beside, so that two close baselines stay readable.
    baselines = [r for r in shown if r.baseline is not None]
    positions = ("top center", "bottom center", "middle right", "middle left")
    add("baselines", baselines, [yval(r) if r in trained else strip for r in baselines], mode="markers+text",
        text=[html.escape(str(r.baseline)) for r in baselines],
        textposition=[positions[i % len(positions)] for i in range(len(baselines))],
        marker={"color": _COLORS["baseline"], "symbol": "star", "size": 18, "opacity": 0.6,
                "line": {"color": "black", "width": 1}})  # fmt: skip
    add("trained", [r for r in trained if r.reused_from is None and r.number not in on_front], mode="markers",
        marker={"color": _COLORS["trained"], "size": 8})
    reused = [r for r in trained if r.reused_from is not None]
    add("reused (same architecture as an earlier trial)", reused,
        mode="markers", marker={"color": _COLORS["reused"], "size": 7}, opacity=0.4)
    quality_name = QUALITY_NAMES[objective]
    add("Pareto front" if x == "params" else f"front ({quality_name} vs latency)", front, mode="lines+markers",
        line={"color": _COLORS["front"], "shape": "hv", "width": 2}, marker={"color": _COLORS["front"], "size": 11})
    infeasible = [r for r in shown if not r.feasible]
    add("infeasible (not trained)", infeasible, [strip] * len(infeasible), mode="markers",
        marker={"color": _COLORS["infeasible"], "symbol": "x", "size": 9})
    failed = [r for r in shown if r.feasible and not r.trained]
    add("feasible, not trained (failed, pruned or running)", failed, [strip] * len(failed), mode="markers",
        marker={"color": _COLORS["untrained"], "symbol": "circle-open", "size": 9})
    what = QUALITY_NAMES[objective]
    which = "" if x == "params" else f" (the {what}-vs-latency front, not the 3-D one)"
    figure.update_layout(
        title=f"{html.escape(title)}: {what} vs {label}<br><sup>{len(trained) - len(reused)} scored ({len(reused)} more "
              f"reused), {len(infeasible)} infeasible, {len(front)} on the front{which}</sup>",
        xaxis_title=label, yaxis_title=y_title, template="plotly_white", hovermode="closest",
        yaxis={"range": y_range, "zeroline": objective == "ap"},
        # room on the right for the labels of the largest networks (student-hw-mixed would be cut off)
        xaxis={"range": [0, 1.15 * max([xval(r) for r in shown] + [1.0])]},
    )  # fmt: skip
    return figure


def hypervolume_figure(records: Sequence[TrialRecord], title: str) -> go.Figure:
    """Hypervolume (``hypervolume_2d``) of the (AP, parameters) front of all trials so far, against trial
    number, as a step line; the trials that raised it are marked."""
    reference = reference_params(records)
    curve = hypervolume_curve(records, reference)
    by_number = {r.number: r for r in records}
    figure = go.Figure(go.Scatter(
        x=[n for n, _ in curve], y=[v for _, v in curve], mode="lines", name="hypervolume",
        line={"color": _COLORS["hypervolume"], "shape": "hv", "width": 2}, hoverinfo="x+y",
    ))  # fmt: skip
    raised = [(n, v) for i, (n, v) in enumerate(curve) if v > (curve[i - 1][1] if i else 0.0)]
    figure.add_trace(go.Scatter(
        x=[n for n, _ in raised], y=[v for _, v in raised], mode="markers", name="raised by this trial",
        marker={"color": _COLORS["front"], "size": 9}, customdata=[n for n, _ in raised], hoverinfo="text",
        hovertext=[f"{_hover(by_number[n])}<br>hypervolume {v:.4f}" for n, v in raised],
    ))  # fmt: skip
    note = (f"reference: AP 0, {reference:,.0f} parameters (1.1 x the largest trained); area / reference, in AP"
            if reference > 0 else "no trained feasible trial yet")
    figure.update_layout(
        title=f"{html.escape(title)}: hypervolume of the AP-vs-parameters front<br><sup>{note}</sup>",
        xaxis_title="trial number", yaxis_title="hypervolume (mean best AP over parameter budgets)",
        template="plotly_white", yaxis={"rangemode": "tozero"},
        # whole trial numbers only (plotly would put ticks at 0.5 with a few trials)
        xaxis={"tickmode": "linear", "dtick": max(1, math.ceil(len(curve) / 12)), "tickformat": "d"},
    )  # fmt: skip
    return figure


def _hover(r: TrialRecord) -> str:
    lines = [f"trial {r.number}: {r.name}"]
    if r.baseline is not None:
        lines.append(f"baseline {r.baseline}")
    lines.append(f"AP {r.ap:.3f}" if r.ap == r.ap else "AP - (not trained)")
    if r.val_loss == r.val_loss:
        lines.append(f"validation loss {r.val_loss:.5f}")
    if r.fg_loss == r.fg_loss:
        lines.append(f"foreground loss {r.fg_loss:.4f}")
    if r.standalone_ap == r.standalone_ap:
        lines.append(f"AP trained stand-alone {r.standalone_ap:.3f}")
    lines.append(f"params {r.params:,}")
    lines.append(f"latency {r.latency_ms:.2f} ms" if math.isfinite(r.latency_ms) else "latency -")
    if not r.feasible:
        shown = list(r.violations[:_MAX_VIOLATIONS_SHOWN]) or ["(no violation recorded)"]
        if len(r.violations) > _MAX_VIOLATIONS_SHOWN:
            shown.append(f"... and {len(r.violations) - _MAX_VIOLATIONS_SHOWN} more")
        lines += ["infeasible:"] + [f"  {v}" for v in shown]
    elif not r.trained:
        lines.append(f"not trained (state {r.state})")
    if r.reused_from is not None:
        lines.append(f"same architecture as trial {r.reused_from}")
    return "<br>".join(html.escape(line) for line in lines)


def _number(value: float) -> str:
    """A score for a table cell: 5 significant digits, '-' where there is none."""
    return "-" if value != value else f"{value:.5g}"
