"""Budget checks per second on random specs of the default search space (goal: 5,000/s on one core).

Reference measured in the same run: building the layer graph of each spec (the least work any checker
must do: shapes of every layer). The ratio check/graph says how much the placement plan costs on top,
independently of the machine's speed.

    python benchmarks/bench_budget.py [--specs 2000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import optuna

from posenas.budgets.checker import check
from posenas.budgets.device import load_budget
from posenas.search.settings import load_settings
from posenas.space.graph import layer_graph
from posenas.space.sampling import sample_arch


def random_specs(n: int, seed: int) -> list:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_settings("max78000").space
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    specs = []
    for _ in range(n):
        trial = study.ask()
        specs.append(sample_arch(trial, space))
        study.tell(trial, 0.0)
    return specs


def best_rate(fn, items, repeats: int) -> float:
    """Items per second of the fastest of ``repeats`` passes (the least disturbed by other load)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for item in items:
            fn(item)
        times.append(time.perf_counter() - start)
    return len(items) / min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    budget = load_budget("max78000")
    specs = random_specs(args.specs, args.seed)
    fits = sum(check(s, budget).fits for s in specs)
    checks = best_rate(lambda s: check(s, budget), specs, args.repeats)
    graphs = best_rate(layer_graph, specs, args.repeats)
    print(f"specs: {len(specs)} random (seed {args.seed}), {fits} fit the MAX78000 ({100 * fits / len(specs):.0f} %)")
    print(f"budget checks:  {checks:8,.0f} /s  ({1e6 / checks:6.1f} us each)   goal 5,000 /s")
    print(f"graph only:     {graphs:8,.0f} /s  ({1e6 / graphs:6.1f} us each)   reference")
    print(f"check / graph cost ratio: {graphs / checks:.1f}x")


if __name__ == "__main__":
    main()
