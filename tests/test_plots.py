"""search.plots: the HTML figures from hand-built records, the 2-D fronts and the hypervolume."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import pytest

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
)  # fmt: skip
from posenas.search.records import TrialRecord, pareto_front

NAN = float("nan")


def rec(number: int, ap: float, params: int, latency: float = 5.0, **kw) -> TrialRecord:
    kw.setdefault("state", "COMPLETE")
    kw.setdefault("feasible", True)
    return TrialRecord(number=number, spec_hash=f"h{number}", name=kw.pop("name", f"cand{number}"), ap=ap,
                       params=params, latency_ms=latency, **kw)  # fmt: skip


# Two baselines (one does not fit), a front, a dominated trial, an infeasible one and a reused one.
RECORDS = [
    rec(0, 0.40, 112_257, 10.3, name="tiny-hw", baseline="tiny-hw"),
    rec(1, NAN, 659_001, 40.1, name="student-hw", baseline="student-hw", feasible=False,
        violations=("kernel_memory: conv6: kernel memory exhausted at processor 0",)),
    rec(2, 0.30, 50_000, 4.0),
    rec(3, 0.35, 200_000, 12.0),  # dominated by trial 0 (fewer params, higher AP)
    rec(4, 0.55, 300_000, 8.0),
    rec(5, 0.55, 300_000, 8.0, reused_from=4),
    rec(6, NAN, 80_000, 6.0, feasible=False, violations=("data_memory: conv3 <= 32768 bytes exceeded",)),
    rec(7, NAN, 90_000, 7.0, state="FAIL"),
]  # fmt: skip


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
    assert list(_trace(figure, "trained").customdata) == [3]
    assert list(_trace(figure, "reused (same architecture as an earlier trial)").customdata) == [5]
    infeasible = _trace(figure, "infeasible (not trained)")
    assert list(infeasible.customdata) == [1, 6] and infeasible.marker.symbol == "x"
    assert all(y < 0 for y in infeasible.y)  # a strip below AP 0
    assert list(_trace(figure, "feasible, not trained (failed, pruned or running)").customdata) == [7]
    baselines = _trace(figure, "baselines")
    assert list(baselines.text) == ["tiny-hw", "student-hw"] and baselines.marker.symbol == "star"
    assert baselines.y[0] == pytest.approx(0.40) and baselines.y[1] < 0


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
    ]  # fmt: skip
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
