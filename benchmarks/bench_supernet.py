"""Scoring subnets of a trained supernet: how many per CPU-hour, and how noisy one score is.

    python benchmarks/bench_supernet.py --supernet DIR --data ROOT [--subnets 24] [--val-images 200]
        [--calibration 256] [--seeds 2] [--small-calibration 64] [--out results.json]

``ROOT`` needs at least ``--val-images`` validation images (make one with ``posenas data synth --val N``;
the synthetic generator renders image i of a split from (seed, split, i), so a root with the supernet's
seed and more validation images has the same training images and the first validation images in common).

Measured, for ``--subnets`` random networks of the supernet's space that fit its budget (tiny-hw and
student-hw's mixed-precision twin where the space holds them):

* rate: the wall-clock and the CPU seconds (process time, all threads) per score (extract, recalibrate,
  fold, validation forward, decode, COCOeval), so subnets per hour and per CPU-hour, with the load average
  beside them (on a shared machine the CPU time is the number that does not depend on the neighbours);
* noise over calibration: the same subnets scored with ``--seeds`` calibration draws; the mean standard
  deviation of one subnet's AP, and Kendall tau between the rankings of two draws (and of a draw of only
  ``--small-calibration`` images);
* noise over validation images: the first draw's predictions evaluated on two disjoint halves of the
  validation images; Kendall tau between the halves' rankings (split-half reliability), mean |AP_a - AP_b|;
* the spread the scores have to resolve: the standard deviation of AP across subnets;
* the cheaper signal: Kendall tau and Spearman rho between the validation loss (lower is better) and AP;
* the same noise measures for the foreground loss (``foreground_loss``).

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
from posenas.budgets.feasible import feasible_random_arch
from posenas.posenet.nets.layers import QuantMode
from posenas.posenet.nets.supernet_score import SubnetScorer
from posenas.posenet.nets.supernet_train import load_supernet
from posenas.posenet.nets.train import foreground_loss, pose_loss
from posenas.posenet.pose.evaluate import evaluate_results
from posenas.space.baselines import get_arch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--supernet", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--subnets", type=int, default=24)
    parser.add_argument("--val-images", type=int, default=200)
    parser.add_argument("--calibration", type=int, default=256)
    parser.add_argument("--seeds", type=int, default=2, help="calibration draws (>= 2 for the calibration noise)")
    parser.add_argument(
        "--small-calibration",
        type=int,
        default=64,
        help="also score with this many calibration images (0: skip), to see whether fewer do as well",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--mode", choices=("qat", "float"), default="qat", help="float: for a supernet that has not trained in QAT yet"
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    mode = QuantMode(args.mode)
    net, info = load_supernet(args.supernet)
    net.eval()
    space = net.space
    budget = load_budget(info["budget"])
    rng = np.random.default_rng(args.seed)
    specs = [get_arch("tiny-hw")] if _holds(net, get_arch("tiny-hw")) else []
    specs += [feasible_random_arch(space, budget, rng, name=f"random{i}") for i in range(args.subnets - len(specs))]

    scorers = {
        f"calib{s}": SubnetScorer(
            net, args.data, calibration_images=args.calibration, val_images=args.val_images, seed=s, mode=mode
        )
        for s in range(args.seeds)
    }
    if args.small_calibration:
        scorers["small_calib"] = SubnetScorer(
            net, args.data, calibration_images=args.small_calibration, val_images=args.val_images, seed=0, mode=mode
        )
    reference = scorers["calib0"]
    ids = reference.val.image_ids
    halves = {"half_a": ids[: len(ids) // 2], "half_b": ids[len(ids) // 2 :]}
    load_before = os.getloadavg()[0]
    rows: list[dict] = []
    for spec in specs:
        row: dict = {"name": spec.name}
        for name, scorer in scorers.items():
            began, began_cpu = time.perf_counter(), time.process_time()
            heatmaps, pafs, loss = scorer.maps(spec)
            loss_seconds, loss_cpu = time.perf_counter() - began, time.process_time() - began_cpu
            results = scorer.results(heatmaps, pafs)
            row[name] = evaluate_results(scorer.val.coco, results, scorer.val.image_ids).ap
            row[f"{name}_loss"] = loss
            row[f"{name}_fg_loss"] = float(foreground_loss(heatmaps, pafs, scorer.val_targets))
            if name == "calib0":  # the split halves from the same predictions: no extra forward pass
                for (half, half_ids), rows_of_half in zip(
                    halves.items(), (slice(0, len(ids) // 2), slice(len(ids) // 2, None))
                ):
                    chosen = set(half_ids)
                    row[half] = evaluate_results(
                        scorer.val.coco, [r for r in results if r["image_id"] in chosen], half_ids
                    ).ap
                    row[f"{half}_loss"], row[f"{half}_fg_loss"] = _losses(scorer, heatmaps, pafs, rows_of_half)
                row["seconds"] = time.perf_counter() - began
                row["cpu_seconds"] = time.process_time() - began_cpu  # all threads: load-independent, unlike wall time
                row["loss_seconds"], row["loss_cpu_seconds"] = loss_seconds, loss_cpu
        rows.append(row)
        print(f"{spec.name}: " + "  ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "name"), flush=True)
    load_after = os.getloadavg()[0]

    ap = {name: [row[name] for row in rows] for name in [*scorers, *halves]}
    seconds = statistics.mean(row["seconds"] for row in rows)
    loss_seconds = statistics.mean(row["loss_seconds"] for row in rows)
    calib = [f"calib{s}" for s in range(args.seeds)]
    per_subnet_std = [statistics.pstdev(values) for values in zip(*(ap[name] for name in calib))]
    losses = [row["calib0_loss"] for row in rows]
    result = {
        "supernet": str(args.supernet),
        "data": str(args.data),
        "subnets": len(specs),
        "val_images": len(ids),
        "mode": args.mode,
        "calibration_images": args.calibration,
        "seconds_per_score": seconds,
        "scores_per_hour": 3600 / seconds,
        "seconds_per_loss_score": loss_seconds,
        "loss_scores_per_hour": 3600 / loss_seconds,
        "cpu_seconds_per_score": statistics.mean(row["cpu_seconds"] for row in rows),
        "scores_per_cpu_hour": 3600 / statistics.mean(row["cpu_seconds"] for row in rows),
        "loss_scores_per_cpu_hour": 3600 / statistics.mean(row["loss_cpu_seconds"] for row in rows),
        "load_average": [load_before, load_after],
        "cpus": os.cpu_count(),
        "ap_spread_std": statistics.pstdev(ap["calib0"]),
        "ap_mean": statistics.mean(ap["calib0"]),
        "ap_max": max(ap["calib0"]),
        "calibration_noise_std": statistics.mean(per_subnet_std),
        "calibration_tau": _tau(ap["calib0"], ap["calib1"]) if args.seeds > 1 else None,
        "calibration_loss_tau": _tau(losses, [row["calib1_loss"] for row in rows]) if args.seeds > 1 else None,
        "small_calibration_tau": _tau(ap["calib0"], ap["small_calib"]) if args.small_calibration else None,
        "split_half_tau": _tau(ap["half_a"], ap["half_b"]),
        "split_half_mean_abs_diff": statistics.mean(abs(a - b) for a, b in zip(ap["half_a"], ap["half_b"])),
        "loss_spread_std": statistics.pstdev(losses),
        "loss_mean": statistics.mean(losses),
        "calibration_loss_noise_std": statistics.mean(
            statistics.pstdev(values) for values in zip(*([row[f"{name}_loss"] for row in rows] for name in calib))
        ),
        "split_half_loss_tau": _tau([row["half_a_loss"] for row in rows], [row["half_b_loss"] for row in rows]),
        "small_calibration_loss_tau": _tau(losses, [row["small_calib_loss"] for row in rows])
        if args.small_calibration
        else None,
        "fg_loss_spread_std": statistics.pstdev(row["calib0_fg_loss"] for row in rows),
        "calibration_fg_loss_noise_std": statistics.mean(
            statistics.pstdev(values) for values in zip(*([row[f"{name}_fg_loss"] for row in rows] for name in calib))
        ),
        "calibration_fg_loss_tau": _tau(
            [row["calib0_fg_loss"] for row in rows], [row["calib1_fg_loss"] for row in rows]
        )
        if args.seeds > 1
        else None,
        "split_half_fg_loss_tau": _tau(
            [row["half_a_fg_loss"] for row in rows], [row["half_b_fg_loss"] for row in rows]
        ),
        "small_calibration_fg_loss_tau": _tau(
            [row["calib0_fg_loss"] for row in rows], [row["small_calib_fg_loss"] for row in rows]
        )
        if args.small_calibration
        else None,
        "loss_vs_ap_tau": _tau([-v for v in losses], ap["calib0"]),
        "loss_vs_ap_rho": _finite(spearmanr([-v for v in losses], ap["calib0"]).statistic),
        "specs": [spec.to_dict() for spec in specs],
        "rows": rows,
    }
    summary = {k: v for k, v in result.items() if k not in ("specs", "rows")}
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


def _losses(scorer: SubnetScorer, heatmaps, pafs, rows: slice) -> tuple[float, float]:
    """The masked L2 validation loss and the foreground loss over a subset of the validation images."""
    targets = {k: v[rows] for k, v in scorer.val_targets.items()}
    return (
        float(pose_loss(heatmaps[rows], pafs[rows], targets, None, 1.0)[0]),
        float(foreground_loss(heatmaps[rows], pafs[rows], targets)),
    )


def _finite(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def _tau(a: list[float], b: list[float]) -> float | None:
    return _finite(kendalltau(a, b).statistic)


def _holds(net, spec) -> bool:
    try:
        net.check(spec)
        return True
    except Exception:
        return False


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"{time.perf_counter() - started:.0f} s")
