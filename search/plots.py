"""The Plotly figures of a search: the study's score against parameters and against latency with the
Pareto front, the AP of the networks trained stand-alone against latency, and the hypervolume of the
(AP, parameters) front over trial number.

Everything here takes ``TrialRecord`` lists (``search.records``), never an Optuna study. ``write_plots``
writes one self-contained HTML page (plotly.js embedded once, so it opens offline; the figures follow the
window's width) and, where plotly's static export works (kaleido and a Chrome), PNGs next to it.

How the score figures read: the scorer's score is on the y axis, named for what it is (a supernet's
estimate, or the AP of a network trained stand-alone); the networks that the budget rejected, and those
never scored, have no score, so they sit in a strip of their own below the axes, never at a made-up score.
The x axis is fitted to the scored search trials and the front; networks beyond it (big baselines that do
not fit) are named at its right edge. The front and the baselines carry their names as labels, placed
so that they do not overlap at the widths a report is read at (``place_labels``).

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
from dataclasses import dataclass
from pathlib import Path

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from posenas.files import atomic_write_text
from posenas.search.records import QUALITY_NAMES, TrialRecord, pareto_front, quality, quality_value

REFERENCE_FACTOR = 1.1  # hypervolume reference: this x the largest parameter count among trained records
FIGURES = ("ap_vs_params", "ap_vs_latency", "hypervolume")  # an AP study's figures (and STANDALONE_FIGURE)
STANDALONE_FIGURE = "standalone_ap_vs_latency"  # on the page wherever a network was trained stand-alone
_MAX_VIOLATIONS_SHOWN = 6

_COLORS = {
    "supernet": "#4c78a8",
    "train": "#2e8b57",
    "front": "#e45756",
    "baseline": "#f58518",
    "rejected": "#b3362c",
    "untrained": "#888888",
    "reused": "#9ecae9",
    "hypervolume": "#54a24b",
    "label": "#333333",
    "link": "#aaaaaa",
}

# Legend names: what a point's score is. "trained" alone was ambiguous (a supernet's subnet is not trained).
REJECTED = "rejected by the budget"
NOT_SCORED = "not scored (failed, pruned or running)"
REUSED = "reused (same architecture as an earlier trial)"


def scored_name(scorer: str, objective: str = "ap") -> str:
    """The legend name of the points a scorer scored: the supernet's scores are estimates, the other
    scorer's are those of the network trained stand-alone."""
    what = QUALITY_NAMES[objective]
    return f"scored by the supernet ({what} estimate)" if scorer == "supernet" else f"trained stand-alone ({what})"


def figures_of(records: list[TrialRecord], title: str, objective: str = "ap") -> dict[str, go.Figure]:
    """The search's figures by name, in page order: the study's score against parameters and against
    latency; in a study ranked by a loss, also AP against both where some networks have an AP; AP
    trained stand-alone against latency where a network was trained stand-alone; and (AP studies) the
    hypervolume by trial (defined on AP, so a study ranked by a loss has none)."""
    figures = {
        f"{objective}_vs_params": ap_figure(records, "params", title, objective),
        f"{objective}_vs_latency": ap_figure(records, "latency_ms", title, objective),
    }
    if objective != "ap" and any(r.trained and math.isfinite(r.ap) for r in records):
        figures |= {
            "ap_vs_params": ap_figure(records, "params", title),
            "ap_vs_latency": ap_figure(records, "latency_ms", title),
        }
    if any(math.isfinite(r.standalone_ap) for r in records):
        figures[STANDALONE_FIGURE] = standalone_figure(records, title, objective)
    if objective == "ap":
        figures["hypervolume"] = hypervolume_figure(records, title)
    return figures


