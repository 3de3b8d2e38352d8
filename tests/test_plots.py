"""search.plots: the HTML figures from hand-built records, the 2-D fronts and the hypervolume."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import pytest

from posenas.search import plots
from posenas.search.plots import (
    FIGURES,
    ap_figure,
    front_2d,
    hypervolume_2d,
    hypervolume_curve,
    hypervolume_figure,
    latency_front,
    reference_params,
    write_plots,
)
from posenas.search.records import TrialRecord, pareto_front

NAN = float("nan")


def rec(number: int, ap: float, params: int, latency: float = 5.0, **kw) -> TrialRecord:
    kw.setdefault("state", "COMPLETE")
    kw.setdefault("feasible", True)
    return TrialRecord(
        number=number,
        spec_hash=f"h{number}",
        name=kw.pop("name", f"cand{number}"),
        ap=ap,
        params=params,
        latency_ms=latency,
        **kw,
    )


# Two baselines (one does not fit), a front, a dominated trial, an infeasible one and a reused one.
RECORDS = [
    rec(0, 0.40, 112_257, 10.3, name="tiny-hw", baseline="tiny-hw"),
    rec(
        1,
        NAN,
        659_001,
        40.1,
        name="student-hw",
        baseline="student-hw",
        feasible=False,
        violations=("kernel_memory: conv6: kernel memory exhausted at processor 0",),
    ),
    rec(2, 0.30, 50_000, 4.0),
    rec(3, 0.35, 200_000, 12.0),  # dominated by trial 0 (fewer params, higher AP)
    rec(4, 0.55, 300_000, 8.0),
    rec(5, 0.55, 300_000, 8.0, reused_from=4),
    rec(6, NAN, 80_000, 6.0, feasible=False, violations=("data_memory: conv3 <= 32768 bytes exceeded",)),
    rec(7, NAN, 90_000, 7.0, state="FAIL"),
]


def test_write_plots_writes_one_self_contained_report_page(tmp_path):
    paths = write_plots(RECORDS, tmp_path / "plots", "demo study", png=False)
    assert [p.name for p in paths] == ["report.html"]
    text = paths[0].read_text()
    assert text.lstrip().lower().startswith(("<!doctype html>", "<html")) and "</html>" in text
    assert '<script src="http' not in text and len(text) > 1_000_000  # plotly.js embedded: opens offline
    assert text.count("plotly.js v") <= 2  # embedded once, not once per figure (its banner names the version)
    assert "demo study" in text and "8 trials" in text
    assert text.count("Plotly.newPlot") == len(FIGURES)
    assert "tiny-hw" in text and "student-hw" in text  # baselines labelled, the infeasible one too
    assert "student-hw: 659,001 parameters, off the axis →" in text  # beyond the fitted x axis, named
    assert "kernel memory exhausted at processor 0" in text  # the violations are in the hover text
    assert "same architecture as trial 4" in text  # the reused trial is drawn (faintly)
    for member in pareto_front(RECORDS):
        assert f"trial {member.number}: {member.name}" in text
    assert "reference: AP 0, 330,000 parameters" in text


def test_png_is_optional(tmp_path):
    # Static export needs kaleido and a Chrome; where they are missing, only the HTML comes back.
    paths = write_plots(RECORDS, tmp_path, "demo", png=True)
    assert paths[0].name == "report.html"
    assert all(p.suffix == ".png" and p.stat().st_size > 0 for p in paths[1:])
    assert sorted(p.name for p in tmp_path.glob("*.png")) == sorted(p.name for p in paths[1:])


def _trace(figure, name):
    (trace,) = [t for t in figure.data if t.name == name]
    return trace


def test_ap_vs_params_figure_marks_front_strip_and_baselines():
    figure = ap_figure(RECORDS, "params", "t")
    front = _trace(figure, "Pareto front")
    assert list(front.customdata) == [2, 0, 4] and front.line.shape == "hv"
    assert list(front.x) == [50_000, 112_257, 300_000]
    assert list(_trace(figure, "trained stand-alone (AP)").customdata) == [3]  # scorer "train": its own AP
    assert list(_trace(figure, "reused (same architecture as an earlier trial)").customdata) == [5]
    rejected = _trace(figure, "rejected by the budget")
    assert list(rejected.customdata) == [1, 6] and rejected.marker.symbol == "x"
    assert list(_trace(figure, "not scored (failed, pruned or running)").customdata) == [7]
    baselines = _trace(figure, "baselines")
    assert list(baselines.customdata) == [0] and baselines.marker.symbol == "star"  # the scored one, at its AP
    assert baselines.y[0] == pytest.approx(0.40)
    labels = {a.text for a in figure.layout.annotations if a.showarrow}
    assert labels == {"cand2", "tiny-hw", "cand4"}  # the front, named (the baseline by its baseline name)


def _labels(figure) -> dict[str, tuple[float, float]]:
    return {a.text: (a.x, a.y) for a in figure.layout.annotations if a.showarrow}


def test_front_points_carry_their_names():
    figure = ap_figure(RECORDS, "params", "t")
    assert list(_trace(figure, "Pareto front").text) == ["cand2", "tiny-hw", "cand4"]
    assert _labels(figure) == {"cand2": (50_000, 0.30), "tiny-hw": (112_257, 0.40), "cand4": (300_000, 0.55)}
    latency = ap_figure(RECORDS, "latency_ms", "t")
    # By latency tiny-hw is off the front, but a baseline is named wherever it is on the axes.
    assert _labels(latency) == {"cand2": (4.0, 0.30), "cand4": (8.0, 0.55), "tiny-hw": (10.3, 0.40)}


def test_rejected_networks_are_never_drawn_on_the_score_axis():
    for x in ("params", "latency_ms"):
        for objective, records in (("ap", RECORDS), ("fg_loss", [replace(r, fg_loss=0.7 - r.ap) for r in RECORDS])):
            figure = ap_figure(records, x, "t", objective)
            for trace in figure.data:
                if {1, 6, 7} & set(trace.customdata):  # the rejected trials and the failed one
                    assert trace.yaxis == "y2" and set(trace.y) <= {
                        "rejected by the budget",
                        "not scored (failed, pruned or running)",
                    }
                else:
                    assert trace.yaxis in (None, "y") and all(isinstance(y, float) for y in trace.y)
            assert figure.layout.yaxis2.type == "category"
    rejected = _trace(ap_figure(RECORDS, "params", "t"), "rejected by the budget")
    assert "kernel memory exhausted at processor 0" in rejected.hovertext[0]  # hover: the violations
    assert "conv3 &lt;= 32768 bytes exceeded" in rejected.hovertext[1]


def test_legend_tells_supernet_estimates_stand_alone_training_and_rejection_apart():
    records = [
        rec(0, 0.031, 40_000, 3.0, scorer="supernet"),
        rec(1, 0.052, 90_000, 8.0, scorer="supernet"),
        rec(2, 0.024, 60_000, 5.0, scorer="supernet"),  # dominated
        rec(3, 0.047, 120_000, 9.0),  # dominated, scored by training it stand-alone
        rec(4, NAN, 500_000, 30.0, feasible=False, violations=("latency: 41.0 ms > 30.0 ms",)),
    ]
    figure = ap_figure(records, "params", "t")
    assert {t.name for t in figure.data} == {
        "scored by the supernet (AP estimate)",
        "trained stand-alone (AP)",
        "Pareto front",
        "rejected by the budget",
    }
    assert list(_trace(figure, "scored by the supernet (AP estimate)").customdata) == [2]
    assert list(_trace(figure, "trained stand-alone (AP)").customdata) == [3]
    assert figure.layout.yaxis.title.text == "AP (QAT, validation)"  # two scorers: the legend says whose
    only_supernet = ap_figure(records[:3], "params", "t")
    assert only_supernet.layout.yaxis.title.text == "AP (QAT, validation), supernet's estimate"
    assert "trained" not in {t.name for t in only_supernet.data}
    loss = ap_figure([replace(r, fg_loss=0.7 - r.ap) for r in records], "params", "t", "fg_loss")
    assert "scored by the supernet (foreground loss estimate)" in {t.name for t in loss.data}


def test_x_axis_fits_the_front_and_clips_a_far_off_baseline():
    figure = ap_figure(RECORDS, "params", "t")
    # Fitted to the front and the scored trials (up to 300,000) x 1.1; student-hw (659,001, rejected) is beyond.
    assert list(figure.layout.xaxis2.range) == pytest.approx([0, 330_000])
    notes = [a.text for a in figure.layout.annotations if not a.showarrow]
    assert notes == ["student-hw: 659,001 parameters, off the axis →"]
    # A scored baseline far beyond is named at the right edge at its score.
    big = rec(9, 0.50, 659_001, 23.1, name="student-hw-mixed", baseline="student-hw-mixed")
    figure = ap_figure([*RECORDS, big], "params", "t")
    assert list(figure.layout.xaxis.range) == pytest.approx([0, 330_000])
    (note,) = [a for a in figure.layout.annotations if a.text.startswith("student-hw-mixed")]
    assert note.text == "student-hw-mixed: 659,001 parameters, off the axis →" and note.y == pytest.approx(0.50)
    assert note.xref == "x domain" and note.x == 1
    # A point just beyond the fitted ones widens the axis instead (1.25 x): 360,000 is drawn.
    near = rec(10, NAN, 360_000, 9.0, feasible=False, violations=("layers: 33 > 32",))
    assert list(ap_figure([*RECORDS, near], "params", "t").layout.xaxis2.range) == pytest.approx([0, 396_000])


def test_x_range_rule():
    assert plots.x_range([50_000, 300_000], [80_000, 659_001]) == pytest.approx((0, 330_000))
    assert plots.x_range([50_000, 300_000], [370_000, 659_001]) == pytest.approx((0, 407_000))
    assert plots.x_range([], [4.0, 12.0]) == pytest.approx((0, 13.2))  # nothing scored yet: all that is there


def test_labels_of_a_crowded_front_do_not_overlap():
    # A front crowded next to the y axis (a supernet study's smallest networks), at both report widths.
    points = [
        (20_803, 0.017, "trial45"),
        (21_165, 0.019, "trial109"),
        (22_360, 0.027, "trial115"),
        (31_931, 0.029, "trial70"),
        (35_388, 0.031, "trial104"),
        (38_356, 0.037, "trial80"),
        (52_470, 0.042, "trial33"),
        (73_081, 0.043, "trial86"),
        (82_468, 0.046, "trial51"),
    ]
    frame = plots.Frame((0.0, 350_000.0), (0.0, 0.09), 400.0)
    offsets = plots.place_labels(points, frame)
    for width in plots.LABEL_WIDTHS_PX:
        boxes = []
        for (x, y, text), (ax, ay) in zip(points, offsets):
            px, py = frame.pixel(x, y, width)
            boxes.append(plots._label_box(px + ax, py + ay, text))
        for a, b in itertools.combinations(boxes, 2):
            assert not plots._overlap(a, b)
        for box in boxes:  # no label on a labelled point, none outside the panel
            assert all(
                not plots._overlap(box, (px - 5, py - 5, px + 5, py + 5))
                for px, py in (frame.pixel(x, y, width) for x, y, _ in points)
            )
            assert box[0] >= 0 and box[1] >= 0 and box[2] <= width and box[3] <= 400


def test_standalone_ap_against_latency():
    records = [
        rec(0, 0.053, 112_257, 10.27, name="tiny-hw", baseline="tiny-hw", scorer="supernet", standalone_ap=0.052),
        rec(1, 0.058, 92_529, 9.63, scorer="supernet", standalone_ap=0.049),
        rec(2, 0.080, 316_428, 28.83, scorer="supernet", standalone_ap=0.061),
        rec(3, 0.040, 38_356, 4.52, scorer="supernet"),  # not retrained: not on this panel
    ]
    figures = plots.figures_of(records, "t")
    assert list(figures) == ["ap_vs_params", "ap_vs_latency", plots.STANDALONE_FIGURE, "hypervolume"]
    figure = figures[plots.STANDALONE_FIGURE]
    trials = _trace(figure, "trained stand-alone (search trials)")
    assert list(trials.x) == [9.63, 28.83] and list(trials.y) == [0.049, 0.061]
    baselines = _trace(figure, "baselines trained stand-alone")
    assert list(baselines.x) == [10.27] and list(baselines.y) == [0.052]
    estimates = _trace(figure, "scored by the supernet (AP estimate)")  # the supernet's guess for the same networks
    assert list(estimates.y) == [0.053, 0.058, 0.080]
    assert set(_labels(figure)) == {"tiny-hw", "cand1", "cand2"}
    assert figure.layout.yaxis.title.text == "AP trained stand-alone (QAT, validation)"
    assert plots.STANDALONE_FIGURE not in plots.figures_of(records[3:], "t")


def test_a_loss_ranked_study_shows_ap_where_there_is_one(tmp_path):
    # The supernet does not decode AP in a loss-ranked study; the stand-alone retraining measures it.
    records = [
        rec(
            0,
            NAN,
            112_257,
            10.27,
            name="tiny-hw",
            baseline="tiny-hw",
            scorer="supernet",
            fg_loss=0.6158,
            standalone_ap=0.052,
        ),
        rec(1, NAN, 156_041, 11.71, scorer="supernet", fg_loss=0.6184, standalone_ap=0.047),
        rec(2, NAN, 659_001, 23.11, name="student", baseline="student", feasible=False, violations=("stride 2",)),
    ]
    figures = plots.figures_of(records, "t", "fg_loss")
    assert list(figures) == ["fg_loss_vs_params", "fg_loss_vs_latency", plots.STANDALONE_FIGURE]
    assert figures["fg_loss_vs_params"].layout.yaxis.title.text.startswith("foreground loss (lower is better)")
    text = write_plots(records, tmp_path, "t", png=False, objective="fg_loss")[0].read_text()
    assert "AP trained stand-alone vs latency" in text and text.count("Plotly.newPlot") == 3
    # Where the scorer gave APs too, the AP figures come as well.
    with_ap = [replace(records[0], ap=0.053), *records[1:]]
    assert list(plots.figures_of(with_ap, "t", "fg_loss"))[2:4] == ["ap_vs_params", "ap_vs_latency"]


def test_report_page_uses_the_full_width(tmp_path):
    text = write_plots(RECORDS, tmp_path, "t", png=False)[0].read_text()
    head = text[: text.index("<div")]  # the page's own style (plotly.js, embedded later, has its own)
    assert "max-width" not in head and "width:100%" in head and '"responsive": true' in text
    assert text.count("width:100%") >= len(FIGURES)  # each figure's div follows the page's width
    for figure in plots.figures_of(RECORDS, "t").values():
        assert figure.layout.width is None and figure.layout.autosize


def test_ap_vs_latency_uses_the_2d_latency_front():
    figure = ap_figure(RECORDS, "latency_ms", "t")
    # By latency trial 4 (8 ms, AP 0.55) dominates trial 0 (10.3 ms, AP 0.40); in 3-D trial 0 stays.
    assert list(_trace(figure, "front (AP vs latency)").customdata) == [2, 4]
    assert [r.number for r in latency_front(RECORDS)] == [2, 4]
    assert 0 in {r.number for r in pareto_front(RECORDS, latency=True)}
    with pytest.raises(ValueError):
        ap_figure(RECORDS, "macs", "t")


def test_front_2d_on_params_is_pareto_front():
    extra = RECORDS + [rec(8, 0.30, 50_000), rec(9, 0.31, 50_000), rec(10, 0.2, 10_000, latency=NAN)]
    assert front_2d(extra, lambda r: float(r.params)) == pareto_front(extra)
    assert [r.number for r in latency_front(extra)] == [2, 9, 4]  # 8 loses to 2 (4 ms); 10 (NaN) left out


def test_hypervolume_by_hand():
    a, b = rec(0, 0.5, 100), rec(1, 0.8, 400)
    # Area right of and below each point up to (1000 params, AP 0): 0.5 x 300 + 0.8 x 600 = 630; / 1000.
    assert hypervolume_2d([a, b], 1000) == pytest.approx(0.63)
    assert hypervolume_2d([a], 1000) == pytest.approx(0.45)
    assert hypervolume_2d([b, a, rec(2, 0.6, 500)], 1000) == pytest.approx(0.63)  # dominated: no change
    assert hypervolume_2d([], 1000) == 0.0 and hypervolume_2d([a, b], 0) == 0.0
    assert hypervolume_2d([rec(3, 0.9, 1000)], 1000) == 0.0  # at the reference: nothing
    assert reference_params([a, b, rec(4, NAN, 5000, feasible=False)]) == pytest.approx(440)


def test_hypervolume_ignores_infeasible_untrained_and_reused():
    a, b = rec(0, 0.5, 100), rec(1, 0.8, 400)
    ignored = [
        rec(2, 0.99, 10, feasible=False),  # an AP on an infeasible record is never counted
        rec(3, 0.99, 10, state="FAIL"),
        rec(4, 0.99, 10, state="RUNNING"),
        rec(5, NAN, 10),
        rec(6, 0.99, 10, reused_from=0),
    ]
    assert hypervolume_2d([a, b, *ignored], 1000) == pytest.approx(0.63)


def test_hypervolume_curve_never_decreases():
    curve = hypervolume_curve(RECORDS)
    assert [n for n, _ in curve] == [r.number for r in RECORDS]
    values = [v for _, v in curve]
    assert all(later >= earlier for earlier, later in itertools.pairwise(values))
    assert values[0] > 0 and values[-1] == pytest.approx(hypervolume_2d(RECORDS, reference_params(RECORDS)))
    # Trial 2 (AP 0.30 at 50k) raises it; the dominated trial 3 and the reused trial 5 do not.
    assert values[2] > values[1] and values[3] == values[2] and values[5] == values[4]
    ref = 1.1 * 300_000
    expected = (0.30 * (112_257 - 50_000) + 0.40 * (300_000 - 112_257) + 0.55 * (ref - 300_000)) / ref
    assert values[-1] == pytest.approx(expected)
    shuffled = [replace(r) for r in reversed(RECORDS)]
    assert hypervolume_curve(shuffled) == curve


def test_hypervolume_figure_without_trained_trials():
    figure = hypervolume_figure([RECORDS[1], RECORDS[6]], "t")
    assert list(figure.data[0].y) == [0.0, 0.0] and len(figure.data[1].x) == 0
    assert "no trained feasible trial yet" in figure.layout.title.text
    assert math.isclose(reference_params([RECORDS[1]]), 0.0)
