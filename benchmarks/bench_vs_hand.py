"""The search against the hand designs: the front's picks and the baselines, each trained at several seeds.

    python benchmarks/bench_vs_hand.py --study-db posenas-runs/max78000/study.db \
        (--data ROOT | --schedule {1x,3x,10x} --data-dir DIR) --out vs_hand [--seeds 0 1 2]
        [--arch NAME_OR_SPEC ...] [--only NAME ...] [--reuse benchmarks/results/schedule.json]
        [--results benchmarks/results/vs_hand.json]

The networks: from the study's Pareto front (fixed in ``OUT/picks.json`` by the first run given
``--study-db``; without it only the baselines train, so they can start before the search has run) (its
quality against parameters, or latency when the study has a latency objective), ``fast``, the best network
whose latency is at most tiny-hw's, and ``best``, the best network of any latency that fits the budget
("best" by the stand-alone AP of the search's last stage where it trained one, else by the study's quality);
beside them tiny-hw, student-hw (8-bit, which does not fit the MAX78000) and student-hw-mixed (2-bit weights
where needed, which fits); ``--arch`` adds more.

The schedule: without ``--schedule``, the item-7 schedule (``TrainConfig()``: 20 epochs, the last 4 QAT) on
the synthetic root ``--data``; with it, one of ``schedules.py`` (1x, 3x, 10x: 20/30/50 epochs on 2,000/4,000/
8,000 images, a fifth QAT) on its synthetic root under ``--data-dir``, as ``bench_schedule.py`` makes it.
Every run trains from scratch with the default low-bit recipe, through ``bench_lowbit.py``'s layout under
``OUT/<schedule>/`` (``OUT/item7/`` without one), and is scored by its best QAT AP, as every stand-alone
number of posenas. ``bench_schedule.py`` trains the baselines the same way (same schedule, synthetic root,
recipe and seeds): ``--reuse ROWS.json`` (its ``--results`` file) takes its rows of the same network, schedule
and seed instead of training them again (the row records ``"reused"``).

CPU-hours: every run resumes from its ``last.pt``, and finished numbers are kept in ``OUT/results.json``;
rerun the same command (or pass ``--only``) to go on in pieces. The summary gives mean, min and max AP per
network and the two goals: ``fast``'s mean >= 1.3 x tiny-hw's mean with every seed above tiny-hw's best
seed, and ``best``'s mean >= the 8-bit student-hw's. ``--results`` writes the finished rows as a JSON list
``[{"net", "seed", "qat_ap", "params", "latency_ms", "fits", ...}]``.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import optuna

from posenas.budgets.checker import check
from posenas.budgets.device import Budget, load_budget
from posenas.files import atomic_write_text
from posenas.posenet.nets.config import TrainConfig
from posenas.search.records import ATTR_STANDALONE, TrialRecord, pareto_front, quality, records_of
from posenas.search.settings import load_settings
from posenas.search.storage import open_storage
from posenas.space.baselines import get_arch
from posenas.space.spec import ArchSpec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_lowbit import DEFAULT_VARIANT, train
from schedules import SCHEDULES, data_root

BASELINES = ("tiny-hw", "student-hw", "student-hw-mixed")
MACHINE = f"{platform.node()}: {os.cpu_count()} cores, {platform.processor() or platform.machine()}"
ITEM7 = "item7"  # the folder and row label of the schedule without --schedule: TrainConfig()


def front_picks(study_db: str, study: str) -> dict[str, ArchSpec]:
    """``fast`` and ``best`` from the study's front (see the module docstring), renamed after their trial."""
    settings = load_settings(study)
    storage = open_storage(study_db if "://" in study_db else f"sqlite:///{Path(study_db).resolve()}")
    loaded = optuna.load_study(study_name=settings.name, storage=storage)
    records = records_of(loaded.trials, loaded.user_attrs.get(ATTR_STANDALONE))
    front = [
        r
        for r in pareto_front(records, latency="latency" in settings.objectives, objective=settings.quality)
        if r.baseline is None
    ]
    tiny = next((r for r in records if r.baseline == "tiny-hw"), None)
    if not front or tiny is None:
        raise SystemExit(f"{study_db}: no searched network on the front, or no tiny-hw trial to compare with")

    def rank(r: TrialRecord) -> tuple[float, float, int]:
        standalone = r.standalone_ap if np.isfinite(r.standalone_ap) else -np.inf
        return (-standalone, -quality(r, settings.quality), r.number)

    specs = {r.number: ArchSpec.from_dict(loaded.trials[r.number].user_attrs["spec"]) for r in front}
    fast = sorted((r for r in front if r.latency_ms <= tiny.latency_ms), key=rank)
    best = sorted(front, key=rank)
    chosen = {"best": best[0]} | ({"fast": fast[0]} if fast else {})
    # one network may be both: it is trained once, under a name that says so
    names = {
        role: f"{'fast-best' if fast and fast[0] is best[0] else role}-trial{r.number}" for role, r in chosen.items()
    }
    return {role: specs[r.number].renamed(names[role]) for role, r in chosen.items()}