def write_plots(
    records: list[TrialRecord], out_dir: Path, title: str, png: bool = True, objective: str = "ap"
) -> list[Path]:
    """Write ``report.html`` into ``out_dir`` (created if missing): every figure of ``figures_of`` on one
    self-contained page (plotly.js embedded once, so it opens offline; each figure as wide as the window),
    with the counts and the stand-alone results above them. With ``png``, also one PNG per figure when
    plotly's static export works here (it needs kaleido and a Chrome), else no PNGs and no error. Returns
    the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = figures_of(records, title, objective)
    parts = [
        figure.to_html(
            full_html=False,
            include_plotlyjs=(i == 0),
            default_width="100%",
            config={"responsive": True, "displaylogo": False},
        )
        for i, figure in enumerate(figures.values())
    ]
    path = out_dir / "report.html"
    atomic_write_text(path, _page(title, records, parts, objective))  # a killed run leaves the old page or the new
    paths = [path]
    if png:
        paths += _write_pngs(figures, out_dir)
    return paths


def _page(title: str, records: list[TrialRecord], parts: list[str], objective: str = "ap") -> str:
    """One HTML page: a heading, what the study holds, the stand-alone table, then the figures, each the
    page's full width (no max-width: a wide window gets wide figures)."""
    scored = [r for r in records if r.trained and r.reused_from is None]
    kinds = sorted({r.scorer for r in scored})
    scorers = {"supernet": "by the supernet (estimates)", "train": "by training stand-alone"}
    counts = [f"{sum(r.scorer == s for r in scored)} {scorers.get(s, s)}" for s in kinds]
    by_scorer = f" {scorers.get(kinds[0], kinds[0])}" if len(kinds) == 1 else ": " + ", ".join(counts)
    rejected = sum(1 for r in records if r.state == "COMPLETE" and not r.feasible)
    reused = sum(1 for r in records if r.reused_from is not None)
    retrained = sorted((r for r in records if r.standalone_ap == r.standalone_ap), key=lambda r: -r.standalone_ap)
    rows = "".join(
        f"<tr><td>{r.number}</td><td>{html.escape(r.baseline or r.name)}</td><td>{r.standalone_ap:.3f}</td>"
        f"<td>{_number(quality_value(r, objective))}</td><td>{r.params:,}</td>"
        f"<td>{r.latency_ms:.2f}</td></tr>"
        for r in retrained
    )
    table = (
        (
            "<h2>Trained stand-alone</h2><table><tr><th>trial</th><th>name</th><th>AP stand-alone (QAT)</th>"
            f"<th>search's {QUALITY_NAMES[objective]}</th><th>parameters</th><th>latency ms</th></tr>{rows}</table>"
        )
        if retrained
        else ""
    )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}: posenas search</title>"
        "<style>body{font-family:sans-serif;margin:1em 1.5em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}.figure{width:100%;margin-top:1em}</style>"
        f"</head><body><h1>{html.escape(title)}</h1><p>{len(records)} trials: {len(scored)} scored"
        f"{by_scorer if scored else ''}; {rejected} rejected by the budget before scoring; {reused} "
        f"reused (an architecture scored before).</p>{table}"
        + "".join(f"<div class='figure'>{part}</div>" for part in parts)
        + "</body></html>"
    )


def _write_pngs(figures: dict[str, go.Figure], out_dir: Path) -> list[Path]:
    """The PNGs that plotly's static export manages; stops quietly at the first failure (no kaleido, no
    Chrome, ...), removing any partial file."""
    written = []
    for stem, figure in figures.items():
        path = out_dir / f"{stem}.png"
        try:
            figure.write_image(path, width=1200, height=figure.layout.height or 650)
        except Exception:
            path.unlink(missing_ok=True)
            break
        written.append(path)
    return written


# --- fronts and hypervolume --------------------------------------------------------------------------


def front_2d(
    records: Iterable[TrialRecord], cost: Callable[[TrialRecord], float], objective: str = "ap"
) -> list[TrialRecord]:
    """Trained records (reused ones left out, as in ``pareto_front``) that no other such record beats on
    both ``objective`` (AP up or loss down) and ``cost`` (down), sorted by cost; records whose cost or
    quality is not finite are left out. Ties in both keep the lowest trial number. With ``cost`` =
    parameters this is ``pareto_front(records, objective=objective)``."""
    pool = [
        r
        for r in records
        if r.trained and r.reused_from is None and math.isfinite(cost(r)) and math.isfinite(quality(r, objective))
    ]
    front, best = [], -math.inf
    for r in sorted(pool, key=lambda r: (cost(r), -quality(r, objective), r.number)):
        if quality(r, objective) > best:
            front.append(r)
            best = quality(r, objective)
    return front


def latency_front(records: Iterable[TrialRecord], objective: str = "ap") -> list[TrialRecord]:
    """The 2-D quality-vs-latency front, the one the latency figure draws. (``pareto_front(records,
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
    points = sorted(
        (float(r.params), r.ap)
        for r in records
        if r.trained and r.reused_from is None and r.ap > 0 and r.params < reference_params
    )
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


# --- label placement ---------------------------------------------------------------------------------

# The plot-area widths (px) that labels must not overlap at: a report read in an 800-px and a 1400-px
# window (the page's and the figure's margins taken off). Label offsets are in pixels while the points
# spread with the width, so a placement checked at both ends holds in between.
LABEL_WIDTHS_PX = (600.0, 1250.0)
_CHAR_PX, _LINE_PX, _MARKER_PX = 6.6, 16.0, 7.0  # an 11-px label's character width and height; marker radius
_RADII_PX = (24.0, 40.0, 58.0, 78.0)
# Up-left first: no scored point lies above and left of a front member (it would dominate it), so a
# label there covers nothing; then the other directions, for the points next to an axis.
_ANGLES_DEG = (135, 90, 158, 112, 180, 67, 45, 202, 22, 0, 225, 248, 270, 292, 315, 338)

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels, y downwards


@dataclass(frozen=True)
class Frame:
    """A panel's data ranges and pixel height, as the label placer sees them. ``y_range`` is (bottom,
    top) as plotly's axis range: a loss axis drawn downwards has bottom > top."""

    x_range: tuple[float, float]
    y_range: tuple[float, float]
    height_px: float

    def pixel(self, x: float, y: float, width_px: float) -> tuple[float, float]:
        (x0, x1), (bottom, top) = self.x_range, self.y_range
        return (x - x0) / (x1 - x0) * width_px, (top - y) / (top - bottom) * self.height_px


