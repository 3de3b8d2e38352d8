"""Pacing a training run to a wall-clock deadline from the speed it measures while it runs.

A budgeted command (``posenas search``) gives each training phase a deadline. A size fixed before the
phase began goes wrong when the machine's load changes: a retraining sized at 70 s from a speed
measured minutes earlier took 426 s beside four busy processes. So a paced run measures itself instead.
At the start of each epoch the time left to the deadline, less the validations still to come (as long
as the last one took), is split among the remaining epochs by their cost (a QAT step costs more than a
float one), and the epoch stops taking steps when its share is spent. A slower machine does fewer steps
per epoch; every epoch still takes at least one step and is validated, so the schedule's shape (the
float phase, then QAT) holds and the run ends with a quantized network.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

QAT_STEP_COST = 1.4  # a QAT training step against a float one (BENCHMARKS.md: 0.57 vs 0.40 img/s)


def epoch_share(
    left_s: float, remaining_qat: Sequence[bool], validation_s: float, qat_cost: float = QAT_STEP_COST
) -> float:
    """The training seconds of the next epoch: ``left_s`` less one validation per remaining epoch, split
    among the remaining epochs (``remaining_qat``: whether each is QAT, the next one first) by cost."""
    if not remaining_qat:
        return 0.0
    weights = [qat_cost if qat else 1.0 for qat in remaining_qat]
    training = max(0.0, left_s - validation_s * len(remaining_qat))
    return training * weights[0] / sum(weights)


@dataclass
class Pacer:
    """The steps of each epoch of a run that must end by ``deadline`` (a ``now()`` reading).

    Call ``start_epoch`` before an epoch's first step, ``over()`` after each step (True: stop the epoch),
    and ``validated(seconds)`` after each validation. ``fraction()`` is how far the epoch is through its
    share of time, for a learning-rate schedule that must end its cosine even when steps are cut."""

    deadline: float
    now: Callable[[], float] = time.monotonic
    qat_cost: float = QAT_STEP_COST
    validation_s: float = 0.0  # the last validation's measured seconds (none yet: 0, corrected after the first)
    epoch_started: float = field(default=math.nan)
    epoch_seconds: float = field(default=math.inf)

    def left(self) -> float:
        return self.deadline - self.now()

    def start_epoch(self, remaining_qat: Sequence[bool]) -> None:
        self.epoch_started = self.now()
        self.epoch_seconds = epoch_share(self.left(), remaining_qat, self.validation_s, self.qat_cost)

    def over(self) -> bool:
        """The epoch's share is spent (its first step is always taken: the caller asks after a step)."""
        return self.now() - self.epoch_started >= self.epoch_seconds

    def fraction(self) -> float:
        if self.epoch_seconds <= 0:
            return 1.0
        return min(1.0, max(0.0, (self.now() - self.epoch_started) / self.epoch_seconds))

    def validated(self, seconds: float) -> None:
        self.validation_s = max(0.0, float(seconds))

    def worth_validating(self, remaining_epochs: int, last_of_phase: bool) -> bool:
        """Validate this epoch? Always the last epoch of a phase (the float network's and the quantized
        network's scores); any other only while the validations still to come take at most half the time
        left. On a busy machine validating 100 images can cost more than an epoch's steps: then the time goes
        to training, and the best checkpoint is chosen among the epochs that were validated."""
        if last_of_phase or self.validation_s == 0.0:
            return True
        return self.validation_s * remaining_epochs <= 0.5 * self.left()


__all__ = ["QAT_STEP_COST", "Pacer", "epoch_share"]
