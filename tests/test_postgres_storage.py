"""Several Optuna worker processes on one study in a real PostgreSQL server (``postgres_url``, tests/postgres.py).

Checks what the search relies on when it runs workers in parallel: trial numbers stay unique under
concurrent writers, the requested number of trials completes, and the trial of a worker killed with
SIGKILL is failed once its heartbeat is older than the grace period, then retried (once) and completed by
the surviving workers.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from posenas.space.baselines import baseline_names
from tests.optuna_worker import GRACE_PERIOD, HEARTBEAT_INTERVAL, TRIAL_SECONDS, RetryCallback, make_storage

WORKER = Path(__file__).with_name("optuna_worker.py")
WORKERS = 3
# COMPLETE trials the workers stop at. The kill comes after the first few; the rest take at least
# (TOTAL - few) * TRIAL_SECONDS / WORKERS ~ 3 s however fast the machine, longer than the at most
# GRACE_PERIOD seconds until the killed trial is stale, so a surviving worker is there to fail and retry it.
TOTAL = 50
COMPLETE_BEFORE_KILL = 3

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def _spawn(arguments: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, str(WORKER), *arguments], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )


def _tail(log: Path, lines: int = 15) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _wait_until(
    condition: Callable[[], bool], what: str, workers: dict[Path, subprocess.Popen[bytes]], timeout: float = 30.0
) -> None:
    """Poll ``condition``; fail with the worker's log if a worker exits meanwhile or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not condition():
        for log, process in workers.items():
            if process.poll() is not None:
                pytest.fail(f"waiting for {what}: worker exited with {process.returncode}\n{_tail(log)}")
        if time.monotonic() > deadline:
            pytest.fail(f"waiting for {what}: not after {timeout:.0f} s")
        time.sleep(0.05)


def _has_heartbeat(engine: sqlalchemy.Engine, study_name: str, number: int) -> bool:
    """Whether trial ``number`` has a heartbeat row yet (Optuna only ever fails trials that have one)."""
    query = sqlalchemy.text(
        "SELECT count(*) FROM trial_heartbeats h JOIN trials t ON t.trial_id = h.trial_id "
        "JOIN studies s ON s.study_id = t.study_id WHERE s.study_name = :study AND t.number = :number"
    )
    with engine.connect() as connection:
        return bool(connection.execute(query, {"study": study_name, "number": number}).scalar())


def _by_number(study: optuna.Study) -> dict[int, optuna.trial.FrozenTrial]:
    return {trial.number: trial for trial in study.get_trials(deepcopy=False)}


