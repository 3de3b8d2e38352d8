"""Fidelity of the supernet's ranking: does the supernet score order networks as stand-alone training does?

    python benchmarks/bench_fidelity.py --supernet DIR --data ROOT [--teacher T] --out DIR
        [--networks 16] [--only 0:4] [--epochs 20 --qat-epochs 4 | --schedule 10x --data-dir DIR]
        [--trial-epochs 8 --trial-qat-epochs 2]

CPU-hours: run it in the background, in pieces (``--only 0:4``, then ``4:8``, ...) or whole; every network's
runs live in ``OUT/NN-HASH/{full,trial}`` and resume where they stopped (posenas's trainer resumes from
``last.pt``), and finished numbers are kept in ``OUT/results.json``, so rerunning the same command
continues. The networks: tiny-hw and ``--networks - 1`` random networks that fit the supernet's budget,
spread over the space by parameter count (evenly spaced quantiles of 400 feasible draws), fixed by
``--seed``, each layer's weight bits drawn alone (so most have a 2-bit layer); then ``--floor-networks``
more, spread the same way but drawn as the search draws them (a network's lowest bits first, every layer
at or above them: a third all 8-bit), named ``fidFNN`` and numbered on after the first set. Besides all
networks, the correlations are also given over the networks without a 2-bit layer, the part of the space
where the search's winners lie.

For each network: the supernet score (QAT AP after BN recalibration; and the validation loss), the
score of today's per-trial schedule (``--trial-epochs``), and the stand-alone AP of the full schedule
(``--epochs``; the QAT AP, best epoch); parameters, MACs and latency from the budget checker. The full
schedule's default is the item-7 schedule (1x) on ``--data``; ``--schedule`` trains the stand-alone runs at
one of ``schedules.py`` instead, on its synthetic root under ``--data-dir`` (made there if missing, as
``bench_schedule.py`` does). ``bench_schedule.py`` found that neither 1x nor 3x orders ten networks as 10x
does (Kendall tau +0.60 and +0.69), so ``--schedule 10x`` is the reference that means something, at about
ten times the CPU-hours. An output folder holds one full schedule: a rerun with another is refused. Once every
network has its stand-alone AP, Kendall tau and Spearman rho of each signal against it are printed and
written to ``OUT/fidelity.json`` (parameters, MACs and latency count as "bigger is better"), with a
bootstrap 90 % interval of each tau (networks resampled) because 16 networks leave tau uncertain by about
+-0.2. They are also given against the stand-alone *float* AP (the best float epoch), which separates
"ranks the networks' capacity" from "foresees their collapse in QAT".

``--signal-supernet DIR`` (repeatable) adds candidate signals from other supernets, e.g. a longer-trained one:
for each finished network, the validation loss and the foreground loss (``foreground_loss``) of the subnet in
QAT and in float arithmetic, and in QAT after ``--finetune-steps`` steps of training from the inherited
weights, kept in ``OUT/signals.json`` and correlated beside the others. Scoring takes
seconds per network and no training, so it can be rerun on a finished ``results.json`` at any time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau, spearmanr

from posenas.budgets.checker import check
from posenas.budgets.device import load_budget
from posenas.budgets.feasible import feasible_random_arch
from posenas.errors import SpecOutsideSpace
from posenas.files import atomic_write_text
from posenas.posenet.nets.checkpoint import load_checkpoint
from posenas.posenet.nets.config import TrainConfig
from posenas.posenet.nets.layers import QuantMode
from posenas.posenet.nets.supernet_score import SubnetScorer
from posenas.posenet.nets.supernet_train import load_supernet
from posenas.posenet.nets.train import Trainer, best_aps
from posenas.space.baselines import get_arch
from posenas.space.spec import ArchSpec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from schedules import SCHEDULES, data_root


def spread_networks(net, budget, count: int, seed: int, floor_count: int = 0) -> list[ArchSpec]:
    """tiny-hw, then feasible random networks at evenly spaced parameter-count quantiles; then
    ``floor_count`` more drawn with the search's lowest-bits floor (see the module docstring)."""
    rng = np.random.default_rng(seed)
    # Uniform bits per layer (the floor fixed at the lowest bits): the draw these 16 networks were chosen
    # by before the search drew a network's lowest bits first, so finished results keep their keys.
    lowest = min(net.space.bits)
    first = [get_arch("tiny-hw")] if _in_space(net, get_arch("tiny-hw")) else []
    picks = _quantile_picks(net, budget, rng, max(0, count - len(first)), lowest)
    floor = _quantile_picks(net, budget, np.random.default_rng(seed + 1), floor_count, None)
    return (
        first
        + [spec.renamed(f"fid{i:02d}") for i, spec in enumerate(picks, start=1)]
        + [spec.renamed(f"fidF{i:02d}") for i, spec in enumerate(floor, start=1)]
    )


