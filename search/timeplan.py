"""A search command's wall-clock budget, shared among its phases.

``posenas search`` does five kinds of work: make the data, prepare the study's teacher, train the
supernet, score trials, and retrain the front's best networks stand-alone. With a budget (``minutes``),
each phase is sized when it starts to its share of the time still left, so a phase that ends early hands
its time on and a slow machine does less of everything instead of running over. What a phase had to
leave out is recorded as a *cut* and printed in the summary.

The sizing itself is a pure function (``images_that_fit``): measured seconds per image and a phase's
seconds give the number of training images per epoch, never fewer than ``minimum``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

PHASES = ("teacher", "supernet", "search", "retrain")


@dataclass(frozen=True)
class PhaseShares:
    """Relative shares of the time left after the data is made (they need not sum to 1)."""

    teacher: float = 0.10
    supernet: float = 0.45
    search: float = 0.25
    retrain: float = 0.20

    def __post_init__(self) -> None:
        for name in PHASES:
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"time share of {name} must be a finite number >= 0, got {value}")


@dataclass
class Clock:
    """The deadline of one command and its phases.

    ``seconds_for(phase)`` is the phase's share of the time left, among the phases not yet finished
    (``finish``); ``left()`` is the time to the deadline. ``minutes`` None means no budget: every phase
    gets ``math.inf``."""

    minutes: float | None
    shares: PhaseShares = field(default_factory=PhaseShares)
    now: Callable[[], float] = time.monotonic
    started: float = field(default=-1.0)
    finished: list[str] = field(default_factory=list)
    cuts: list[str] = field(default_factory=list)
    on_cut: Callable[[str], None] | None = None  # told each cut as it happens (the summary lists them again)

    def __post_init__(self) -> None:
        if self.minutes is not None and not (math.isfinite(self.minutes) and self.minutes > 0):
            raise ValueError(f"the time budget must be a positive number of minutes, got {self.minutes}")
        if self.started < 0:
            self.started = self.now()

    @property
    def limited(self) -> bool:
        return self.minutes is not None

    def elapsed(self) -> float:
        return self.now() - self.started

    def left(self) -> float:
        return math.inf if self.minutes is None else max(0.0, self.minutes * 60 - self.elapsed())

    def seconds_for(self, phase: str) -> float:
        """The seconds ``phase`` may take now: its share of ``left()`` among the unfinished phases."""
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}")
        if self.minutes is None:
            return math.inf
        pending = [p for p in PHASES if p not in self.finished]
        total = sum(getattr(self.shares, p) for p in pending) or 1.0
        return self.left() * getattr(self.shares, phase) / total

    def finish(self, phase: str) -> None:
        if phase not in self.finished:
            self.finished.append(phase)

    def skip(self, phase: str, why: str) -> None:
        """``phase`` is not run at all; its share goes to the others."""
        self.finish(phase)
        self.cut(why)

    def cut(self, what: str) -> None:
        self.cuts.append(what)
        if self.on_cut is not None:
            self.on_cut(what)


def images_that_fit(
    seconds: float, seconds_per_image: float, epochs: float, available: int, minimum: int
) -> int | None:
    """Training images per epoch so that ``epochs`` epochs take at most ``seconds`` at ``seconds_per_image``
    (``epochs`` may weigh slower epochs more, e.g. QAT ones): at most ``available``, and None when even
    ``minimum`` images do not fit."""
    if not seconds_per_image > 0 or not epochs > 0:
        raise ValueError("seconds_per_image and epochs must be positive")
    if math.isinf(seconds):
        return available
    fit = int(seconds / (seconds_per_image * epochs))
    if fit < minimum:
        return None
    return min(fit, available)
