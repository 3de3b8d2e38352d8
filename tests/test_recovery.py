"""Killed, interrupted and concurrent work: nothing written is lost, and the next run carries on at once.

Real processes and real signals: ``posenas search`` and ``posenas train`` run as subprocesses on a tiny
synthetic root; SIGKILL and SIGINT are sent while a trial trains.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch

import posenas.posenet.nets.train as train_module
from posenas.posenet.nets.checkpoint import load_checkpoint
from posenas.posenet.nets.config import TrainConfig
from posenas.posenet.nets.train import Trainer
from posenas.space.baselines import baseline_names, get_arch

TINY = ["--epochs", "2", "--qat-epochs", "1", "--batch-size", "3", "--val-images", "2"]
# A schedule long enough that a trial is still training when the signal comes.
SLOW = ["--epochs", "40", "--qat-epochs", "1", "--batch-size", "2", "--val-images", "2"]


@pytest.fixture(scope="module")
def root(synth_root):
    return synth_root(train=6, val=2, seed=21)


def _search(root: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "posenas.search.cli",
        "search",
        "--data",
        str(root),
        "--teacher",
        "none",
        "--scorer",
        "train",
        "--out",
        str(out),
        *extra,
    ]


def _start(command: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    # SIGINT back to its default in the child: a suite started in the background by a non-interactive shell
    # (`pytest &`) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt for it.
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _wait_for(process: subprocess.Popen, text: str, timeout: float = 180) -> list[str]:
    """Lines of stdout up to and including the first that contains ``text``."""
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"{text!r} never printed: {''.join(lines)}")


def _study(out: Path) -> optuna.Study:
    return optuna.load_study(study_name="max78000", storage=f"sqlite:///{out / 'study.db'}")


def _signal_a_training_search(root: Path, out: Path, sig: int) -> tuple[subprocess.Popen, int]:
    """Start a search, send ``sig`` while its first trial trains; the worker and that trial's number."""
    worker = _start(_search(root, out, "--trials", "5", "--no-baselines", *SLOW))
    lines = _wait_for(worker, ": training (")
    time.sleep(1.0)
    os.killpg(worker.pid, sig)
    return worker, int(lines[-1].split()[1])


def _rerun(root: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        _search(root, out, "--trials", "1", "--no-baselines", *TINY),
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def test_a_killed_search_worker_s_trial_is_retried_by_the_immediate_rerun(root, tmp_path):
    out = tmp_path / "s"
    worker, killed = _signal_a_training_search(root, out, signal.SIGKILL)
    worker.wait(timeout=30)
    assert _study(out).trials[killed].state.name == "RUNNING"  # what the kill leaves behind

    rerun = _rerun(root, out)
    assert rerun.returncode == 0, rerun.stderr
    assert f"left running by a stopped worker (pid {worker.pid})" in rerun.stdout
    assert re.search(rf"^trial {killed} \S+: left running by a stopped worker", rerun.stdout, re.M), rerun.stdout
    trials = _study(out).trials
    assert trials[killed].state.name == "FAIL"
    retried = [t for t in trials if t.user_attrs.get("retry_of") == killed]
    assert len(retried) == 1 and retried[0].state.name == "COMPLETE"
    assert retried[0].params == trials[killed].params
    assert not [t for t in trials if t.state.name == "RUNNING"]


def test_ctrl_c_stops_a_search_in_one_line_and_the_rerun_resumes(root, tmp_path):
    out = tmp_path / "s"
    worker, interrupted = _signal_a_training_search(root, out, signal.SIGINT)
    stdout, stderr = worker.communicate(timeout=120)
    assert worker.returncode == 130
    assert stderr.count("\n") == 1 and "interrupted" in stderr and "Traceback" not in stderr, stderr
    assert "rerun the same command to resume" in stdout and "Pareto front of max78000 so far" in stdout
    trials = _study(out).trials
    assert trials[interrupted].state.name == "FAIL"
    queued = [t for t in trials if t.user_attrs.get("retry_of") == interrupted]
    assert len(queued) == 1 and queued[0].state.name == "WAITING"

    rerun = _rerun(root, out)
    assert rerun.returncode == 0, rerun.stderr
    again = _study(out).trials[queued[0].number]
    assert again.state.name == "COMPLETE" and again.params == trials[interrupted].params


def test_ctrl_c_stops_training_in_one_line_and_the_run_resumes(root, tmp_path):
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "posenas.search.cli",
        "train",
        "--arch",
        "tiny-hw",
        "--data",
        str(root),
        "--out",
        str(out),
        "--epochs",
        "3",
        "--qat-epochs",
        "1",
        "--batch-size",
        "2",
        "--val-images",
        "2",
    ]
    run = _start(command)
    _wait_for(run, "epoch 1/3")
    os.killpg(run.pid, signal.SIGINT)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 130 and stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0 and "resuming tiny-hw" in resumed.stdout
    assert len(load_checkpoint(out / "last.pt").history) == 3


