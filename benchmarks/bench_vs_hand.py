"""The search against the hand designs: the front's picks and the baselines, each trained at several seeds.

    python benchmarks/bench_vs_hand.py --study-db posenas-runs/max78000/study.db \
        --data posenas-runs/max78000/data/synth-seed0-2000-100 --out vs_hand [--seeds 0 1 2] [--teacher T]
        [--arch NAME_OR_SPEC ...] [--only NAME ...]

The networks: from the study's Pareto front (fixed in ``OUT/picks.json`` by the first run given
``--study-db``; without it only the baselines train, so they can start before the search has run) (its
quality against parameters, or latency when the study has a
latency objective), ``fast``, the best network whose latency is at most tiny-hw's, and ``best``, the best
network of any latency that fits the budget ("best" by the stand-alone AP of the search's last stage where it
trained one, else by the study's quality); beside them tiny-hw, student-hw (8-bit, which does not fit the
MAX78000) and student-hw-mixed (2-bit weights where needed, which fits); ``--arch`` adds more. Each is trained
from scratch with the full default schedule (``TrainConfig()``: 20 epochs, the last 4 QAT) at every seed of
``--seeds``, and scored by its best QAT AP, as every stand-alone number of posenas.

CPU-hours: every run lives in ``OUT/NAME/seedK``, resumes from its ``last.pt``, and finished numbers are
kept in ``OUT/results.json``; rerun the same command (or pass ``--only``) to go on in pieces. The summary
gives mean, min and max AP per network and the two goals of issue 14 item 7:
``fast``'s mean >= 1.3 x tiny-hw's mean with every seed above tiny-hw's best seed, and ``best``'s mean >=
student-hw's.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import optuna

from posenas.budgets.checker import check
from posenas.budgets.device import load_budget
from posenas.files import atomic_write_text
from posenas.posenet.nets.checkpoint import load_checkpoint
from posenas.posenet.nets.config import TrainConfig
from posenas.posenet.nets.train import Trainer, best_aps
from posenas.search.records import ATTR_STANDALONE, TrialRecord, pareto_front, quality, records_of
from posenas.search.settings import load_settings
from posenas.search.storage import open_storage
from posenas.space.baselines import get_arch
from posenas.space.spec import ArchSpec

BASELINES = ("tiny-hw", "student-hw", "student-hw-mixed")


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study-db", help="the search's storage: a SQLite file or a storage URL")
    parser.add_argument("--study", default="max78000")
    parser.add_argument("--data", required=True)
    parser.add_argument("--teacher", help="a prepared teacher folder (posenas teacher) for every run")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arch", nargs="*", default=[], help="more networks: baseline names or spec files")
    parser.add_argument("--only", nargs="*", help="train only these networks (by name) this time")
    args = parser.parse_args()

    from posenas.posenet.nets.distill import load_prepared_teacher

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
    teacher = load_prepared_teacher(args.teacher) if args.teacher else None
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    for spec in networks:
        if args.only and spec.name not in args.only:
            continue
        for seed in args.seeds:
            key = f"{spec.name}/seed{seed}"
            if key in results:
                continue
            began = time.perf_counter()
            out = args.out / spec.name / f"seed{seed}"
            cache = teacher.cache if teacher is not None else None
            Trainer(spec, args.data, out, TrainConfig(seed=seed), teacher_cache=cache).run()
            ap, float_ap = best_aps(load_checkpoint(out / "last.pt").history)
            # Re-read before writing: runs with different --only may share one OUT side by side.
            results = json.loads(results_path.read_text()) if results_path.is_file() else {}
            # seconds: this process's wall time, less than the run's when it resumed (the summary's training
            # seconds come from the checkpoint and are whole)
            results[key] = {"ap": ap, "float_ap": float_ap, "seconds": time.perf_counter() - began}
            atomic_write_text(results_path, json.dumps(results, indent=2) + "\n")
            print(f"{key}: QAT AP {ap:.4f} (float {float_ap:.4f}) in {results[key]['seconds']:.0f} s", flush=True)
    print(summary(networks, picks, results, args.seeds, budget, args.out))


def summary(
    networks: list[ArchSpec], picks: dict[str, ArchSpec], results: dict, seeds: list[int], budget, out: Path
) -> str:
    """A table of mean, min and max AP per network over the seeds done, the training seconds per seed (the
    epochs' own seconds from each run's checkpoint, whole across resumes), and the goals where they can be
    judged."""
    width = max(24, *(len(spec.name) for spec in networks))
    lines = [
        f"{'network':{width}s} {'params':>9s} {'latency ms':>10s} {'fits':>5s} {'seeds':>5s} "
        f"{'mean AP':>8s} {'min':>7s} {'max':>7s} {'train s per seed':>17s}"
    ]
    aps: dict[str, list[float]] = {}
    for spec in networks:
        report = check(spec, budget)
        aps[spec.name] = values = [
            results[f"{spec.name}/seed{s}"]["ap"] for s in seeds if f"{spec.name}/seed{s}" in results
        ]
        stats = (
            f"{np.mean(values):8.4f} {min(values):7.4f} {max(values):7.4f}"
            if values
            else f"{'-':>8s} {'-':>7s} {'-':>7s}"
        )
        spent = [
            sum(e["seconds"] for e in load_checkpoint(out / spec.name / f"seed{s}" / "last.pt").history)
            for s in seeds
            if f"{spec.name}/seed{s}" in results
        ]
        stats += f" {f'{min(spent):.0f}-{max(spent):.0f}' if spent else '-':>17s}"
        lines.append(
            f"{spec.name:{width}s} {report.params:9,d} {report.latency_ms or float('nan'):10.2f} "
            f"{'yes' if report.fits else 'no':>5s} {len(values):5d} {stats}"
        )
    complete = {name: v for name, v in aps.items() if len(v) == len(seeds)}
    if "fast" in picks and {picks["fast"].name, "tiny-hw"} <= complete.keys():
        fast, tiny = complete[picks["fast"].name], complete["tiny-hw"]
        lines.append(
            f"goal 1, {picks['fast'].name}: mean {np.mean(fast):.4f} vs 1.3 x tiny-hw {1.3 * np.mean(tiny):.4f}; "
            f"worst seed {min(fast):.4f} vs tiny-hw's best {max(tiny):.4f}: "
            f"{'met' if np.mean(fast) >= 1.3 * np.mean(tiny) and min(fast) > max(tiny) else 'missed'}"
        )
    if "best" in picks and {picks["best"].name, "student-hw"} <= complete.keys():
        best, student = complete[picks["best"].name], complete["student-hw"]
        lines.append(
            f"goal 2, {picks['best'].name}: mean {np.mean(best):.4f} vs student-hw (8-bit) {np.mean(student):.4f}: "
            f"{'met' if np.mean(best) >= np.mean(student) else 'missed'}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
