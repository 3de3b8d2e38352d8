"""The search's own overhead per trial (sampler + storage + budget check) against training time per trial.

    python benchmarks/bench_search.py [--trials 200] [--study-db posenas-runs/max78000/study.db]
    python benchmarks/bench_search.py --scored-study-db posenas-runs/max78000/study.db   # a finished study only

Overhead: an NSGA-II study on a SQLite file (the default storage, with heartbeats) whose objective
samples a spec of the default space and runs the full budget check, then records the user attributes
a real trial records; no training. The reference is the mean training time of the trained trials of a
finished study (``--study-db``, e.g. the default run's), or else one tiny-hw trial with the default study's
per-trial schedule trained here. Goal: the overhead is a negligible fraction of a trial.

``--scored-study-db`` reads a finished study instead and prints what it did: networks scored (by the
supernet or by training), the scorer's mean seconds and scores per CPU-hour on this machine's cores, the
search's own cost inside each trial (its timestamps minus the scorer's seconds) over the first and the last
50 trials, Kendall tau of parameter count against the validation loss over the scored networks, and the
searched networks' losses grouped by their lowest weight bits.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import optuna

from posenas.budgets.checker import check
from posenas.budgets.device import load_budget
from posenas.search.records import records_of
from posenas.search.settings import load_settings
from posenas.search.storage import open_storage
from posenas.search.study import constraint_values, make_sampler
from posenas.space.sampling import sample_arch
from posenas.space.spec import ArchSpec


def overhead_per_trial(trials: int, folder: Path) -> float:
    """Seconds per trial of sampling + storage + budget check (NSGA-II, SQLite, heartbeats)."""
    settings = load_settings("max78000")
    budget = load_budget(settings.budget)
    storage = open_storage(f"sqlite:///{folder / 'bench.db'}")
    study = optuna.create_study(storage=storage, directions=["maximize", "minimize"], sampler=make_sampler(settings))

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        spec = sample_arch(trial, settings.space)
        report = check(spec, budget)
        trial.set_user_attr("spec_hash", spec.spec_hash())
        trial.set_user_attr("spec", spec.to_dict())
        trial.set_user_attr("constraints", constraint_values(report))
        return 0.0, float(report.params)

    started = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    return (time.perf_counter() - started) / trials


def training_per_trial(study_db: Path | None, folder: Path) -> tuple[float, str]:
    if study_db is not None:
        storage = f"sqlite:///{study_db.resolve()}"
        name = optuna.get_all_study_names(storage)[0]
        records = [
            r
            for r in records_of(optuna.load_study(study_name=name, storage=storage).trials)
            if r.trained and r.reused_from is None
        ]
        return sum(r.seconds for r in records) / len(records), f"mean of {len(records)} trained trials of {study_db}"
    from posenas.posenet.nets.train import Trainer
    from posenas.posenet.pose import synth
    from posenas.space.baselines import get_arch

    root = folder / "synth"
    synth.write_coco_root(root, train=2000, val=100, seed=0)
    started = time.perf_counter()
    Trainer(get_arch("tiny-hw"), root, folder / "run", load_settings("max78000").train).run()
    return time.perf_counter() - started, "one tiny-hw trial, default per-trial schedule"


def scored_study_report(study_db: Path, cores: int | None = None) -> list[str]:
    """What a finished study's trials say about scoring speed and the search's own cost (see the docstring)."""
    import os

    from scipy.stats import kendalltau

    storage = f"sqlite:///{study_db.resolve()}"
    name = optuna.get_all_study_names(storage)[0]
    trials = sorted(optuna.load_study(study_name=name, storage=storage).trials, key=lambda t: t.number)
    records = {r.number: r for r in records_of(trials)}
    scored = [
        records[t.number]
        for t in trials
        if t.number in records and records[t.number].trained and records[t.number].reused_from is None
    ]
    cores = cores or os.cpu_count() or 1  # the cores the scoring ran on (OMP_NUM_THREADS=1: 1)
    per_score = sum(r.seconds for r in scored) / max(1, len(scored))
    inside = [
        (t.datetime_complete - t.datetime_start).total_seconds()
        - (records[t.number].seconds if t.number in records and records[t.number].reused_from is None else 0.0)
        for t in trials
        if t.datetime_complete is not None
    ]
    field = "fg_loss" if any(r.fg_loss == r.fg_loss for r in scored) else "val_loss"  # the study's loss
    with_loss = [r for r in scored if getattr(r, field) == getattr(r, field)]
    tau = (
        kendalltau([r.params for r in with_loss], [getattr(r, field) for r in with_loss]).statistic
        if len(with_loss) > 2
        else float("nan")
    )
    return [
        f"{study_db}: {len(trials)} trials, {len(scored)} scored by {scored[0].scorer if scored else '-'}",
        f"scorer: {per_score:.2f} s per score, {3600 / (per_score * cores):,.0f} scores per CPU-hour ({cores} cores)",
        f"search's own cost inside a trial: first 50 {sum(inside[:50]) / max(1, len(inside[:50])):.3f} s, "
        f"last 50 {sum(inside[-50:]) / max(1, len(inside[-50:])):.3f} s",
        f"Kendall tau (parameters, {field}) over {len(with_loss)} scored networks: {tau:+.2f}",
        *_by_lowest_bits(trials, [r for r in with_loss if r.baseline is None], field),
    ]


def _by_lowest_bits(trials: list, records: list, field: str) -> list[str]:
    """One line per lowest weight bits of the searched networks: how many, and their best/median/worst loss."""
    import statistics

    groups: dict[int, list[float]] = {}
    for r in records:
        lowest = ArchSpec.from_dict(trials[r.number].user_attrs["spec"]).lowest_bits
        groups.setdefault(lowest, []).append(getattr(r, field))
    return [
        f"lowest bits {bits}: {len(v)} searched networks, {field} best {min(v):.4f} median "
        f"{statistics.median(v):.4f} worst {max(v):.4f}"
        for bits, v in sorted(groups.items(), reverse=True)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--study-db", type=Path, help="a finished study's SQLite file (training reference)")
    parser.add_argument("--scored-study-db", type=Path, help="only report on this finished study (see the docstring)")
    parser.add_argument("--cores", type=int, help="with --scored-study-db: the cores its scoring ran on (default: all)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.scored_study_db is not None:
        print("\n".join(scored_study_report(args.scored_study_db, args.cores)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        overhead = overhead_per_trial(args.trials, Path(tmp))
        training, what = training_per_trial(args.study_db, Path(tmp))
    print(
        f"search overhead per trial: {overhead * 1000:8.1f} ms  "
        f"(NSGA-II + SQLite storage + budget check, {args.trials} trials)"
    )
    print(f"training per trial:        {training:8.1f} s   ({what})")
    print(f"overhead / training:       {overhead / training:8.5f}")


if __name__ == "__main__":
    main()