def goals(rows: list[dict], picks: dict[str, str], seeds: list[int]) -> list[str]:
    """The two goals, as lines, where every seed of the networks they compare has a row. ``picks`` maps a role
    (``fast``, ``best``) to its network's name."""
    aps: dict[str, list[float]] = {}
    for row in rows:
        if row["seed"] in seeds:
            aps.setdefault(row["net"], []).append(row["qat_ap"])
    complete = {name: values for name, values in aps.items() if len(values) == len(seeds)}
    lines = []
    fast, best = picks.get("fast"), picks.get("best")
    if fast in complete and "tiny-hw" in complete:
        mine, tiny = complete[fast], complete["tiny-hw"]
        met = np.mean(mine) >= 1.3 * np.mean(tiny) and min(mine) > max(tiny)
        lines.append(
            f"goal 1, {fast}: mean {np.mean(mine):.4f} vs 1.3 x tiny-hw {1.3 * np.mean(tiny):.4f}; "
            f"worst seed {min(mine):.4f} vs tiny-hw's best {max(tiny):.4f}: {'met' if met else 'missed'}"
        )
    fitting = {row["net"] for row in rows if row["fits"]} & complete.keys()
    if "student-hw" in complete and fitting:
        student = np.mean(complete["student-hw"])
        # the goal 2 is the best network that fits, searched or not; the search's own pick beside it
        leader = max(sorted(fitting), key=lambda name: np.mean(complete[name]))
        for role, name in (("the best that fits", leader), ("the search's best", best)):
            if name in complete and (role == "the best that fits" or name != leader):
                mine = np.mean(complete[name])
                lines.append(
                    f"goal 2, {role}, {name}: mean {mine:.4f} vs student-hw (8-bit) {student:.4f} "
                    f"({mine / student:.2f} x): {'met' if mine >= student else 'missed'}"
                )
    return lines


def summary(networks: list[ArchSpec], rows: list[dict], seeds: list[int], budget: Budget) -> list[str]:
    """A table of mean, min and max AP per network over the seeds done and the training seconds per seed (the
    epochs' own seconds, from each run's checkpoint, whole across resumes)."""
    width = max(24, *(len(spec.name) for spec in networks))
    lines = [
        f"{'network':{width}s} {'params':>9s} {'latency ms':>10s} {'fits':>5s} {'seeds':>5s} "
        f"{'mean AP':>8s} {'min':>7s} {'max':>7s} {'train s per seed':>17s}"
    ]
    for spec in networks:
        mine = [r for r in rows if r["net"] == spec.name and r["seed"] in seeds]
        values, spent = [r["qat_ap"] for r in mine], [r["train_s"] for r in mine]
        stats = (
            f"{np.mean(values):8.4f} {min(values):7.4f} {max(values):7.4f} {f'{min(spent):.0f}-{max(spent):.0f}':>17s}"
            if mine
            else f"{'-':>8s} {'-':>7s} {'-':>7s} {'-':>17s}"
        )
        first = mine[0] if mine else row_facts(spec, budget)
        lines.append(
            f"{spec.name:{width}s} {first['params']:9,d} {first['latency_ms'] or float('nan'):10.2f} "
            f"{'yes' if first['fits'] else 'no':>5s} {len(values):5d} {stats}"
        )
    return lines


