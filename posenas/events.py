"""What the library tells whoever runs it, while it runs: one ``Events`` protocol for every long call.

The pipeline (``run_study``, ``train_network``, ``export_trial``, ``evaluate``, ...) never prints. It
reports to an ``Events`` object: free-text messages, the cuts a time budget makes, progress of counted
work (a task is started, stepped and ended), each finished training epoch, and each finished search trial.
The command line passes a rich implementation (``posenas.search.cli.rendering.ConsoleEvents``) that
draws bars and lines; tests and benchmarks pass ``RecordingEvents`` and assert on what was reported;
``Events`` itself does nothing, so a caller that wants nothing passes ``Events()``.

Every method is optional to override: a subclass renders what it cares about.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["CountedProgress", "EpochEvent", "Events", "Recorded", "RecordingEvents", "TrialEvent", "TrainingProgress"]

Level = Literal["info", "warning"]
TrialOutcome = Literal["scored", "trained", "rejected", "reused", "failed", "recovered"]


@dataclass(frozen=True)
class TrialEvent:
    """One search trial finished (or failed, or was taken over from a dead worker).

    ``detail`` is what happened in words ("supernet AP 0.041, ... in 2.1 s"); ``values`` the numbers in it
    (``ap``, ``val_loss``, ``fg_loss``, ``params``, ``latency_ms``, ``seconds`` where known)."""

    number: int
    name: str
    outcome: TrialOutcome
    detail: str
    values: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class EpochEvent:
    """One training epoch finished. ``run`` names what trains ("trial 7 trial7", "supernet", "teacher",
    a network's name); ``record`` is the trainer's own epoch record (``EpochRecord``, or the supernet's
    ``SupernetEpoch`` with the largest network's and the subnets' losses)."""

    run: str
    epochs: int
    record: Any


class Events:
    """Receives what a long library call reports. This base does nothing; override what you render."""

    def message(self, text: str, level: Level = "info") -> None:
        """A line for a person: what starts, what was written, a warning."""

    def cut(self, what: str) -> None:
        """A time budget left ``what`` out or made it smaller (the result lists the cuts again)."""

    def progress_start(self, task: str, total: int | None = None) -> None:
        """Counted work ``task`` begins; ``total`` None: not known yet."""

    def progress_step(self, task: str, completed: int, total: int | None = None, status: str = "") -> None:
        """``task`` has ``completed`` of ``total`` units done; ``status`` is a short note (loss, speed)."""

    def progress_end(self, task: str) -> None:
        """``task`` is over (done, cut or failed)."""

    def epoch(self, event: EpochEvent) -> None:
        """A training epoch finished."""

    def trial(self, event: TrialEvent) -> None:
        """A search trial finished."""


@dataclass(frozen=True)
class Recorded:
    """One reported event: its kind (the method's name) and its arguments."""

    kind: str
    args: tuple[Any, ...]


class RecordingEvents(Events):
    """Keeps every event, in order, for tests and benchmarks to assert on."""

    def __init__(self) -> None:
        self.events: list[Recorded] = []

    def _add(self, kind: str, *args: Any) -> None:
        self.events.append(Recorded(kind, args))

    def message(self, text: str, level: Level = "info") -> None:
        self._add("message", text, level)

    def cut(self, what: str) -> None:
        self._add("cut", what)

    def progress_start(self, task: str, total: int | None = None) -> None:
        self._add("progress_start", task, total)

    def progress_step(self, task: str, completed: int, total: int | None = None, status: str = "") -> None:
        self._add("progress_step", task, completed, total, status)

    def progress_end(self, task: str) -> None:
        self._add("progress_end", task)

    def epoch(self, event: EpochEvent) -> None:
        self._add("epoch", event)

    def trial(self, event: TrialEvent) -> None:
        self._add("trial", event)

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        """The arguments of every event of ``kind``, in order."""
        return [e.args for e in self.events if e.kind == kind]

    @property
    def messages(self) -> list[str]:
        return [args[0] for args in self.of("message")]

    @property
    def trials(self) -> list[TrialEvent]:
        return [args[0] for args in self.of("trial")]

    @property
    def epochs(self) -> list[EpochEvent]:
        return [args[0] for args in self.of("epoch")]

    @property
    def cuts(self) -> list[str]:
        return [args[0] for args in self.of("cut")]


class TrainingProgress:
    """A trainer's ``on_batch(step, steps, loss)`` and ``on_epoch(record)`` as events: a progress task per
    epoch (stepped every 10 batches with the loss and the speed, since reading a GPU loss syncs it) and an
    ``EpochEvent`` per finished epoch. A context manager: the task ends on leaving, however it leaves."""

    def __init__(self, events: Events, run: str, epochs: int, batch_size: int) -> None:
        self.events, self.run, self.epochs, self.batch_size = events, run, epochs, batch_size
        self.epoch_now, self.started = 0, time.perf_counter()
        self.task: str | None = f"{run}: epoch 1/{epochs}"

    def __enter__(self) -> tuple[Callable[[int, int, Any], None], Callable[[Any], None]]:
        if self.task is not None:
            self.events.progress_start(self.task)
        return self.on_batch, self.on_epoch

    def __exit__(self, *exc: Any) -> None:
        if self.task is not None:
            self.events.progress_end(self.task)
            self.task = None

    def on_batch(self, step: int, steps: int, loss: Any) -> None:
        if step == 1:
            self.started = time.perf_counter()
        if self.task is not None and (step % 10 == 0 or step == steps):
            rate = step * self.batch_size / max(1e-9, time.perf_counter() - self.started)
            self.events.progress_step(self.task, step, steps, f"loss {float(loss):.5f}  {rate:,.0f} img/s")

    def on_epoch(self, record: Any) -> None:
        if self.task is not None:
            self.events.progress_end(self.task)
        self.events.epoch(EpochEvent(self.run, self.epochs, record))
        self.task = f"{self.run}: epoch {record.epoch + 2}/{self.epochs}" if record.epoch + 1 < self.epochs else None
        if self.task is not None:
            self.events.progress_start(self.task)


class CountedProgress:
    """Counted work as events: ``with CountedProgress(events, "inference", 500) as advance: advance(n)``.
    The task starts on entering and ends on leaving, however it leaves."""

    def __init__(self, events: Events, task: str, total: int | None = None) -> None:
        self.events, self.task, self.total, self.done = events, task, total, 0

    def __enter__(self) -> Callable[[int], None]:
        self.events.progress_start(self.task, self.total)
        return self.advance

    def __exit__(self, *exc: Any) -> None:
        self.events.progress_end(self.task)

    def advance(self, count: int = 1) -> None:
        self.done += count
        self.events.progress_step(self.task, self.done, self.total)