def _quantile_picks(net, budget, rng: np.random.Generator, count: int, lowest_bits: int | None) -> list[ArchSpec]:
    if count <= 0:
        return []
    pool = [feasible_random_arch(net.space, budget, rng, lowest_bits=lowest_bits, name=f"fid{i}") for i in range(400)]
    pool.sort(key=lambda s: check(s, budget).params)
    return [pool[int(round(q))] for q in np.linspace(0, len(pool) - 1, count)]


def _in_space(net, spec: ArchSpec) -> bool:
    try:
        net.check(spec)
    except SpecOutsideSpace:
        return False
    return True


def stand_alone_ap(spec: ArchSpec, data: str, out: Path, config: TrainConfig, teacher) -> float:
    """The best QAT AP (float if no QAT epochs) of ``spec`` trained from scratch into ``out`` (resumes)."""
    cache = teacher.cache if teacher is not None else None
    Trainer(spec, data, out, config, teacher_cache=cache).run()
    history = load_checkpoint(out / "last.pt").history
    return best_aps(history)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--supernet", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--teacher", help="a prepared teacher folder (posenas teacher) for both schedules")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--networks", type=int, default=16)
    parser.add_argument(
        "--floor-networks", type=int, default=0, help="more networks drawn as the search draws them (lowest bits first)"
    )
    parser.add_argument("--only", default=None, help="a slice of the networks, e.g. 0:4")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--qat-epochs", type=int, default=4)
    parser.add_argument("--trial-epochs", type=int, default=8)
    parser.add_argument("--trial-qat-epochs", type=int, default=2)
    parser.add_argument(
        "--schedule", choices=list(SCHEDULES), help="the stand-alone runs at this schedule of schedules.py"
    )
    parser.add_argument("--data-dir", type=Path, help="with --schedule: where its synthetic root lives")
    parser.add_argument("--val-images", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--finetune-steps",
        type=int,
        nargs="*",
        default=[30],
        help="candidate signals after this many QAT fine-tuning steps from the inherited weights",
    )
    parser.add_argument(
        "--signal-supernet",
        action="append",
        default=[],
        help="another supernet folder whose candidate signals are correlated too (repeatable)",
    )
    args = parser.parse_args()
    if (args.schedule is None) != (args.data_dir is None):
        parser.error("--schedule and --data-dir go together")

    from posenas.posenet.nets.distill import load_prepared_teacher

    teacher = load_prepared_teacher(args.teacher) if args.teacher else None
    net, info = load_supernet(args.supernet)
    net.eval()
    budget = load_budget(info["budget"])
    specs = spread_networks(net, budget, args.networks, args.seed, args.floor_networks)
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    scorer = SubnetScorer(net, args.data, val_images=args.val_images)
    if args.schedule:
        schedule = SCHEDULES[args.schedule]
        epochs, qat_epochs, full_label = schedule.epochs, schedule.qat_epochs, args.schedule
    else:
        epochs, qat_epochs, full_label = args.epochs, args.qat_epochs, f"{args.epochs}e{args.qat_epochs}q"
    full = TrainConfig(
        epochs=epochs,
        qat_start=TrainConfig.qat_start_for(epochs, qat_epochs),
        val_images=args.val_images,
        alpha=0.7,
    )
    held = {r.get("full_schedule", "20e4q") for r in results.values() if "standalone_ap" in r}
    if held - {full_label}:
        parser.error(f"{args.out} holds stand-alone runs of schedule {held.pop()}, not {full_label}: use another --out")
    full_data = str(data_root(args.data_dir, schedule)) if args.schedule else args.data
    trial = TrainConfig(
        epochs=args.trial_epochs,
        val_images=args.val_images,
        alpha=0.7,
        qat_start=TrainConfig.qat_start_for(args.trial_epochs, args.trial_qat_epochs),
    )
    start, stop = (int(x) if x else None for x in (args.only or ":").split(":"))
    for index, spec in list(enumerate(specs))[slice(start, stop)]:
        key = f"{index:02d}-{spec.spec_hash()[:10]}"
        row = results.get(key, {})
        report = check(spec, budget)
        row.update(
            name=spec.name, params=report.params, macs=report.macs, latency_ms=report.latency_ms, spec=spec.to_dict()
        )
        if "supernet_ap" not in row:
            score = scorer.score(spec)
            row.update(supernet_ap=score.ap, supernet_val_loss=score.val_loss, supernet_seconds=score.seconds)
        for field, config, folder, data in (
            ("trial_ap", trial, "trial", args.data),
            ("standalone_ap", full, "full", full_data),
        ):
            if field not in row:
                began = time.perf_counter()
                row[field] = stand_alone_ap(spec, data, args.out / key / folder, config, teacher)
                row[field.replace("_ap", "_seconds")] = time.perf_counter() - began
        row["full_schedule"] = full_label
        # Re-read before writing: two slices (--only) may run side by side on one OUT, each adding its rows.
        results = json.loads(results_path.read_text()) if results_path.is_file() else {}
        results[key] = row
        atomic_write_text(results_path, json.dumps(results, indent=2) + "\n")
        print(
            f"{key} {spec.name}: params {row['params']:,} supernet {row['supernet_ap']:.4f} "
            f"trial {row['trial_ap']:.4f} stand-alone {row['standalone_ap']:.4f}",
            flush=True,
        )
    signals = candidate_signals(args, results)
    done = {key: r for key, r in results.items() if "standalone_ap" in r}
    if len(done) >= 3:
        summary = correlations(done, signals, args.out, len(specs), args.seed)
        no_2bit = {k: r for k, r in done.items() if ArchSpec.from_dict(r["spec"]).lowest_bits > 2}
        if len(no_2bit) >= 4:
            summary["without_2bit_layers"] = correlations(no_2bit, signals, args.out, len(specs), args.seed)
        atomic_write_text(args.out / "fidelity.json", json.dumps(summary, indent=2) + "\n")
        print(json.dumps(summary, indent=2))


