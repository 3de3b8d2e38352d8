"""Schedule fidelity: does today's short CPU schedule rank networks the way ten times the training does?

    python benchmarks/bench_schedule.py --data-dir synth-roots --out schedule [--schedules 1x 3x 10x] \
        [--only NAME ...] [--seeds 0] [--results benchmarks/results/schedule.json] [--plot schedule.html]

Every result of the search rests on the item-7 schedule (``TrainConfig()``: 20 epochs, the last 4 QAT, 2,000
synthetic images) ranking networks as long training would. This trains a fixed set of networks at 1x, 3x
and 10x its samples (images x epochs), with more synthetic images *and* more epochs, the low-bit recipe on
(its defaults, as ``posenas train``), and compares the orders:

=========  ================  ======  ===========  ===========
schedule   training images   epochs  QAT epochs   samples
=========  ================  ======  ===========  ===========
1x         2,000             20      4            40,000
3x         4,000             30      6            120,000
10x        8,000             50      10           400,000
=========  ================  ======  ===========  ===========

The images of each schedule are the built-in synthetic people, seed 0, made under ``--data-dir`` if missing
(``synth-seed0-N-100``); the synthetic generator draws each image from its seed and index alone, so the
2,000 images of 1x are the first 2,000 of 3x and 10x, and all three validate on the same 100 images.

The networks: tiny-hw, the 8-bit student-hw, student-hw-mixed, the default search's pick
(``benchmarks/specs/pick-trial98.yaml``), the two hand-widened networks (``benchmarks/specs/wide-*``) and
four networks of ``bench_fidelity.py`` of different sizes (fid01, fid03, fid05, fid10: 22 K to 206 K
parameters, with 2- and 4-bit layers).

CPU-hours (10x of student-hw alone is about four hours on one core): run it in the background, in
pieces, e.g. two processes of one core each (``OMP_NUM_THREADS=1``) on disjoint ``--only`` lists. Each
schedule's runs use ``bench_lowbit.py``'s layout under ``OUT/<schedule>/`` (a network and its lower-bit
versions share one float phase; every run resumes from its ``last.pt``), so rerunning a command goes on
where it stopped, and ``OUT/<schedule>`` of 1x may be a ``bench_lowbit.py`` output folder, whose finished
runs it then reuses. Finished rows are kept in ``OUT/results.json``.

With ``--results``, the rows ``{"net", "schedule", "seed", "qat_ap", "train_s", ...}`` and the Kendall tau
between the 1x and the 10x order (and 3x against 10x) over the networks that have both, each with a
bootstrap 90 % interval (networks resampled), go to that JSON file, beside the same tau of orders that need
no training (``proxy_taus``: by parameter count, weight memory, MACs and latency, bigger first); ``--plot``
writes AP against samples per network as an HTML page.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from posenas.budgets.checker import BudgetReport, check
from posenas.budgets.device import load_budget
from posenas.files import atomic_write_text
from posenas.posenet.nets.supernet import SuperNet
from posenas.search.settings import load_settings
from posenas.space.baselines import get_arch
from posenas.space.spec import ArchSpec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fidelity import spread_networks
from bench_lowbit import DEFAULT_VARIANT, bits_summary, train
from schedules import REFERENCE, SCHEDULES, data_root

SPECS = Path(__file__).resolve().parent / "specs"


FIDELITY = ("fid01", "fid03", "fid05", "fid10")
HAND = (
    "pick-trial98",  # file stems; the pick's network is named trial98
    "wide-32-48-128-96-c8-cpm3x48-h32-b8",
    "wide-32-48-96-64-c8-cpm2x128-h32-b8",
)


def networks() -> list[ArchSpec]:
    """The benchmark's networks, cheapest first within each group."""
    drawn = {
        s.name: s for s in spread_networks(SuperNet(load_settings("max78000").space), load_budget("max78000"), 16, 0)
    }
    return (
        [get_arch(n) for n in ("tiny-hw", "student-hw", "student-hw-mixed")]
        + [get_arch(SPECS / f"{n}.yaml") for n in HAND]
        + [drawn[n] for n in FIDELITY]
    )


