"""Do two supernets order a search's finalists alike, and does averaging supernets help? (issue 25, item 2)

    python benchmarks/bench_ensemble.py --data ROOT --out ensemble/ [--supernets 4] [--networks 40] \
        [--finalists 6] [--results benchmarks/results/ensemble.json]

A search's pick among its finalists (the best few networks of its front) is only as good as one supernet's
order of them, and two trainings of the same study's supernet once ordered six finalists with Kendall tau
-0.47 to +0.87 (BENCHMARKS.md, "Search against hand design"). This trains ``--supernets`` supernets of the
default study (its schedule, unpaced, seeds 0, 1, ...; each resumes from its folder under ``--out``),
scores the same ``--networks`` feasible random networks (the search's draw) plus tiny-hw with each (the
study's scorer: BN recalibration, 30 QAT fine-tuning steps, foreground loss), takes the finalists (the
``--finalists`` best by the mean over all supernets, plus tiny-hw), and reports Kendall tau over the
finalists

* between every two single supernets, and
* between the means of two disjoint halves (with 4 supernets: {0,1} against {2,3}, {0,2} against {1,3},
  {0,3} against {1,2}): what a search that averaged two supernets would see.

Goal (issue 25): finalists ordered alike by two scorers, tau >= 0.6. ``ROOT`` is a COCO root with at least
the study's training images (the built-in synthetic people, seed 0: ``posenas data synth``); the study
trains on its first ``train.train_images``. Each supernet takes about 6 minutes of 2 idle cores.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

from posenas.budgets.device import load_budget
from posenas.budgets.feasible import feasible_random_arch
from posenas.files import atomic_write_text
from posenas.posenet.nets.config import SupernetConfig
from posenas.posenet.nets.layers import QuantMode
from posenas.posenet.nets.supernet_score import SubnetScorer
from posenas.posenet.nets.supernet_train import WEIGHTS, SupernetTrainer, load_supernet
from posenas.search.settings import load_settings
from posenas.search.supernet_search import CALIBRATION_IMAGES
from posenas.space.baselines import get_arch


def train(settings, budget, data: str, folder: Path, seed: int) -> Path:
    """The default study's supernet with ``seed``, unpaced (resumes)."""
    config = SupernetConfig(seed=seed, train_images=settings.train.train_images, lowbit=settings.train.lowbit)
    started = time.perf_counter()
    SupernetTrainer(settings.space, budget, data, folder, config, study=settings.name).run()
    print(f"supernet seed {seed} -> {folder} in {time.perf_counter() - started:.0f} s", flush=True)
    return folder


def scores(settings, data: str, folder: Path, specs: list, cache: Path) -> list[float]:
    """Foreground loss of every network under the supernet in ``folder``, as the search scores (cached)."""
    if cache.is_file():
        found = json.loads(cache.read_text())
        if found["networks"] == [s.spec_hash() for s in specs]:
            return found["fg_loss"]
    net, _ = load_supernet(folder, settings.space)
    scorer = SubnetScorer(
        net.eval(),
        data,
        calibration_images=CALIBRATION_IMAGES,
        val_images=settings.train.val_images,
        seed=settings.seed,
        mode=QuantMode(settings.score_arithmetic),
        finetune_steps=settings.finetune_steps,
        finetune_batch=settings.train.batch_size,
        finetune_lr=settings.train.qat_lr,
        recipe=settings.train.lowbit,
    )
    row = [scorer.score(spec, ap=False).fg_loss for spec in specs]
    atomic_write_text(cache, json.dumps({"networks": [s.spec_hash() for s in specs], "fg_loss": row}) + "\n")
    print(f"scored {len(specs)} networks with {folder}", flush=True)
    return row


def tau(a: list[float], b: list[float]) -> float:
    return float(kendalltau(a, b).statistic)


def halves(count: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Every split of ``range(count)`` into two disjoint halves, each once."""
    members = range(count)
    found = []
    for first in itertools.combinations(members, count // 2):
        second = tuple(m for m in members if m not in first)
        if 0 in first and len(second) == len(first):
            found.append((first, second))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--supernets", type=int, default=4)
    parser.add_argument("--networks", type=int, default=40)
    parser.add_argument("--finalists", type=int, default=6)
    parser.add_argument("--results", type=Path)
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        help="train and score only these supernets here (parallel processes); the report waits for all --supernets",
    )
    args = parser.parse_args()
    settings, budget = load_settings("max78000"), load_budget("max78000")
    rng = np.random.default_rng(0)
    specs = [get_arch("tiny-hw")] + [
        feasible_random_arch(settings.space, budget, rng, name=f"net{i:02d}") for i in range(args.networks)
    ]
    for seed in args.seeds if args.seeds is not None else range(args.supernets):
        folder = args.out / f"supernet-seed{seed}"
        info = folder / "supernet.json"
        if not (folder / WEIGHTS).is_file() or json.loads(info.read_text())["epoch"] + 1 < SupernetConfig().epochs:
            train(settings, budget, args.data, folder, seed)
        scores(settings, args.data, folder, specs, args.out / f"scores-seed{seed}.json")
    files = [args.out / f"scores-seed{seed}.json" for seed in range(args.supernets)]
    if not all(f.is_file() for f in files):
        print(f"waiting for {', '.join(f.name for f in files if not f.is_file())}: rerun when they are made")
        return
    rows = [json.loads(f.read_text())["fg_loss"] for f in files]
    mean = [statistics.fmean(r[i] for r in rows) for i in range(len(specs))]
    best = sorted(range(1, len(specs)), key=lambda i: mean[i])[: args.finalists]
    finalists = [0] + best  # tiny-hw and the best by the mean
    pick = lambda row: [row[i] for i in finalists]  # noqa: E731
    singles = {f"{a}~{b}": tau(pick(rows[a]), pick(rows[b])) for a, b in itertools.combinations(range(len(rows)), 2)}
    averaged = {}
    for first, second in halves(len(rows)):
        left = [statistics.fmean(rows[s][i] for s in first) for i in finalists]
        right = [statistics.fmean(rows[s][i] for s in second) for i in finalists]
        averaged["+".join(map(str, first)) + "~" + "+".join(map(str, second))] = tau(left, right)
    everyone = {f"{a}~{b}": tau(rows[a], rows[b]) for a, b in itertools.combinations(range(len(rows)), 2)}
    print(f"finalists: {', '.join(specs[i].name for i in finalists)}")
    print("tau over the finalists, single supernets: " + "; ".join(f"{k} {v:+.2f}" for k, v in singles.items()))
    print("tau over the finalists, means of two halves: " + "; ".join(f"{k} {v:+.2f}" for k, v in averaged.items()))
    print("tau over all networks, single supernets: " + "; ".join(f"{k} {v:+.2f}" for k, v in everyone.items()))
    if args.results:
        result = {
            "networks": [s.name for s in specs],
            "fg_loss": rows,
            "finalists": [specs[i].name for i in finalists],
            "tau_finalists_single": singles,
            "tau_finalists_single_mean": statistics.fmean(singles.values()),
            "tau_finalists_averaged_halves": averaged,
            "tau_finalists_averaged_mean": statistics.fmean(averaged.values()) if averaged else None,
            "tau_all_single": everyone,
            "machine": f"{platform.node()}: {os.cpu_count()} cores, {platform.processor() or platform.machine()}",
            "date": time.strftime("%Y-%m-%d %H:%M"),
        }
        args.results.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.results, json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