def test_workers_share_a_study_and_retry_the_trial_of_a_killed_worker(postgres_url: str, tmp_path: Path) -> None:
    study_name = "workers-and-a-killed-one"
    study = optuna.create_study(study_name=study_name, storage=make_storage(postgres_url))
    engine = sqlalchemy.create_engine(postgres_url, poolclass=sqlalchemy.pool.NullPool)
    arguments = [postgres_url, study_name, str(TOTAL)]
    marker = tmp_path / "blocked-trial"
    blocker_log = tmp_path / "blocker.log"
    workers: dict[Path, subprocess.Popen[bytes]] = {}
    try:
        # A worker whose first trial hangs: wait until it runs and has a heartbeat in the database.
        blocker = _spawn([*arguments, "--block", str(marker)], blocker_log)
        workers[blocker_log] = blocker
        _wait_until(marker.exists, "the blocking trial", workers)
        blocked_at = time.monotonic()
        killed_number = int(marker.read_text())
        _wait_until(lambda: _has_heartbeat(engine, study_name, killed_number), "its heartbeat", workers)

        for index in range(WORKERS):
            log = tmp_path / f"worker-{index}.log"
            workers[log] = _spawn(arguments, log)

        def complete() -> int:
            return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))

        # The others work beside the live blocker, and its trial outlives the grace period: kept alive by
        # heartbeats although every worker calls fail_stale_trials before each trial.
        _wait_until(
            lambda: (
                complete() >= COMPLETE_BEFORE_KILL and time.monotonic() - blocked_at > GRACE_PERIOD + HEARTBEAT_INTERVAL
            ),
            f"{COMPLETE_BEFORE_KILL} trials of the other workers",
            workers,
        )
        assert _by_number(study)[killed_number].state == TrialState.RUNNING

        killed_at = datetime.now()
        blocker.send_signal(signal.SIGKILL)
        assert blocker.wait(timeout=10) == -signal.SIGKILL
        del workers[blocker_log]

        for log, process in workers.items():
            try:
                returncode = process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pytest.fail(f"worker {log.name} still running after 60 s\n{_tail(log)}")
            assert returncode == 0, f"worker {log.name} exited with {returncode}\n{_tail(log)}"
    finally:
        for process in workers.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        engine.dispose()

    trials = study.get_trials(deepcopy=False)
    numbers = sorted(trial.number for trial in trials)
    assert numbers == list(range(len(trials))), "trial numbers are not unique and consecutive"

    killed = _by_number(study)[killed_number]
    assert killed.state == TrialState.FAIL, "the killed worker's trial was not failed by the heartbeat check"
    assert killed.datetime_complete is not None and killed.datetime_complete > killed_at
    blocker_pid = killed.user_attrs["pid"]

    retries = [trial for trial in trials if RetryCallback.retried_trial_number(trial) == killed_number]
    assert len(retries) == 1, f"expected one retry of trial {killed_number}, got {[t.number for t in retries]}"
    retry = retries[0]
    assert retry.state == TrialState.COMPLETE
    assert retry.params == killed.params
    assert RetryCallback.retry_history(retry) == [killed_number]
    assert retry.user_attrs["pid"] != blocker_pid

    others = [trial for trial in trials if trial.number != killed_number]
    assert all(trial.state == TrialState.COMPLETE for trial in others), sorted(
        (trial.number, trial.state.name) for trial in others if trial.state != TrialState.COMPLETE
    )
    # MaxTrialsCallback is checked after each trial, so the trials already running when the total is
    # reached finish too: at most WORKERS - 1 more.
    assert TOTAL <= len(others) <= TOTAL + WORKERS - 1
    pids = {trial.user_attrs["pid"] for trial in others}
    assert len(pids) == WORKERS and blocker_pid not in pids, "every surviving worker should have run trials"
    assert min(trial.duration.total_seconds() for trial in others if trial.duration) >= TRIAL_SECONDS


def test_posenas_search_workers_share_a_postgresql_study(postgres_url: str, tmp_path: Path) -> None:
    """Two `posenas search` processes on one PostgreSQL study: every trial once, the requested count done."""
    import re

    from posenas.posenet.pose import synth

    root = tmp_path / "synth"
    synth.write_coco_root(root, train=6, val=2, seed=1)
    # The URL exactly as the README writes it (no +driver): posenas picks psycopg2 itself.
    readme_url = postgres_url.replace("postgresql+psycopg2://", "postgresql://").replace("postgresql+psycopg://", "postgresql://")
    assert readme_url.startswith("postgresql://")
    command = [sys.executable, "-m", "posenas.search.cli", "search", "--storage", readme_url, "--data", str(root),
               "--teacher", "none", "--scorer", "train", "--trials", "8", "--epochs", "1", "--qat-epochs", "1", "--batch-size", "3",
               "--val-images", "1"]  # fmt: skip
    workers = [subprocess.Popen([*command, "--out", str(tmp_path / f"w{i}")], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True) for i in range(2)]  # fmt: skip
    outputs = [w.communicate(timeout=240)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    study = optuna.load_study(study_name="max78000", storage=postgres_url)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers))
    assert len({t.user_attrs["spec_hash"] for t in complete}) == 8  # exactly --trials networks, never one more
    baselines = [t.user_attrs["baseline"] for t in study.trials if "baseline" in t.user_attrs]
    assert sorted(baselines) == sorted(baseline_names())  # each once  # enqueued once, under the lock
    assert all("spec_hash" in t.user_attrs for t in complete)
    # Both workers ran trials of the shared study.
    assert all(re.search(r"^trial \d+ ", out, re.MULTILINE) for out in outputs)