def _label_box(cx: float, cy: float, text: str) -> Box:
    half = (len(text) * _CHAR_PX + 6) / 2
    return cx - half, cy - _LINE_PX / 2, cx + half, cy + _LINE_PX / 2


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _candidates() -> list[tuple[float, float]]:
    return [
        (round(r * math.cos(math.radians(a)), 1), round(-r * math.sin(math.radians(a)), 1))
        for r in _RADII_PX
        for a in _ANGLES_DEG
    ]


def place_labels(
    labels: Sequence[tuple[float, float, str]],
    frame: Frame,
    others: Sequence[tuple[float, float]] = (),
    fixed: Callable[[float], Sequence[Box]] | None = None,
) -> list[tuple[float, float]]:
    """Pixel offsets (ax, ay) from each labelled point (x, y, text) to its label's centre, as plotly's
    annotation arrows take them, such that at every width of ``LABEL_WIDTHS_PX`` no two labels overlap,
    no label covers a labelled point, and each stays inside the panel where it can. Greedy, in the
    given order; among the offsets that break none of that, the nearest in the preferred direction that
    covers the fewest ``others`` (the unlabelled points, in data units). ``fixed(width)`` gives boxes
    already taken at that plot width (notes at the edge), in pixels from the panel's top left."""
    widths = LABEL_WIDTHS_PX
    marks = {w: [frame.pixel(x, y, w) for x, y, _ in labels] for w in widths}
    crowd = {w: [frame.pixel(x, y, w) for x, y in others] for w in widths}
    taken: dict[float, list[Box]] = {
        w: [(px - _MARKER_PX, py - _MARKER_PX, px + _MARKER_PX, py + _MARKER_PX) for px, py in marks[w]]
        + list(fixed(w) if fixed else ())
        for w in widths
    }
    offsets, candidates = [], _candidates()
    for i, (_, _, text) in enumerate(labels):
        anchor = {w: marks[w][i] for w in widths}
        costs = [
            _placement_cost(anchor, text, offset, rank, taken, crowd, frame.height_px)
            for rank, offset in enumerate(candidates)
        ]
        best = candidates[costs.index(min(costs))]
        offsets.append(best)
        for w in widths:
            taken[w].append(_label_box(anchor[w][0] + best[0], anchor[w][1] + best[1], text))
    return offsets


def _placement_cost(
    anchor: dict[float, tuple[float, float]],
    text: str,
    offset: tuple[float, float],
    rank: int,
    taken: dict[float, list[Box]],
    crowd: dict[float, list[tuple[float, float]]],
    height_px: float,
) -> float:
    """How bad a label at ``offset`` from its point (``anchor``, pixels at each width) is: 100 for each
    box it overlaps or for leaving the panel, at each width; 1 for each unlabelled point it covers; and a
    hundredth for each candidate ranked before it (the preferred direction and the nearest win ties)."""
    penalty = rank * 0.01
    for w, (px, py) in anchor.items():
        box = _label_box(px + offset[0], py + offset[1], text)
        penalty += 100.0 * sum(_overlap(box, t) for t in taken[w])
        penalty += 100.0 * (box[0] < 0 or box[1] < 0 or box[2] > w or box[3] > height_px)
        penalty += sum(box[0] <= cx <= box[2] and box[1] <= cy <= box[3] for cx, cy in crowd[w])
    return penalty


def _right_notes(frame: Frame, notes: Sequence[tuple[float, str]]) -> Callable[[float], list[Box]]:
    """The boxes of one-line notes (y, text) right-aligned at the panel's right edge, at a given width."""
    return lambda w: [
        (w - len(text) * _CHAR_PX - 6, py - _LINE_PX / 2, w, py + _LINE_PX / 2)
        for y, text in notes
        for py in (frame.pixel(0.0, y, w)[1],)
    ]


