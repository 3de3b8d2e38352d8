"""Scoring subnets of a trained supernet: how many per CPU-hour, and how noisy one score is.

    python benchmarks/bench_supernet.py --supernet DIR --data ROOT [--subnets 24] [--val-images 200]
        [--calibration 256] [--seeds 3] [--out results.json]

``ROOT`` needs at least ``--val-images`` validation images (make one with ``posenas data synth --val N``;
the synthetic generator renders image i of a split from (seed, split, i), so a root with the supernet's
seed and more validation images has the same training images and the first validation images in common).

Measured, for ``--subnets`` random networks of the supernet's space that fit its budget (tiny-hw and
student-hw's mixed-precision twin where the space holds them):

* rate: the wall-clock seconds per score (extract, recalibrate, fold, validation forward, decode,
  COCOeval) and so subnets per hour on this machine, with the load average beside it;
* noise over calibration: the same subnets scored with ``--seeds`` calibration draws; the mean standard
  deviation of one subnet's AP, and Kendall tau between the rankings of two draws;
* noise over validation images: the validation set split into two disjoint halves; Kendall tau between
  the two halves' rankings (split-half reliability) and the mean |AP_a - AP_b|;
* the spread the scores have to resolve: the standard deviation of AP across subnets;
* the cheaper signal: Kendall tau and Spearman rho between the validation loss (lower is better) and AP.

Everything is written to ``--out`` as JSON, and printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau, spearmanr

from posenas.budgets.device import load_budget
from posenas.posenet.nets.supernet_score import SubnetScorer
from posenas.posenet.nets.supernet_train import load_supernet
from posenas.space.baselines import get_arch
from posenas.space.subnets import feasible_random_arch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--supernet", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--subnets", type=int, default=24)
    parser.add_argument("--val-images", type=int, default=200)
    parser.add_argument("--calibration", type=int, default=256)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    net, info = load_supernet(args.supernet)
    net.eval()
    space = net.space
    budget = load_budget(info["budget"])
    rng = np.random.default_rng(args.seed)
    specs = [get_arch("tiny-hw")] if _holds(net, get_arch("tiny-hw")) else []
    specs += [feasible_random_arch(space, budget, rng, name=f"random{i}") for i in range(args.subnets - len(specs))]

    half = args.val_images // 2
    scorers = {f"calib{s}": SubnetScorer(net, args.data, calibration_images=args.calibration,
                                         val_images=args.val_images, seed=s) for s in range(args.seeds)}  # fmt: skip
    halves = {name: SubnetScorer(net, args.data, calibration_images=args.calibration, val_images=half,
                                 val_offset=offset, seed=0) for name, offset in (("half_a", 0), ("half_b", half))}  # fmt: skip
    load_before = os.getloadavg()[0]
    scores: dict[str, list[dict]] = {name: [] for name in [*scorers, *halves]}
    for spec in specs:
        for name, scorer in {**scorers, **halves}.items():
            scores[name].append(scorer.score(spec).to_dict())
        print(f"{spec.name}: " + "  ".join(f"{n} {s[-1]['ap']:.4f}" for n, s in scores.items()), flush=True)
    load_after = os.getloadavg()[0]

    ap = {name: [s["ap"] for s in values] for name, values in scores.items()}
    full = scores["calib0"]
    seconds = statistics.mean(s["seconds"] for s in full)
    per_subnet_std = [statistics.pstdev(values) for values in zip(*(ap[f"calib{s}"] for s in range(args.seeds)))]
    result = {
        "supernet": str(args.supernet), "data": str(args.data), "subnets": len(specs), "val_images": args.val_images,
        "calibration_images": args.calibration, "seconds_per_score": seconds, "scores_per_hour": 3600 / seconds,
        "load_average": [load_before, load_after], "cpus": os.cpu_count(),
        "ap_spread_std": statistics.pstdev(ap["calib0"]), "ap_mean": statistics.mean(ap["calib0"]),
        "calibration_noise_std": statistics.mean(per_subnet_std),
        "calibration_tau": _tau(ap["calib0"], ap["calib1"]) if args.seeds > 1 else None,
        "split_half_tau": _tau(ap["half_a"], ap["half_b"]),
        "split_half_mean_abs_diff": statistics.mean(abs(a - b) for a, b in zip(ap["half_a"], ap["half_b"])),
        "loss_vs_ap_tau": _tau([-s["val_loss"] for s in full], ap["calib0"]),
        "loss_vs_ap_rho": float(spearmanr([-s["val_loss"] for s in full], ap["calib0"]).statistic),
        "specs": [spec.to_dict() for spec in specs], "scores": scores,
    }  # fmt: skip
    summary = {k: v for k, v in result.items() if k not in ("specs", "scores")}
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


def _tau(a: list[float], b: list[float]) -> float:
    return float(kendalltau(a, b).statistic)


def _holds(net, spec) -> bool:
    try:
        net.check(spec)
        return True
    except Exception:  # noqa: BLE001 - a spec outside the space is simply not measured
        return False


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"{time.perf_counter() - started:.0f} s")
