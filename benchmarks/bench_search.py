"""The search's own overhead per trial (sampler + storage + budget check) against training time per trial.

    python benchmarks/bench_search.py [--trials 200] [--study-db posenas-runs/max78000/study.db]

Overhead: an NSGA-II study on a SQLite file (the default storage, with heartbeats) whose objective
samples a spec of the default space and runs the full budget check, then records the user attributes
a real trial records; no training. The reference is the mean training time of the trained trials of a
finished study (``--study-db``, e.g. the default run's), or else one tiny-hw trial with the default study's
per-trial schedule trained here. Goal: the overhead is a negligible fraction of a trial.
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
        records = [r for r in records_of(optuna.load_study(study_name=name, storage=storage).trials)
                   if r.trained and r.reused_from is None]  # fmt: skip
        return sum(r.seconds for r in records) / len(records), f"mean of {len(records)} trained trials of {study_db}"
    from posenas.posenet.nets.train import Trainer
    from posenas.posenet.pose import synth
    from posenas.space.baselines import get_arch

    root = folder / "synth"
    synth.write_coco_root(root, train=2000, val=100, seed=0)
    started = time.perf_counter()
    Trainer(get_arch("tiny-hw"), root, folder / "run", load_settings("max78000").train).run()
    return time.perf_counter() - started, "one tiny-hw trial, default per-trial schedule"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--study-db", type=Path, help="a finished study's SQLite file (training reference)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        overhead = overhead_per_trial(args.trials, Path(tmp))
        training, what = training_per_trial(args.study_db, Path(tmp))
    print(f"search overhead per trial: {overhead * 1000:8.1f} ms  (NSGA-II + SQLite storage + budget check, {args.trials} trials)")
    print(f"training per trial:        {training:8.1f} s   ({what})")
    print(f"overhead / training:       {overhead / training:8.5f}")


if __name__ == "__main__":
    main()