def _label_annotations(
    rows: Sequence[TrialRecord],
    xs: Sequence[float],
    ys: Sequence[float],
    frame: Frame,
    others: Sequence[tuple[float, float]] = (),
    fixed: Callable[[float], Sequence[Box]] | None = None,
    row: int = 1,
) -> list[dict]:
    """Name labels for ``rows`` (trial name, or baseline name) with short leader lines, placed by
    ``place_labels`` in subplot ``row``; hovering a label gives the record."""
    names = [_name(r) for r in rows]
    offsets = place_labels(list(zip(xs, ys, names)), frame, others, fixed)
    axes = {"xref": "x", "yref": "y"} if row == 1 else {"xref": f"x{row}", "yref": f"y{row}"}
    style = {
        "showarrow": True,
        "arrowhead": 0,
        "arrowwidth": 1,
        "arrowcolor": _COLORS["link"],
        "standoff": 5,
        "font": {"size": 11, "color": _COLORS["label"]},
        "bgcolor": "rgba(255,255,255,0.75)",
        "borderpad": 1,
    }
    return [
        {"x": x, "y": y, "text": html.escape(name), "ax": ax, "ay": ay, "hovertext": _hover(r), **style, **axes}
        for r, x, y, name, (ax, ay) in zip(rows, xs, ys, names, offsets)
    ]


# --- figures -----------------------------------------------------------------------------------------

_X_TITLES = {"params": "parameters", "latency_ms": "latency (ms, izer's estimate)"}
_HEIGHT_PX = 780  # the score figures
_MARGIN = {"l": 70, "r": 30, "t": 80, "b": 50}
# Below the plot: the legend spans the width there and wraps as the window narrows, pushing the margin;
# above it, a wrapped legend ran into the title at 800 px.
_LEGEND = {"orientation": "h", "x": 0, "xanchor": "left", "y": -0.1, "yanchor": "top"}
_PLOT_PX = _HEIGHT_PX - _MARGIN["t"] - _MARGIN["b"] - 110  # the plot height the labels assume (legend 2-5 lines)
_ROW_PX, _NOTE_LINE_PX = 30.0, 15.0  # the strip: one row of networks; one line of the off-axis note
_X_PAD, _X_NEAR = 1.1, 1.25  # x axis: the fitted points' span x 1.1; points within 1.25 x are shown, not clipped
_NOTE_CHARS = 72  # the off-axis note wraps here (it must fit an 800-px window's plot)


def _xval(r: TrialRecord, x: str) -> float:
    return float(r.params) if x == "params" else r.latency_ms


def _x_amount(value: float, x: str) -> str:
    return f"{value:,.0f} parameters" if x == "params" else f"{value:.1f} ms"


def x_range(fitted: Sequence[float], everything: Sequence[float]) -> tuple[float, float]:
    """The x axis of a score figure: from 0 to the largest ``fitted`` value (the front and the scored
    search trials) with a margin, widened to any other point just beyond (rather than clip it), never to
    a far-off one (a big baseline would squeeze the front into a corner)."""
    top = max(fitted or everything or [1.0])
    top = max([v for v in everything if v <= _X_NEAR * top] + [top])
    return 0.0, _X_PAD * top


def _y_frame(scores: Sequence[float], objective: str) -> tuple[tuple[float, float], str]:
    """(plotly range (bottom, top), title) of a score axis. AP from 0 up; a loss drawn downwards, so that
    better is still up. Headroom on top for the front's labels."""
    if objective == "ap":
        return (0.0, 1.18 * max(list(scores) + [1e-3])), "AP (QAT, validation)"
    low, high = min(scores, default=0.0), max(scores, default=1.0)
    pad = max(high - low, 1e-3 * abs(high), 1e-9)
    return (high + 0.06 * pad, low - 0.18 * pad), f"{QUALITY_NAMES[objective]} (lower is better)"


def _score_title(y_title: str, scorers: set[str]) -> str:
    """The y title, saying whose score it is when every point has the same scorer."""
    if scorers == {"supernet"}:
        return f"{y_title}, supernet's estimate"
    return f"{y_title}, trained stand-alone" if scorers == {"train"} else y_title


@dataclass(frozen=True)
class _Strip:
    """The strip below a score figure's axes: its rows (top first), the note on what lies beyond the x
    axis (lines), and its plot height in pixels, which grows with both."""

    rows: tuple[str, ...]
    note: tuple[str, ...]

    @property
    def height_px(self) -> float:
        return _ROW_PX * len(self.rows) + _NOTE_LINE_PX * len(self.note) + 12

    @property
    def y_range(self) -> tuple[float, float]:
        """Category units: the rows at 0..n-1, and a band above them as tall as the note."""
        n = len(self.rows)
        return -0.6, n - 0.4 + (_NOTE_LINE_PX * len(self.note) + 6) / _ROW_PX

    def index(self, category: str) -> int:
        return len(self.rows) - 1 - self.rows.index(category)