def test_a_kill_between_checkpoint_writes_loses_no_best_checkpoint(root, tmp_path, monkeypatch):
    """A kill right after an epoch's best.pt and before its last.pt: the rerun repeats that epoch, and
    best.pt, best-float.pt and last.pt end as an uninterrupted run's."""
    torch.set_num_threads(1)
    spec = get_arch("tiny-hw")
    config = TrainConfig(epochs=3, qat_start=2, batch_size=2, val_images=2, lr=1e-3)
    Trainer(spec, root, tmp_path / "whole", config).run()
    whole = {name: load_checkpoint(tmp_path / "whole" / name) for name in ("best.pt", "best-float.pt", "last.pt")}

    real_save = train_module.save_checkpoint
    for epoch_killed in range(3):
        folder = tmp_path / f"killed{epoch_killed}"

        def save_then_die(checkpoint, path, epoch_killed=epoch_killed):
            real_save(checkpoint, path)
            if checkpoint.epoch == epoch_killed and Path(path).name == "best.pt":
                raise KeyboardInterrupt  # the process dies before last.pt is written

        monkeypatch.setattr(train_module, "save_checkpoint", save_then_die)
        try:
            Trainer(spec, root, folder, config).run()
        except KeyboardInterrupt:
            pass
        monkeypatch.setattr(train_module, "save_checkpoint", real_save)
        Trainer(spec, root, folder, config).run()
        for name, expected in whole.items():
            got = load_checkpoint(folder / name)
            assert (got.epoch, got.extras.get("best_mAP")) == (expected.epoch, expected.extras.get("best_mAP")), name
            assert all(torch.equal(got.state_dict[k], v) for k, v in expected.state_dict.items()), name


def test_two_workers_never_claim_the_same_queued_trial_of_a_sqlite_study(tmp_path):
    """Two processes pop 150 queued trials of one SQLite study as fast as they can: each trial goes to one.

    Python's sqlite3 driver begins a transaction only at its first write, so without ``BEGIN IMMEDIATE``
    (``posenas.search.storage``) both read a trial as WAITING and both claim it: 2-5 of the 150 here, and in
    a search the slower worker then dies on "Cannot tell a COMPLETE trial"."""
    from tests.optuna_worker import make_storage

    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="claims", storage=make_storage(url))
    for x in range(150):
        study.enqueue_trial({"x": float(x)})
    worker = [sys.executable, str(Path(__file__).with_name("optuna_worker.py")), url, "claims", "0", "--claim"]
    runs = [subprocess.Popen(worker, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    claimed = [[int(n) for n in out.split()] for out, _ in outputs]
    assert all(claimed), "both workers should have claimed trials"  # else the race was never run
    every = claimed[0] + claimed[1]
    assert len(every) == len(set(every)), "a trial was claimed twice"
    # Every queued trial claimed; the loser of the race for the last one may ask() a new trial 150.
    assert set(range(150)) <= set(every) <= set(range(152))


@pytest.mark.parametrize("round_", range(3))
def test_two_workers_started_together_on_one_sqlite_study(root, tmp_path, round_):
    """No crash, no baseline enqueued twice, exactly --trials networks: every round."""
    out = tmp_path / "shared"
    command = _search(root, out, "--trials", "6", "--seed", str(round_), *TINY)
    workers = [_start(command) for _ in range(2)]
    results = [w.communicate(timeout=600) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], results
    trials = _study(out).trials
    baselines = [t.user_attrs["baseline"] for t in trials if "baseline" in t.user_attrs]
    assert sorted(baselines) == sorted(baseline_names())  # each once
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len({t.user_attrs["spec_hash"] for t in complete}) == 6
    assert not [t for t in trials if t.state.name in ("RUNNING", "FAIL", "WAITING")]


def test_a_nan_loss_fails_the_run_in_one_line_and_only_that_trial_of_a_study(root, tmp_path, monkeypatch, capsys):
    from posenas.search.cli import main

    real_loss, real_run = train_module.pose_loss, Trainer.run
    poisoned = {"on": True}  # NaN losses until one run has failed on them

    def nan_on_first_epoch(*args, **kwargs):
        loss, parts = real_loss(*args, **kwargs)
        return (loss * float("nan"), parts) if poisoned["on"] else (loss, parts)

    def run_until_it_fails(self):
        try:
            return real_run(self)
        except Exception:
            poisoned["on"] = False
            raise

    monkeypatch.setattr(Trainer, "run", run_until_it_fails)
    monkeypatch.setattr(train_module, "pose_loss", nan_on_first_epoch)
    code = main(["train", "--arch", "tiny-hw", "--data", str(root), "--out", str(tmp_path / "run"), *TINY])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "loss became NaN or infinite in epoch 1" in err, err
    assert not (tmp_path / "run" / "last.pt").exists()  # the diverged epoch is neither scored nor saved

    poisoned["on"] = True
    from posenas.events import RecordingEvents
    from posenas.search.pipeline import run_study
    from posenas.search.settings import load_settings

    schedule = {"train_epochs": 2, "train_qat_epochs": 1, "train_batch_size": 3, "train_val_images": 2}
    settings = load_settings("max78000").with_overrides(scorer="train", trials=5, **schedule)
    events = RecordingEvents()
    result = run_study(settings, out=tmp_path / "s", events=events, data=str(root), teacher="none")
    failed = [t for t in events.trials if t.outcome == "failed"]
    assert [t.name for t in failed] == ["tiny-hw"]  # tiny-hw trains first
    assert "the training loss became NaN" in failed[0].detail and result.counts.failed == 1
    states = [t.state.name for t in _study(tmp_path / "s").trials]
    assert states.count("FAIL") == 1 and states.count("COMPLETE") >= 5
