"""benchmarks/bench_vs_hand.py: the goals it judges and the rows it takes from bench_schedule.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BENCHMARKS, import_benchmark


@pytest.fixture(scope="module")
def bench():
    yield from import_benchmark("bench_vs_hand")


def rows(aps: dict[str, list[float]]) -> list[dict]:
    return [
        {"net": net, "seed": seed, "qat_ap": ap, "fits": net != "student-hw"}
        for net, values in aps.items()
        for seed, ap in enumerate(values)
    ]


PICKS = {"fast": "fast-trial1", "best": "best-trial2"}


def test_goal_one_needs_the_mean_and_every_seed(bench) -> None:
    tiny = [0.10, 0.11, 0.12]  # mean 0.11: 1.3 x is 0.143, best seed 0.12
    met = bench.goals(rows({"tiny-hw": tiny, "fast-trial1": [0.14, 0.15, 0.145]}), PICKS, [0, 1, 2])
    assert met == [
        "goal 1, fast-trial1: mean 0.1450 vs 1.3 x tiny-hw 0.1430; worst seed 0.1400 vs tiny-hw's best 0.1200: met"
    ]
    # the mean passes, one seed does not beat tiny-hw's best
    low_seed = bench.goals(rows({"tiny-hw": tiny, "fast-trial1": [0.19, 0.19, 0.115]}), PICKS, [0, 1, 2])
    assert low_seed[0].endswith("missed")
    # every seed passes, the mean is under 1.3 x
    low_mean = bench.goals(rows({"tiny-hw": tiny, "fast-trial1": [0.13, 0.13, 0.13]}), PICKS, [0, 1, 2])
    assert low_mean[0].endswith("missed")


def test_goal_two_against_the_8bit_student(bench) -> None:
    student = [0.16, 0.17, 0.18]
    assert bench.goals(rows({"student-hw": student, "best-trial2": [0.17, 0.17, 0.17]}), PICKS, [0, 1, 2]) == [
        "goal 2, the best that fits, best-trial2: mean 0.1700 vs student-hw (8-bit) 0.1700 (1.00 x): met"
    ]
    assert bench.goals(rows({"student-hw": student, "best-trial2": [0.17, 0.17, 0.1699]}), PICKS, [0, 1, 2])[
        0
    ].endswith("(1.00 x): missed")


def test_goal_two_names_the_best_that_fits_and_the_search_pick_beside_it(bench) -> None:
    aps = {"student-hw": [0.16] * 3, "student-hw-mixed": [0.15] * 3, "best-trial2": [0.09] * 3}
    assert bench.goals(rows(aps), PICKS, [0, 1, 2]) == [
        "goal 2, the best that fits, student-hw-mixed: mean 0.1500 vs student-hw (8-bit) 0.1600 (0.94 x): missed",
        "goal 2, the search's best, best-trial2: mean 0.0900 vs student-hw (8-bit) 0.1600 (0.56 x): missed",
    ]


def test_no_goal_before_every_seed_has_run(bench) -> None:
    partial = rows({"tiny-hw": [0.1, 0.1, 0.1], "fast-trial1": [0.5, 0.5], "student-hw": [0.1], "best-trial2": [0.5]})
    assert bench.goals(partial, PICKS, [0, 1, 2]) == []
    assert len(bench.goals(partial, PICKS, [0])) == 2  # one seed asked for: both can be judged


def test_reuse_takes_only_the_same_network_schedule_and_seed(bench, tmp_path: Path) -> None:
    found = tmp_path / "schedule.json"
    row = {"net": "tiny-hw", "schedule": "10x", "seed": 0, "qat_ap": 0.1184, "float_ap": 0.12, "train_s": 4193.0}
    found.write_text(json.dumps({"rows": [row], "machine": "vm: 2 cores", "date": "2026-12-07 00:28"}))
    assert bench.reused(found, "tiny-hw", "10x", 0) == row | {
        "machine": "vm: 2 cores",
        "date": "2026-12-07 00:28",
        "reused": str(found),
    }
    assert bench.reused(found, "tiny-hw", "10x", 1) is None
    assert bench.reused(found, "tiny-hw", "3x", 0) is None
    assert bench.reused(found, "student-hw", "10x", 0) is None


@pytest.mark.parametrize(
    "args",
    [
        [],  # no data at all
        ["--data", "x", "--schedule", "10x", "--data-dir", "d"],  # both ways at once
        ["--schedule", "10x"],  # a schedule without its data folder
        ["--data", "x", "--data-dir", "d"],  # a data folder without a schedule
    ],
)
def test_data_is_given_one_way(args: list[str], tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_vs_hand.py"), "--out", str(tmp_path / "out"), *args],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "give either --data, or --schedule with --data-dir" in done.stderr
    assert not (tmp_path / "out").exists()