def kendall(x: list[float], y: list[float], draws: int = 1000, seed: int = 0) -> dict:
    """Kendall tau of two orders of the same networks, with a bootstrap 90 % interval (networks resampled)."""
    from scipy.stats import kendalltau

    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    rng = np.random.default_rng(seed)
    boot = [kendalltau(a[d], b[d]).statistic for d in (rng.integers(0, len(a), len(a)) for _ in range(draws))]
    boot = np.array([t for t in boot if np.isfinite(t)])
    tau = kendalltau(a, b).statistic
    return {
        "tau": float(tau) if np.isfinite(tau) else None,
        "networks": len(a),
        "tau_90": [float(np.quantile(boot, 0.05)), float(np.quantile(boot, 0.95))] if len(boot) else None,
    }


def mean_ap(rows: list[dict]) -> dict[tuple[str, str], float]:
    """(net, schedule) -> mean QAT AP over the seeds run."""
    by: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        by.setdefault((r["net"], r["schedule"]), []).append(r["qat_ap"])
    return {k: statistics.fmean(v) for k, v in by.items()}


def taus(rows: list[dict]) -> dict[str, dict]:
    """Each schedule's order against 10x's, over the networks that have both."""
    means, out = mean_ap(rows), {}
    for name in SCHEDULES:
        if name == REFERENCE:
            continue
        nets = sorted({n for n, s in means if s == name} & {n for n, s in means if s == REFERENCE})
        if len(nets) >= 3:
            out[f"{name}_{REFERENCE}"] = kendall(
                [means[n, name] for n in nets], [means[n, REFERENCE] for n in nets]
            ) | {"nets": nets}
    return out


# orders that need no training (row fields; bigger ranks higher)
PROXIES = {
    "params": "parameter count",
    "weight_bytes": "weight memory at each layer's bits",
    "macs": "multiply-accumulates",
    "latency_ms": "latency",
}


def untrained_facts(report: BudgetReport) -> dict:
    """A network's proxies as row fields (``PROXIES``), from its budget report."""
    return {
        "params": report.params,
        "weight_bytes": report.usage_of("weight_bytes_naive").used,
        "macs": report.macs,
        "latency_ms": report.latency_ms,
    }


def proxy_taus(rows: list[dict]) -> dict[str, dict]:
    """Each zero-cost proxy's order (a row field, bigger first) against 10x's, over the networks 10x has."""
    means = mean_ap(rows)
    nets = sorted({n for n, s in means if s == REFERENCE})
    if len(nets) < 3:
        return {}
    field = {r["net"]: r for r in rows}
    return {
        f"{name}_{REFERENCE}": kendall([field[n][name] for n in nets], [means[n, REFERENCE] for n in nets])
        | {"nets": nets}
        for name in PROXIES
    }


def table(rows: list[dict]) -> list[str]:
    means, names = mean_ap(rows), list(SCHEDULES)
    nets = list(dict.fromkeys(r["net"] for r in rows))
    lines = [
        f"{'network':36} {'params':>8} {'bits':>24} "
        + " ".join(f"{n + ' AP':>9}" for n in names)
        + "  rank "
        + " ".join(names)
    ]
    ranks = {}
    for name in names:
        order = sorted((n for n in nets if (n, name) in means), key=lambda n: -means[n, name])
        ranks.update({(n, name): i + 1 for i, n in enumerate(order)})
    for net in nets:
        row = next(r for r in rows if r["net"] == net)
        aps = " ".join(f"{means[net, n]:9.4f}" if (net, n) in means else f"{'-':>9}" for n in names)
        rank = " ".join(str(ranks.get((net, n), "-")) for n in names)
        lines.append(f"{net:36} {row['params']:>8,} {row['bits']:>24} {aps}  {rank}")
    for key, t in (taus(rows) | proxy_taus(rows)).items():
        low, high = t["tau_90"] or (float("nan"), float("nan"))
        lines.append(
            f"Kendall tau {key.rsplit('_', 1)[0]} vs {key.rsplit('_', 1)[1]}: {t['tau']:+.2f} "
            f"(90 % interval {low:+.2f} .. {high:+.2f}, {t['networks']} networks)"
        )
    return lines


