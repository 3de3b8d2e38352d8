"""One Optuna worker process on a study in PostgreSQL, for tests/test_postgres_storage.py.

Why a script: the point of the test is several *processes* sharing one study through the database, each
with its own connections and heartbeat thread, and one of them dying with SIGKILL mid-trial.

    python tests/optuna_worker.py URL STUDY TOTAL              # trials until TOTAL trials are COMPLETE
    python tests/optuna_worker.py URL STUDY TOTAL --block FILE # one trial that writes its number to FILE
                                                               # and then hangs (the test kills it)
    python tests/optuna_worker.py URL STUDY 0 --claim          # claim queued trials (``ask``) until none
                                                               # wait; print the numbers claimed

Every trial records the worker's pid in the user attribute ``pid``. ``make_storage`` is imported by the
test too, so that the test and all workers use the same heartbeat and retry settings: those live in each
process's ``RDBStorage`` object, not in the database.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import optuna
from optuna.storages import RDBStorage
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState

try:  # Optuna >= 4.9 renamed RetryFailedTrialCallback / failed_trial_callback (removed in 6.0).
    from optuna.storages import RetryHeartbeatStaleTrialCallback as RetryCallback

    _CALLBACK_ARGUMENT = "heartbeat_stale_trial_callback"
except ImportError:  # Optuna 4.0 - 4.8
    from optuna.storages import RetryFailedTrialCallback as RetryCallback

    _CALLBACK_ARGUMENT = "failed_trial_callback"

__all__ = ["GRACE_PERIOD", "HEARTBEAT_INTERVAL", "MAX_RETRY", "TRIAL_SECONDS", "RetryCallback", "main", "make_storage"]

#: Seconds between heartbeats of a running trial.
HEARTBEAT_INTERVAL = 1
#: Seconds without a heartbeat after which another worker's ``fail_stale_trials`` fails a RUNNING trial.
GRACE_PERIOD = 2
#: How often a failed trial is re-queued (as a WAITING trial with the same parameters).
MAX_RETRY = 1
#: The cost of one ordinary trial.
TRIAL_SECONDS = 0.2
#: How long a blocking trial hangs; far longer than the test, which kills it.
BLOCK_SECONDS = 600.0


def make_storage(url: str) -> RDBStorage:
    """The storage ``posenas search`` opens (``posenas.search.storage.open_storage``: heartbeats, one retry of a stale
    trial), with a heartbeat and grace period short enough for a test."""
    from posenas.search.storage import open_storage

    return open_storage(url, heartbeat_interval=HEARTBEAT_INTERVAL, grace_period=GRACE_PERIOD)


def objective(trial: optuna.Trial, block_marker: Path | None) -> float:
    """A cheap quadratic that sleeps ``TRIAL_SECONDS``; with ``block_marker`` it announces itself and hangs."""
    x = trial.suggest_float("x", -10.0, 10.0)
    trial.set_user_attr("pid", os.getpid())
    if block_marker is not None:
        partial = block_marker.with_suffix(".partial")
        partial.write_text(str(trial.number))
        partial.replace(block_marker)  # the test never reads a half-written number
        time.sleep(BLOCK_SECONDS)
    time.sleep(TRIAL_SECONDS)
    return (x - 2.0) ** 2


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("url")
    parser.add_argument("study")
    parser.add_argument("total", type=int, help="stop once this many trials of the study are COMPLETE")
    parser.add_argument("--block", type=Path, help="run one trial that writes its number here and hangs")
    parser.add_argument("--claim", action="store_true", help="claim queued trials until none wait")
    args = parser.parse_args(argv)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=args.study, storage=make_storage(args.url))
    if args.claim:
        claimed = []
        while study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            claimed.append(study.ask().number)  # ask() claims the oldest queued trial
        print(" ".join(map(str, claimed)))
    elif args.block is not None:
        study.optimize(lambda trial: objective(trial, args.block), n_trials=1)
    else:
        stop = MaxTrialsCallback(args.total, states=(TrialState.COMPLETE,))
        study.optimize(lambda trial: objective(trial, None), callbacks=[stop])


if __name__ == "__main__":
    main()