def ap_figure(records: Sequence[TrialRecord], x: str, title: str, objective: str = "ap") -> go.Figure:
    """The study's score (AP, or with ``objective`` "loss"/"fg_loss" that loss, drawn downwards so better
    is up) against ``x`` ("params" or "latency_ms").

    Top panel: the scored trials, one trace per scorer (``scored_name``: a supernet's estimates vs
    networks trained stand-alone), the 2-D front (score up, x down) joined by a step line, baselines as
    stars, reused trials faint; the front and the baselines are named. Bottom strip (when there are
    any): the networks without a score, "rejected by the budget" (hover: the violations) and those not
    scored (failed, pruned, running). The x axis fits the front and the scored search trials
    (``x_range``); networks beyond it are named at its right edge. Records whose ``x`` is not finite, and
    scored records without this score (no AP in a loss-ranked study), are not drawn."""
    if x not in _X_TITLES:
        raise ValueError(f"x must be 'params' or 'latency_ms', not {x!r}")
    shown = [r for r in records if math.isfinite(_xval(r, x))]
    scored = [r for r in shown if r.trained and math.isfinite(quality_value(r, objective))]
    front = pareto_front(shown, objective=objective) if x == "params" else latency_front(shown, objective)
    unscored = [r for r in shown if not r.trained]
    fitted = [_xval(r, x) for r in front] + [_xval(r, x) for r in scored if r.baseline is None]
    xr = x_range(fitted, [_xval(r, x) for r in scored + unscored])
    y_range, y_title = _y_frame([quality_value(r, objective) for r in scored], objective)

    rows = tuple(
        name
        for name, present in (
            (REJECTED, any(not r.feasible for r in unscored)),
            (NOT_SCORED, any(r.feasible for r in unscored)),
        )
        if present
    )
    strip = _Strip(rows, tuple(_wrap(_off_axis_note(unscored, x, xr[1]), _NOTE_CHARS))) if rows else None
    if strip:
        share = strip.height_px / _PLOT_PX
        figure = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.02, row_heights=[1 - share, share])
        main_px = _PLOT_PX * (1 - share - 0.02)
    else:
        figure, main_px = go.Figure(), float(_PLOT_PX)
    main = {"row": 1, "col": 1} if strip else {}
    _add_score_traces(figure, main, scored, front, x, objective)
    annotations = _score_annotations(scored, front, x, objective, Frame(xr, y_range, main_px))
    if strip:
        annotations += _add_strip(figure, strip, unscored, x, xr)

    what = QUALITY_NAMES[objective]
    reused = sum(r.reused_from is not None for r in scored)
    rejected = sum(not r.feasible for r in unscored)
    missing = sum(r.trained and not math.isfinite(quality_value(r, objective)) for r in shown)
    which = "" if x == "params" else f" (the {what}-vs-latency front, not the 3-D one)"
    note = f", {missing} scored without an {what} not drawn" if missing else ""
    figure.update_layout(
        title={
            "text": f"{html.escape(title)}: {what} vs {_X_TITLES[x]}<br><sup>{len(scored) - reused} scored "
            f"({reused} more reused), {rejected} {REJECTED}, {len(front)} on the front{which}{note}</sup>",
            "x": 0.01,
            "xanchor": "left",
        },
        template="plotly_white",
        hovermode="closest",
        autosize=True,
        height=_HEIGHT_PX,
        margin=_MARGIN,
        legend=_LEGEND,
        annotations=annotations,
    )
    figure.update_xaxes(range=list(xr))
    figure.update_xaxes(title_text=_X_TITLES[x], **({"row": 2, "col": 1} if strip else {}))
    figure.update_yaxes(
        range=list(y_range),
        zeroline=objective == "ap",
        title_text=_score_title(y_title, {r.scorer for r in scored}),
        **main,
    )
    return figure


