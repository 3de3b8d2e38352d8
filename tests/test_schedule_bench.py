"""benchmarks/bench_schedule.py: the orders it compares, trained and untrained."""

from __future__ import annotations

import pytest
from conftest import import_benchmark


@pytest.fixture(scope="module")
def bench():
    yield from import_benchmark("bench_schedule")


def row(net: str, schedule: str, ap: float, params: int, latency: float, seed: int = 0) -> dict:
    facts = {"params": params, "weight_bytes": params // 2, "macs": params * 100, "latency_ms": latency}
    return {"net": net, "schedule": schedule, "seed": seed, "qat_ap": ap} | facts


# four networks: 10x orders them by size; 1x reverses the two largest; latency orders d first
ROWS = [
    row("a", "1x", 0.01, 10_000, 3.0),
    row("a", "10x", 0.02, 10_000, 3.0),
    row("b", "1x", 0.03, 50_000, 4.0),
    row("b", "10x", 0.05, 50_000, 4.0),
    row("c", "1x", 0.06, 90_000, 5.0),
    row("c", "10x", 0.08, 90_000, 5.0),
    row("d", "1x", 0.05, 200_000, 9.0),
    row("d", "10x", 0.12, 200_000, 9.0),
    row("e", "1x", 0.04, 5_000, 1.0),  # no 10x run: in no tau
]


def test_trained_orders_against_10x(bench) -> None:
    found = bench.taus(ROWS)
    assert list(found) == ["1x_10x"]
    assert found["1x_10x"]["tau"] == pytest.approx(4 / 6)  # one of six pairs swapped
    assert found["1x_10x"]["nets"] == ["a", "b", "c", "d"]


def test_untrained_orders_against_10x(bench) -> None:
    found = bench.proxy_taus(ROWS)
    assert list(found) == ["params_10x", "weight_bytes_10x", "macs_10x", "latency_ms_10x"]
    assert {key: t["tau"] for key, t in found.items()} == pytest.approx(dict.fromkeys(found, 1.0))
    swapped = [r | {"latency_ms": 0.5} if r["net"] == "d" else r for r in ROWS]  # d is now the fastest
    assert bench.proxy_taus(swapped)["latency_ms_10x"]["tau"] == pytest.approx(0.0)  # 3 of 6 pairs swapped
    assert bench.proxy_taus(ROWS[:4]) == {}  # fewer than three networks at 10x


def test_seeds_are_averaged_before_ranking(bench) -> None:
    more = [*ROWS, row("a", "1x", 0.09, 10_000, 3.0, seed=1)]  # a's 1x mean 0.05: ties with d
    assert bench.mean_ap(more)["a", "1x"] == pytest.approx(0.05)