def candidate_signals(args: argparse.Namespace, results: dict) -> dict[str, dict[str, dict[str, float]]]:
    """{supernet label: {network key: {signal: value}}} for every ``--signal-supernet``, computed where
    missing (seconds per network; fine-tuned ones tens of seconds) and kept in ``OUT/signals.json``."""
    path = args.out / "signals.json"
    signals = json.loads(path.read_text()) if path.is_file() else {}
    variants = [(QuantMode.QAT, 0), (QuantMode.FLOAT, 0), *((QuantMode.QAT, k) for k in args.finetune_steps if k)]
    for folder in args.signal_supernet:
        label = Path(folder).resolve().as_posix()
        table = signals.setdefault(label, {})
        net = None
        for mode, steps in variants:
            prefix = f"{mode.value}_ft{steps}" if steps else mode.value
            todo = [
                key for key, r in results.items() if "standalone_ap" in r and f"{prefix}_loss" not in table.get(key, {})
            ]
            if not todo:
                continue
            if net is None:
                net, _ = load_supernet(folder)
                net.eval()
            scorer = SubnetScorer(net, args.data, val_images=args.val_images, mode=mode, finetune_steps=steps)
            for key in todo:
                score = scorer.score(ArchSpec.from_dict(results[key]["spec"]), ap=False)
                row = table.setdefault(key, {})
                row[f"{prefix}_loss"], row[f"{prefix}_fg_loss"] = score.val_loss, score.fg_loss
                atomic_write_text(path, json.dumps(signals, indent=2) + "\n")
                print(
                    f"{label} {key} {prefix}: loss {score.val_loss:.5f}, fg loss {score.fg_loss:.4f} "
                    f"({score.seconds:.1f} s)",
                    flush=True,
                )
    return signals