def _add_score_traces(
    figure: go.Figure, where: dict, scored: Sequence[TrialRecord], front: Sequence[TrialRecord], x: str, objective: str
) -> None:
    """The top panel's points: baselines first (so the front is drawn over their stars), then the scored
    trials by scorer, the reused ones, and the front."""
    on_front = {r.number for r in front}

    def add(name: str, rows: Sequence[TrialRecord], **style) -> None:
        if rows:
            figure.add_trace(
                _scatter(name, rows, [_xval(r, x) for r in rows], [quality_value(r, objective) for r in rows], **style),
                **where,
            )

    add(
        "baselines",
        [r for r in scored if r.baseline is not None],
        mode="markers",
        marker={
            "color": _COLORS["baseline"],
            "symbol": "star",
            "size": 18,
            "opacity": 0.7,
            "line": {"color": "black", "width": 1},
        },
    )
    plain = [r for r in scored if r.reused_from is None and r.number not in on_front and r.baseline is None]
    for scorer in sorted({r.scorer for r in plain}, key=lambda s: s != "supernet"):
        add(
            scored_name(scorer, objective),
            [r for r in plain if r.scorer == scorer],
            mode="markers",
            marker={"color": _COLORS.get(scorer, _COLORS["train"]), "size": 8},
        )
    add(
        REUSED,
        [r for r in scored if r.reused_from is not None],
        mode="markers",
        marker={"color": _COLORS["reused"], "size": 7},
        opacity=0.4,
    )
    # The names ride along as text (the visible labels are annotations, placed to keep clear of each other).
    add(
        "Pareto front" if x == "params" else f"front ({QUALITY_NAMES[objective]} vs latency)",
        front,
        mode="lines+markers",
        text=[_name(r) for r in front],
        line={"color": _COLORS["front"], "shape": "hv", "width": 2},
        marker={"color": _COLORS["front"], "size": 11},
    )


def _score_annotations(
    scored: Sequence[TrialRecord], front: Sequence[TrialRecord], x: str, objective: str, frame: Frame
) -> list[dict]:
    """The top panel's notes: the scored networks beyond the x axis (big baselines), named at its right
    edge at their score, then the names of the front and the baselines on the axis, placed around those
    notes."""
    top = frame.x_range[1]
    beyond = [
        (quality_value(r, objective), f"{_name(r)}: {_x_amount(_xval(r, x), x)}, off the axis →", r)
        for r in scored
        if _xval(r, x) > top
    ]
    notes = [
        {
            "x": 1,
            "xref": "x domain",
            "y": y,
            "yref": "y",
            "xanchor": "right",
            "showarrow": False,
            "text": html.escape(text),
            "hovertext": _hover(r),
            "font": {"size": 11, "color": _COLORS["label"]},
            "bgcolor": "rgba(255,255,255,0.6)",
        }
        for y, text, r in beyond
    ]
    named = list(front) + [r for r in scored if r.baseline is not None and r not in front and _xval(r, x) <= top]
    others = [(_xval(r, x), quality_value(r, objective)) for r in scored if r not in named]
    labels = _label_annotations(
        named,
        [_xval(r, x) for r in named],
        [quality_value(r, objective) for r in named],
        frame,
        others,
        _right_notes(frame, [(y, text) for y, text, _ in beyond]),
    )
    return notes + labels


def _add_strip(
    figure: go.Figure, strip: _Strip, unscored: Sequence[TrialRecord], x: str, xr: tuple[float, float]
) -> list[dict]:
    """Draw the networks without a score on the strip (row 2): a category row per kind, never a value on
    the score axis. Returns the strip's notes: what lies beyond the x axis (at the top right, above the
    rows) and the names of its baselines."""
    for name, group, marker in (
        (
            REJECTED,
            [r for r in unscored if not r.feasible],
            {"color": _COLORS["rejected"], "symbol": "x", "size": 8, "opacity": 0.75},
        ),
        (
            NOT_SCORED,
            [r for r in unscored if r.feasible],
            {"color": _COLORS["untrained"], "symbol": "circle-open", "size": 9},
        ),
    ):
        if group:
            figure.add_trace(
                _scatter(name, group, [_xval(r, x) for r in group], [name] * len(group), mode="markers", marker=marker),
                row=2,
                col=1,
            )
    # Short tick labels: long ones push the left margin and take width from the plot (the legend says more).
    figure.update_yaxes(
        type="category",
        categoryorder="array",
        categoryarray=list(strip.rows[::-1]),
        tickvals=list(strip.rows),
        ticktext=[_STRIP_TICKS[row] for row in strip.rows],
        range=list(strip.y_range),
        showgrid=False,
        tickfont={"size": 11},
        row=2,
        col=1,
    )
    frame = Frame(xr, strip.y_range, strip.height_px)
    note_y = len(strip.rows) - 0.4 + (_NOTE_LINE_PX * len(strip.note) / 2 + 3) / _ROW_PX
    notes = (
        [
            {
                "x": 1,
                "xref": "x2 domain",
                "y": note_y,
                "yref": "y2",
                "xanchor": "right",
                "yanchor": "middle",
                "showarrow": False,
                "align": "right",
                "text": "<br>".join(html.escape(line) for line in strip.note),
                "font": {"size": 11, "color": _COLORS["label"]},
            }
        ]
        if strip.note
        else []
    )
    named = [r for r in unscored if r.baseline is not None and _xval(r, x) <= xr[1]]
    ys = [strip.index(REJECTED if not r.feasible else NOT_SCORED) for r in named]
    others = [
        (_xval(r, x), strip.index(REJECTED if not r.feasible else NOT_SCORED)) for r in unscored if r not in named
    ]
    taken = _right_notes(
        frame,
        [
            (note_y + (len(strip.note) - 1 - 2 * i) * _NOTE_LINE_PX / 2 / _ROW_PX, line)
            for i, line in enumerate(strip.note)
        ],
    )
    return notes + _label_annotations(named, [_xval(r, x) for r in named], ys, frame, others, taken, row=2)