def row_facts(spec: ArchSpec, budget: Budget) -> dict:
    """What the budget says of a network: the fields every row carries beside its AP."""
    report = check(spec, budget)
    return {"params": report.params, "latency_ms": report.latency_ms, "fits": report.fits}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study-db", help="the search's storage: a SQLite file or a storage URL")
    parser.add_argument("--study", default="max78000")
    parser.add_argument("--data", help="the synthetic root of the item-7 schedule (without --schedule)")
    parser.add_argument("--schedule", choices=list(SCHEDULES), help="train at this schedule of schedules.py")
    parser.add_argument("--data-dir", type=Path, help="with --schedule: where its synthetic root lives")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arch", nargs="*", default=[], help="more networks: baseline names or spec files")
    parser.add_argument("--only", nargs="*", help="train only these networks (by name) this time; NONE: report")
    parser.add_argument("--results", type=Path, help="write the finished rows here (a JSON list)")
    parser.add_argument("--reuse", type=Path, help="bench_schedule.py's results: take its rows of the same runs")
    args = parser.parse_args()
    if (args.schedule is None) == (args.data is None) or (args.schedule is not None) != (args.data_dir is not None):
        parser.error("give either --data, or --schedule with --data-dir")

    args.out.mkdir(parents=True, exist_ok=True)
    picks_path = args.out / "picks.json"
    if (
        picks_path.is_file()
    ):  # the picks are fixed by the first run that named a study: a resumed one must not move them
        picks = {role: ArchSpec.from_dict(spec) for role, spec in json.loads(picks_path.read_text()).items()}
    elif args.study_db:
        picks = front_picks(args.study_db, args.study)
        atomic_write_text(picks_path, json.dumps({r: s.to_dict() for r, s in picks.items()}, indent=2) + "\n")
    else:  # the baselines alone (they can start before the search has run)
        picks = {}
    networks = list(
        {spec.name: spec for spec in (*picks.values(), *(get_arch(n) for n in (*BASELINES, *args.arch)))}.values()
    )
    budget = load_budget(load_settings(args.study).budget)
    label = args.schedule or ITEM7
    if args.schedule:
        schedule = SCHEDULES[args.schedule]
        config, data = schedule.config(), None  # the root is made only when a run needs it
    else:
        config, data = TrainConfig(), args.data
    roles: dict[str, str] = {}
    for role, spec in picks.items():  # one network may be both picks: its role says so
        roles[spec.name] = f"{roles[spec.name]}-{role}" if spec.name in roles else role
    path = args.out / "results.json"
    for spec in networks:
        if args.only and spec.name not in args.only:
            continue
        for seed in args.seeds:
            if any(r["net"] == spec.name and r["seed"] == seed and r["schedule"] == label for r in load_rows(path)):
                continue
            trained = reused(args.reuse, spec.name, label, seed) if args.reuse else None
            if trained is None:
                if data is None:
                    data = str(data_root(args.data_dir, schedule))
                trained = train(spec, seed, config, data, args.out / label, DEFAULT_VARIANT)
                trained |= {"machine": MACHINE, "date": time.strftime("%Y-%m-%d %H:%M")}
            row = {
                "net": spec.name,
                "seed": seed,
                "qat_ap": trained["qat_ap"],
                **row_facts(spec, budget),
                "float_ap": trained["float_ap"],
                "train_s": trained["train_s"],
                "schedule": label,
                "role": roles.get(spec.name, "baseline" if spec.name in BASELINES else "arch"),
                "bits": trained["bits"],
                "machine": trained["machine"],
                "date": trained["date"],
            } | ({"reused": trained["reused"]} if "reused" in trained else {})
            with open(args.out / ".results.lock", "w") as lock:  # parallel --only runs share OUT
                fcntl.flock(lock, fcntl.LOCK_EX)
                rows = [r for r in load_rows(path) if (r["net"], r["seed"], r["schedule"]) != (spec.name, seed, label)]
                atomic_write_text(path, json.dumps([*rows, row], indent=1) + "\n")
            print(
                f"{label} {spec.name}/seed{seed}: QAT AP {row['qat_ap']:.4f} (float {row['float_ap']:.4f}) "
                f"in {row['train_s']:.0f} s",
                flush=True,
            )
    names = {spec.name for spec in networks}
    rows = [r for r in load_rows(path) if r["schedule"] == label and r["net"] in names]
    rows.sort(key=lambda r: ([s.name for s in networks].index(r["net"]), r["seed"]))
    print(f"schedule {label}")
    print("\n".join(summary(networks, rows, args.seeds, budget)))
    for line in goals(rows, {role: spec.name for role, spec in picks.items()}, args.seeds):
        print(line)
    done = {(r["net"], r["seed"]) for r in rows}
    missing = [
        f"{spec.name} {','.join(str(s) for s in todo)}"
        for spec in networks
        if (todo := [s for s in args.seeds if (spec.name, s) not in done])
    ]
    if missing:  # the goals are judged on every seed, so a partial run says what it waits for
        print(f"seeds still to run: {'; '.join(missing)}")
    if args.results:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.results, json.dumps(rows, indent=1) + "\n")


def reused(path: Path, net: str, schedule: str, seed: int) -> dict | None:
    """``bench_schedule.py``'s row of this run, with its file's machine and date, or None."""
    found = json.loads(path.read_text())
    row = next(
        (r for r in found["rows"] if (r["net"], r["schedule"], r["seed"]) == (net, schedule, seed)),
        None,
    )
    return None if row is None else row | {"machine": found["machine"], "date": found["date"], "reused": str(path)}


def load_rows(path: Path) -> list[dict]:
    return json.loads(path.read_text()) if path.is_file() else []


if __name__ == "__main__":
    main()