LOWER_IS_BETTER = ("loss",)  # signals whose name ends so are negated before correlating


def correlations(done: dict[str, dict], signals: dict, out: Path, of: int, seed: int) -> dict:
    """Kendall tau (with a bootstrap 90 % interval) and Spearman rho of each signal against the stand-alone
    QAT AP, and tau against the stand-alone float AP."""
    keys = sorted(done)
    truth = np.array([done[k]["standalone_ap"] for k in keys])
    float_truth = np.array([best_aps(load_checkpoint(out / k / "full" / "last.pt").history)[1] for k in keys])
    table = {
        "supernet_ap": [done[k]["supernet_ap"] for k in keys],
        "supernet_val_loss": [done[k]["supernet_val_loss"] for k in keys],
        "trial_ap": [done[k]["trial_ap"] for k in keys],
        "params": [done[k]["params"] for k in keys],
        "macs": [done[k]["macs"] for k in keys],
        "latency_ms": [done[k]["latency_ms"] for k in keys],
    }
    short = _short_labels(list(signals))
    for label, rows in signals.items():
        names = set.intersection(*(set(rows.get(k, {})) for k in keys))  # signals every finished network has
        for name in sorted(names):
            table[f"{short[label]}:{name}"] = [rows[k][name] for k in keys]
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, len(keys), len(keys)) for _ in range(1000)]
    result = {}
    for name, values in table.items():
        x = np.array(values, dtype=float) * (-1 if name.endswith(LOWER_IS_BETTER) else 1)
        boot = [kendalltau(x[d], truth[d]).statistic for d in draws]
        boot = np.array([b for b in boot if np.isfinite(b)])
        result[name] = {
            "kendall_tau": _finite(kendalltau(x, truth).statistic),
            "tau_90": [_finite(np.quantile(boot, 0.05)), _finite(np.quantile(boot, 0.95))] if len(boot) else None,
            "spearman_rho": _finite(spearmanr(x, truth).statistic),
            "kendall_tau_vs_float_ap": _finite(kendalltau(x, float_truth).statistic),
        }
    return {
        "networks": len(keys),
        "of": of,
        "lower_is_better_negated": list(LOWER_IS_BETTER),
        "standalone_ap": dict(zip(keys, truth.tolist())),
        "standalone_float_ap": dict(zip(keys, float_truth.tolist())),
        "correlation_with_standalone_ap": result,
    }


def _short_labels(folders: list[str]) -> dict[str, str]:
    """Each supernet folder's shortest trailing path (at least two parts) that no other folder shares:
    runs of one study all end in ``posenas-runs/<study>/supernet``."""
    short = {}
    for folder in folders:
        parts = Path(folder).parts
        n = 2
        while n < len(parts) and any(other != folder and Path(other).parts[-n:] == parts[-n:] for other in folders):
            n += 1
        short[folder] = "/".join(parts[-n:])
    return short


def _finite(value: float) -> float | None:
    """A correlation, or None where it is undefined (a constant signal): never a silent NaN."""
    value = float(value)
    return value if np.isfinite(value) else None


if __name__ == "__main__":
    main()
