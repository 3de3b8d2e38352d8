"""Several Optuna worker processes on one study in a real PostgreSQL server (``postgres_url``, tests/postgres.py).

Checks what the search relies on when it runs workers in parallel: trial numbers stay unique under
concurrent writers, the requested number of trials completes, and the trial of a worker killed with
SIGKILL is failed once its heartbeat is older than the grace period, then retried (once) and completed by
the surviving workers.
"""

from __future__ import annotations

import contextlib
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
# COMPLETE trials the first wave of workers stops at (beside the blocker, which is still alive), and how
# many more the second wave (started after the kill, once the killed trial is stale) completes.
TOTAL = 30
AFTER_KILL = 6

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


def _search_command(url: str, root: Path) -> list[str]:
    """A small `posenas search` worker on ``url``: 8 one-epoch trials on the synthetic ``root`` (add --out)."""
    flags = "--teacher none --scorer train --trials 8 --epochs 1 --qat-epochs 1 --batch-size 3 --val-images 1"
    return [sys.executable, "-m", "posenas.search.cli", "search", "--storage", url, "--data", str(root), *flags.split()]


def test_workers_share_a_study_and_retry_the_trial_of_a_killed_worker(postgres_url: str, tmp_path: Path) -> None:
    study_name = "workers-and-a-killed-one"
    study = optuna.create_study(study_name=study_name, storage=make_storage(postgres_url))
    engine = sqlalchemy.create_engine(postgres_url, poolclass=sqlalchemy.pool.NullPool)
    arguments = [postgres_url, study_name, str(TOTAL)]
    marker = tmp_path / "blocked-trial"
    blocker_log = tmp_path / "blocker.log"
    workers: dict[Path, subprocess.Popen[bytes]] = {}

    def complete() -> int:
        return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))

    def run_wave(wave: str, total: int) -> None:
        """WORKERS workers until ``total`` trials are COMPLETE; each must exit 0."""
        logs = [tmp_path / f"{wave}-{index}.log" for index in range(WORKERS)]
        for log in logs:
            workers[log] = _spawn([postgres_url, study_name, str(total)], log)
        for log in logs:
            try:
                returncode = workers[log].wait(timeout=60)
            except subprocess.TimeoutExpired:
                pytest.fail(f"worker {log.name} still running after 60 s\n{_tail(log)}")
            assert returncode == 0, f"worker {log.name} exited with {returncode}\n{_tail(log)}"

    try:
        # A worker whose first trial hangs: wait until it runs and has a heartbeat in the database.
        blocker = _spawn([*arguments, "--block", str(marker)], blocker_log)
        workers[blocker_log] = blocker
        _wait_until(marker.exists, "the blocking trial", workers)
        blocked_at = time.monotonic()
        killed_number = int(marker.read_text())
        _wait_until(lambda: _has_heartbeat(engine, study_name, killed_number), "its heartbeat", workers)

        # First wave: the others work beside the live blocker, each calling fail_stale_trials before every
        # trial; its trial outlives the grace period, kept alive by heartbeats. The test checks once more
        # itself after the grace period, since a fast machine may finish the wave sooner.
        run_wave("first", TOTAL)
        time.sleep(max(0.0, blocked_at + GRACE_PERIOD + HEARTBEAT_INTERVAL - time.monotonic()))
        optuna.storages.fail_stale_trials(study)
        assert blocker.poll() is None, _tail(blocker_log)
        assert _by_number(study)[killed_number].state == TrialState.RUNNING
        first_wave = complete()

        killed_at = datetime.now()
        blocker.send_signal(signal.SIGKILL)
        assert blocker.wait(timeout=10) == -signal.SIGKILL
        del workers[blocker_log]

        # Second wave, once the killed trial's last heartbeat is older than the grace period (however fast
        # the machine): the first trial any of them asks for fails it and queues its retry.
        time.sleep(GRACE_PERIOD + HEARTBEAT_INTERVAL)
        run_wave("second", first_wave + AFTER_KILL)
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
    # MaxTrialsCallback is checked after each trial, so the trials already running when a wave's total is
    # reached finish too: at most WORKERS - 1 more per wave.
    assert TOTAL + AFTER_KILL <= len(others) <= TOTAL + AFTER_KILL + 2 * (WORKERS - 1)
    pids = {trial.user_attrs["pid"] for trial in others}
    assert len(pids) >= WORKERS + 1 and blocker_pid not in pids, (
        "the surviving workers of both waves should have run trials"
    )
    assert min(trial.duration.total_seconds() for trial in others if trial.duration) >= TRIAL_SECONDS


