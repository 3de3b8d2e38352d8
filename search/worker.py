"""One worker of a study: it starts trials until the study holds ``trials`` distinct networks.

Optuna's own loop (``study.optimize`` with ``MaxTrialsCallback``) counts trials, not work, and checks the
count only after a trial ends, so two workers racing for the last trial run one too many, and a rerun
with the same seed spends its budget re-sampling networks it already scored. This loop instead

* counts *new work*: distinct networks scored or rejected (``study.new_work_count``);
* gates each trial on the trials ahead of it: a trial starts only if the finished work plus the trials
  still running with smaller numbers leaves room, so racing workers end with exactly ``trials``;
* retries at once a trial that a killed worker of this machine left RUNNING (its process is gone), instead
  of waiting for the heartbeat's grace period; on shared storage across machines the heartbeat stays;
* with a time limit, starts no trial that would likely end past it: one whose expected time (the mean of
  this worker's last ``PACE_WINDOW`` trials) is longer than the time left. Optuna's ``timeout`` only
  stops starting trials once the limit has passed, so a slow trial begun just before it overruns it;
* on Ctrl-C, fails the trial in flight, queues it again for the next run and lets the interrupt through.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from posenas.events import Events, TrialEvent
from posenas.files import WRITE_FAILURES
from posenas.search.records import ATTR_BASELINE, ATTR_SPEC
from posenas.search.storage import storage_failure
from posenas.search.study import new_work_count

ATTR_WORKER = "worker"  # {"host": ..., "pid": ...} of the process that ran a trial
ATTR_RETRY_OF = "retry_of"  # the trial number a re-enqueued trial repeats
REPEATS_BEFORE_STOP = 200  # consecutive trials without new work: the space is exhausted
PACE_WINDOW = 8  # the recent trials whose mean time predicts the next one's (rejections count: they are drawn too)


@dataclass
class WorkerReport:
    """What one worker did, for the summary line."""

    started: int = 0
    recovered: list[int] = field(default_factory=list)
    stopped_by: str = "trials"  # trials | timeout | exhausted | others


def this_worker() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def retry(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Queue ``trial``'s parameters again (a baseline keeps its name)."""
    attrs = {ATTR_RETRY_OF: trial.number}
    if ATTR_BASELINE in trial.user_attrs:
        attrs[ATTR_BASELINE] = trial.user_attrs[ATTR_BASELINE]
    study.enqueue_trial(trial.params, user_attrs=attrs)


def recover_dead_trials(study: optuna.Study, events: Events) -> list[int]:
    """Fail and re-queue the RUNNING trials whose worker ran on this machine and has died. Call it under
    the study lock, so that two starting workers do not both retry the same trial."""
    host, recovered = socket.gethostname(), []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get(ATTR_WORKER) or {}
        if worker.get("host") != host or worker.get("pid") in (None, os.getpid()) or pid_alive(worker["pid"]):
            continue
        study.tell(trial.number, state=TrialState.FAIL)
        retry(study, trial)
        recovered.append(trial.number)
        events.trial(
            TrialEvent(
                trial.number,
                _name(trial),
                "recovered",
                f"left running by a stopped worker (pid {worker['pid']}): failed, and queued again for this run",
            )
        )
    return recovered


class _GatedObjective:
    """Wraps the study's objective: records the worker, lets the trial start only if the study has room,
    and reports a failure in one line (the study goes on)."""

    def __init__(self, objective: Callable[[optuna.Trial], Any], trials: int, events: Events) -> None:
        self.objective, self.trials, self.events = objective, trials, events
        self.full = False
        self.fatal: OSError | None = None  # a disk that takes no more: every later trial would fail alike

    def __call__(self, trial: optuna.Trial) -> Any:
        trial.set_user_attr(ATTR_WORKER, this_worker())
        study = trial.study
        ahead = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if t.number < trial.number]
        if new_work_count(study) + len(ahead) >= self.trials:
            self.full = True
            raise optuna.TrialPruned("the study already has its trials")
        try:
            return self.objective(trial)
        except OSError as exc:
            if exc.errno in WRITE_FAILURES:
                self.fatal = exc
            raise
        except Exception as exc:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
            self.events.trial(TrialEvent(trial.number, _name(trial), "failed", f"failed ({detail}); the study goes on"))
            raise


def run_worker(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], Any],
    trials: int,
    *,
    timeout_s: float | None,
    lock: Callable[[], AbstractContextManager[Any]],
    events: Events,
) -> WorkerReport:
    """Run trials of ``study`` until it holds ``trials`` distinct networks, no trial starting after
    ``timeout_s`` or when the next would likely end past it. ``lock()`` serialises recovery with the other
    workers' start."""
    report = WorkerReport()
    with lock():
        report.recovered = recover_dead_trials(study, events)
    gated = _GatedObjective(objective, trials, events)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    idle, durations = 0, []
    try:
        while True:
            done = new_work_count(study)
            if done >= trials:
                report.stopped_by = "trials"
                break
            if done + len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))) >= trials or gated.full:
                report.stopped_by = "others"  # the remaining trials are running in other workers
                break
            if deadline is not None and deadline - time.monotonic() < expected_seconds(durations):
                report.stopped_by = "timeout"
                break
            if idle >= REPEATS_BEFORE_STOP:
                report.stopped_by = "exhausted"
                break
            started = time.monotonic()
            try:
                study.optimize(gated, n_trials=1, catch=(Exception,))
            except Exception as exc:
                raise (storage_failure(exc) or exc) from None
            durations.append(time.monotonic() - started)
            if gated.fatal is not None:
                _retry_last(study)  # its network is tried again by the rerun, once there is room
                raise gated.fatal
            report.started += 1
            idle = 0 if new_work_count(study) > done else idle + 1
    except KeyboardInterrupt:
        _requeue_interrupted(study)
        raise
    return report


def _name(trial: optuna.trial.BaseTrial) -> str:
    """The trial's network name: its sampled spec's, else the baseline it was queued as, else trialN."""
    spec = trial.user_attrs.get(ATTR_SPEC) or {}
    return str(spec.get("name") or trial.user_attrs.get(ATTR_BASELINE) or f"trial{trial.number}")


def _retry_last(study: optuna.Study) -> None:
    """Queue this process's last failed trial again, if the storage still takes writes."""
    mine = [
        t for t in study.get_trials(deepcopy=False) if (t.user_attrs.get(ATTR_WORKER) or {}).get("pid") == os.getpid()
    ]
    if mine and mine[-1].state == TrialState.FAIL:
        try:
            retry(study, mine[-1])
        except Exception:
            pass


def expected_seconds(durations: list[float], window: int = PACE_WINDOW) -> float:
    """The expected time of the next trial: the mean of the last ``window`` (0 before any)."""
    recent = durations[-window:]
    return sum(recent) / len(recent) if recent else 0.0


def _requeue_interrupted(study: optuna.Study) -> None:
    """This process's last trial, interrupted by Ctrl-C: failed (Optuna does that) and queued again."""
    mine = [
        t for t in study.get_trials(deepcopy=False) if (t.user_attrs.get(ATTR_WORKER) or {}).get("pid") == os.getpid()
    ]
    if mine and mine[-1].state in (TrialState.FAIL, TrialState.RUNNING):
        if mine[-1].state == TrialState.RUNNING:
            study.tell(mine[-1].number, state=TrialState.FAIL)
        retry(study, mine[-1])