_STRIP_TICKS = {REJECTED: "rejected by<br>the budget", NOT_SCORED: "not scored"}


def _off_axis_note(unscored: Sequence[TrialRecord], x: str, top: float) -> str:
    """What the strip holds beyond the x axis, in one sentence: the baselines by name (those of one size
    together), the rest counted; '' when nothing."""
    beyond = sorted((r for r in unscored if _xval(r, x) > top), key=lambda r: _xval(r, x))
    if not beyond:
        return ""
    sizes: dict[str, list[str]] = {}
    for r in beyond:
        if r.baseline:
            sizes.setdefault(_x_amount(_xval(r, x), x), []).append(r.baseline)
    parts = [f"{', '.join(names)}: {amount}" for amount, names in sizes.items()]
    rest = [r for r in beyond if not r.baseline]
    if rest:
        parts.append(
            f"{len(rest)} more up to {_x_amount(_xval(rest[-1], x), x)}"
            if len(rest) > 1
            else f"1 more: {_x_amount(_xval(rest[0], x), x)}"
        )
    return "; ".join(parts) + ", off the axis →"


def _wrap(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width`` characters, broken after '; ' (so one network stays on one
    line), each broken line ending in an arrow as the last does; [] for ''."""
    lines: list[str] = []
    for part in (p for p in text.split("; ") if p):
        if lines and len(lines[-1]) + 2 + len(part) <= width:
            lines[-1] += "; " + part
        else:
            lines.append(part)
    return [line if line.endswith("→") else f"{line} →" for line in lines]


def standalone_figure(records: Sequence[TrialRecord], title: str, objective: str = "ap") -> go.Figure:
    """AP after stand-alone training against latency, for the networks the search trained stand-alone
    (search trials as circles, baselines as stars, all named), each with the supernet's AP estimate for
    it (hollow, joined by a dotted line) where the study's scorer estimated one, to show how far the
    estimate was off."""
    rows = [r for r in records if math.isfinite(r.standalone_ap) and math.isfinite(r.latency_ms)]
    estimated = [r for r in rows if objective == "ap" and r.scorer == "supernet" and math.isfinite(r.ap)]
    figure = go.Figure()
    if estimated:
        link_x = [v for r in estimated for v in (r.latency_ms, r.latency_ms, None)]
        link_y = [v for r in estimated for v in (r.ap, r.standalone_ap, None)]
        figure.add_trace(
            go.Scatter(
                x=link_x,
                y=link_y,
                mode="lines",
                hoverinfo="skip",
                showlegend=False,
                line={"color": _COLORS["link"], "dash": "dot", "width": 1},
            )
        )
        hollow = {"color": _COLORS["supernet"], "symbol": "circle-open", "size": 10}
        figure.add_trace(
            _scatter(
                scored_name("supernet"),
                estimated,
                [r.latency_ms for r in estimated],
                [r.ap for r in estimated],
                mode="markers",
                marker=hollow,
            )
        )
    for name, group, marker in (
        (
            "trained stand-alone (search trials)",
            [r for r in rows if r.baseline is None],
            {"color": _COLORS["train"], "size": 11},
        ),
        (
            "baselines trained stand-alone",
            [r for r in rows if r.baseline is not None],
            {"color": _COLORS["baseline"], "symbol": "star", "size": 18, "line": {"color": "black", "width": 1}},
        ),
    ):
        if group:
            figure.add_trace(
                _scatter(
                    name,
                    group,
                    [r.latency_ms for r in group],
                    [r.standalone_ap for r in group],
                    mode="markers",
                    text=[_name(r) for r in group],
                    marker=marker,
                )
            )
    top = max([r.standalone_ap for r in rows] + [r.ap for r in estimated] + [1e-3])
    height = 540
    frame = Frame(
        (0.0, 1.12 * max([r.latency_ms for r in rows] + [1.0])),
        (0.0, 1.25 * top),
        height - _MARGIN["t"] - _MARGIN["b"] - 90,
    )
    others = [(r.latency_ms, r.ap) for r in estimated]
    labels = _label_annotations(rows, [r.latency_ms for r in rows], [r.standalone_ap for r in rows], frame, others)
    figure.update_layout(
        title={
            "text": f"{html.escape(title)}: AP trained stand-alone vs latency<br><sup>{len(rows)} networks "
            f"trained stand-alone ({sum(r.baseline is not None for r in rows)} baselines)"
            f"{'; hollow: the supernet estimate for the same network' if estimated else ''}</sup>",
            "x": 0.01,
            "xanchor": "left",
        },
        xaxis={"title": _X_TITLES["latency_ms"], "range": list(frame.x_range)},
        yaxis={"title": "AP trained stand-alone (QAT, validation)", "range": list(frame.y_range)},
        template="plotly_white",
        hovermode="closest",
        autosize=True,
        height=height,
        margin=_MARGIN,
        legend=_LEGEND | {"y": -0.16},
        annotations=labels,
    )
    return figure


def hypervolume_figure(records: Sequence[TrialRecord], title: str) -> go.Figure:
    """Hypervolume (``hypervolume_2d``) of the (AP, parameters) front of all trials so far, against trial
    number, as a step line; the trials that raised it are marked."""
    reference = reference_params(records)
    curve = hypervolume_curve(records, reference)
    by_number = {r.number: r for r in records}
    figure = go.Figure(
        go.Scatter(
            x=[n for n, _ in curve],
            y=[v for _, v in curve],
            mode="lines",
            name="hypervolume",
            line={"color": _COLORS["hypervolume"], "shape": "hv", "width": 2},
            hoverinfo="x+y",
        )
    )
    raised = [(n, v) for i, (n, v) in enumerate(curve) if v > (curve[i - 1][1] if i else 0.0)]
    figure.add_trace(
        go.Scatter(
            x=[n for n, _ in raised],
            y=[v for _, v in raised],
            mode="markers",
            name="raised by this trial",
            marker={"color": _COLORS["front"], "size": 9},
            customdata=[n for n, _ in raised],
            hoverinfo="text",
            hovertext=[f"{_hover(by_number[n])}<br>hypervolume {v:.4f}" for n, v in raised],
        )
    )
    estimates = " of the supernet's AP estimates" if any(r.trained and r.scorer == "supernet" for r in records) else ""
    note = (
        f"reference: AP 0, {reference:,.0f} parameters (1.1 x the largest trained); area / reference, in AP"
        if reference > 0
        else "no trained feasible trial yet"
    )
    figure.update_layout(
        title={
            "text": f"{html.escape(title)}: hypervolume of the AP-vs-parameters front{estimates}<br><sup>{note}</sup>",
            "x": 0.01,
            "xanchor": "left",
        },
        xaxis_title="trial number",
        yaxis_title="hypervolume (mean best AP over parameter budgets)",
        template="plotly_white",
        yaxis={"rangemode": "tozero"},
        autosize=True,
        height=480,
        margin=_MARGIN,
        legend=_LEGEND | {"y": -0.16},
        # whole trial numbers only (plotly would put ticks at 0.5 with a few trials)
        xaxis={"tickmode": "linear", "dtick": max(1, math.ceil(len(curve) / 12)), "tickformat": "d"},
    )
    return figure


def _scatter(name: str, rows: Sequence[TrialRecord], xs: Sequence[float], ys: Sequence, **style) -> go.Scatter:
    """A trace of records: hover gives each record, customdata its trial number."""
    return go.Scatter(
        x=list(xs),
        y=list(ys),
        name=name,
        hovertext=[_hover(r) for r in rows],
        hoverinfo="text",
        customdata=[r.number for r in rows],
        **style,
    )


def _name(r: TrialRecord) -> str:
    """What a network is called on a figure: its baseline's name, else its trial's (e.g. "trial37")."""
    return r.baseline or r.name


def _hover(r: TrialRecord) -> str:
    lines = [f"trial {r.number}: {r.name}"]
    if r.baseline is not None:
        lines.append(f"baseline {r.baseline}")
    if r.ap == r.ap:
        lines.append(f"AP {r.ap:.3f} ({'supernet estimate' if r.scorer == 'supernet' else 'trained stand-alone'})")
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
        lines += [f"{REJECTED}:"] + [f"  {v}" for v in shown]
    elif not r.trained:
        lines.append(f"not scored (state {r.state})")
    if r.reused_from is not None:
        lines.append(f"same architecture as trial {r.reused_from}")
    return "<br>".join(html.escape(line) for line in lines)


def _number(value: float) -> str:
    """A score for a table cell: 5 significant digits, '-' where there is none."""
    return "-" if math.isnan(value) else f"{value:.5g}"