def test_posenas_search_workers_share_a_postgresql_study(postgres_url: str, tmp_path: Path) -> None:
    """Two `posenas search` processes on one PostgreSQL study: every trial once, the requested count done."""
    import re

    from posenas.posenet.pose import synth

    root = tmp_path / "synth"
    synth.write_coco_root(root, train=6, val=2, seed=1)
    # The URL exactly as the README writes it (no +driver): posenas picks psycopg2 itself.
    readme_url = postgres_url.replace("postgresql+psycopg2://", "postgresql://").replace(
        "postgresql+psycopg://", "postgresql://"
    )
    assert readme_url.startswith("postgresql://")
    command = _search_command(readme_url, root)
    workers = [
        subprocess.Popen(
            [*command, "--out", str(tmp_path / f"w{i}")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for i in range(2)
    ]
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


def test_a_database_server_restarted_mid_search_loses_no_completed_trial(tmp_path: Path) -> None:
    """Issue 26: two `posenas search` workers on one PostgreSQL study; the server stops after the first trials
    complete and comes back 5 s later. Each worker either rides it out or stops with one line on stderr; no
    completed trial is lost; the next run continues the study to its count."""
    from posenas.posenet.pose import synth
    from tests.postgres import PostgresUnavailable, postgres_server

    root = tmp_path / "synth"
    synth.write_coco_root(root, train=6, val=2, seed=1)
    try:
        server_context = postgres_server("posenas_restart")
        server = server_context.__enter__()
    except PostgresUnavailable as reason:
        pytest.skip(str(reason))
    try:
        command = _search_command(server.url, root)
        workers = [
            subprocess.Popen(
                [*command, "--out", str(tmp_path / f"w{i}")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(2)
        ]
        engine = sqlalchemy.create_engine(server.url, poolclass=sqlalchemy.pool.NullPool)

        def completed() -> set[int]:
            with engine.connect() as connection:
                rows = connection.execute(sqlalchemy.text("SELECT number FROM trials WHERE state = 'COMPLETE'"))
                return {row[0] for row in rows}

        deadline = time.monotonic() + 240
        while True:  # until a few trials have completed
            with contextlib.suppress(sqlalchemy.exc.SQLAlchemyError):
                before = completed()
                if len(before) >= 3:
                    break
            assert time.monotonic() < deadline and all(w.poll() is None for w in workers), "no trials completed"
            time.sleep(0.2)
        server.stop()
        time.sleep(5)
        server.start()
        errors = [w.communicate(timeout=300)[1] for w in workers]
        for worker, err in zip(workers, errors):
            assert worker.returncode in (0, 2), err[-3000:]
            if worker.returncode == 2:  # stopped: in one line, naming the storage
                lines = err.strip().splitlines()
                assert len(lines) == 1 and lines[0].startswith("posenas: error: ") and "Traceback" not in err, err
        assert before <= completed(), "a completed trial was lost"
        rerun = subprocess.run([*command, "--out", str(tmp_path / "w0")], capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        study = optuna.load_study(study_name="max78000", storage=server.url)
        done = [t for t in study.trials if t.state == TrialState.COMPLETE]
        assert len({t.user_attrs["spec_hash"] for t in done}) == 8 and before <= {t.number for t in done}
        engine.dispose()
    finally:
        server_context.__exit__(None, None, None)