def plot(rows: list[dict], path: Path) -> None:
    """AP against training samples, one line per network (log x); the legend lists the networks by their AP at
    the longest schedule each has, best first (names at the line ends overlapped where the APs are close)."""
    import plotly.graph_objects as go

    means = mean_ap(rows)
    figure = go.Figure()
    lines = []
    for net in dict.fromkeys(r["net"] for r in rows):
        names = [n for n in SCHEDULES if (net, n) in means]
        lines.append((-means[net, names[-1]], net, names))
    for _, net, names in sorted(lines):
        last = names[-1]
        figure.add_trace(
            go.Scatter(
                x=[SCHEDULES[n].samples for n in names],
                y=[means[net, n] for n in names],
                mode="lines+markers",
                name=f"{net} ({last} {means[net, last]:.3f})",
            )
        )
    figure.update_layout(
        title="QAT AP against training samples (synthetic people; 100 validation images)",
        xaxis={
            "title": "training samples (images x epochs)",
            "type": "log",
            "tickvals": [s.samples for s in SCHEDULES.values()],
            "ticktext": [f"{s.name}: {s.train_images:,} x {s.epochs}" for s in SCHEDULES.values()],
        },
        yaxis={"title": "QAT AP (best QAT epoch)"},
        template="plotly_white",
        width=1100,
        height=650,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, figure.to_html(include_plotlyjs=True, full_html=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="where each schedule's synthetic root lives")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--schedules", nargs="+", choices=list(SCHEDULES), default=list(SCHEDULES))
    parser.add_argument("--only", nargs="+", help="these networks only (NONE: train nothing, report)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--results", type=Path, help="write the rows and the taus here (benchmarks/results/)")
    parser.add_argument("--plot", type=Path, help="write AP against samples here (HTML)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    path, budget = args.out / "results.json", load_budget("max78000")
    for name in args.schedules:
        schedule = SCHEDULES[name]
        for spec in networks():
            if args.only and spec.name not in args.only:
                continue
            data = data_root(args.data_dir, schedule)
            report = check(spec, budget)
            for seed in args.seeds:
                trained = train(spec, seed, schedule.config(), str(data), args.out / name, DEFAULT_VARIANT)
                row = {
                    "net": spec.name,
                    "schedule": name,
                    "seed": seed,
                    "qat_ap": trained["qat_ap"],
                    "float_ap": trained["float_ap"],
                    "train_s": trained["train_s"],
                    "samples": schedule.samples,
                    "bits": bits_summary(spec),
                    **untrained_facts(report),
                    "fits": report.fits,
                }
                with open(args.out / ".results.lock", "w") as lock:  # parallel --only runs share OUT
                    fcntl.flock(lock, fcntl.LOCK_EX)
                    rows = json.loads(path.read_text()) if path.is_file() else []
                    rows = [r for r in rows if (r["net"], r["schedule"], r["seed"]) != (spec.name, name, seed)]
                    atomic_write_text(path, json.dumps(rows + [row], indent=1) + "\n")
                print(
                    f"{name} {spec.name}/seed{seed}: QAT AP {row['qat_ap']:.4f} (float {row['float_ap']:.4f}) "
                    f"in {row['train_s']:.0f} s",
                    flush=True,
                )
    rows = json.loads(path.read_text()) if path.is_file() else []
    facts = {spec.name: untrained_facts(check(spec, budget)) for spec in networks()}
    rows = [facts.get(r["net"], {}) | r for r in rows]  # rows written before a fact was recorded gain it
    order = {n: i for i, n in enumerate(SCHEDULES)}
    rows.sort(key=lambda r: (r["net"], order[r["schedule"]], r["seed"]))
    print("\n".join(table(rows)))
    if args.plot and rows:
        plot(rows, args.plot)
    if args.results:
        found = taus(rows)
        result = {
            "rows": rows,
            "tau_1x_10x": (found.get("1x_10x") or {}).get("tau"),
            "tau_3x_10x": (found.get("3x_10x") or {}).get("tau"),
            "taus": found,
            "proxy_taus": proxy_taus(rows),  # no training at all: the parameter count and the latency
            "schedules": {n: dataclasses.asdict(s) | {"samples": s.samples} for n, s in SCHEDULES.items()},
            "machine": f"{platform.node()}: {os.cpu_count()} cores, {platform.processor() or platform.machine()}",
            "date": time.strftime("%Y-%m-%d %H:%M"),
        }
        args.results.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.results, json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
