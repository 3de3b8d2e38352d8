"""Plain settings of networks and training, without torch: the arithmetic regimes and the schedule.

Kept apart from ``layers`` and ``train`` so that the command line can show defaults and choices
without importing torch.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass
from typing import Any

from posenas.errors import UsageError


class QuantMode(str, enum.Enum):
    """Arithmetic regime of one ``HwConv2d`` (ai8x-training v1)."""

    FLOAT = "float"
    """Pre-QAT training: BN active, BN output / 4, non-wide outputs clamped to [-1, 127/128]."""
    QAT = "qat"
    """BN folded into the conv; weights, bias and activations fake-quantized (straight-through)."""
    SIMULATE = "simulate"
    """The chip's integer arithmetic: integer inputs in [-128, 127], integer checkpoint weights."""


@dataclass(frozen=True)
class TrainConfig:
    """A training schedule. Epoch numbers are 0-based; ``qat_start`` None trains in float only.

    The defaults are the short schedule a search trial can afford on 2 CPU cores (tiny-hw: about 5
    minutes on the synthetic set): no augmentation, so samples and teacher maps come from caches, and
    small batches with a high learning rate, since the number of steps limits learning at this length
    (measured in BENCHMARKS.md). Long runs on COCO want ``augment=True`` and more epochs."""

    epochs: int = 20
    qat_start: int | None = 16
    batch_size: int = 16
    lr: float = 1e-2
    qat_lr: float = 1e-3
    weight_decay: float = 0.0
    alpha: float = 0.3
    seed: int = 0
    workers: int = 0
    augment: bool = False
    val_images: int | None = 200
    amp: bool = True
    train_images: int | None = None  # the first N training images only (short search trials)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise UsageError("epochs and batch_size must be >= 1")
        if self.qat_start is not None and not 0 <= self.qat_start < self.epochs:
            raise UsageError(f"qat_start must be in [0, {self.epochs - 1}] or None, got {self.qat_start}")
        if not 0.0 <= self.alpha <= 1.0:  # also refuses NaN
            raise UsageError(f"alpha must be in [0, 1], got {self.alpha}")
        for key in ("lr", "qat_lr"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value > 0):
                raise UsageError(f"{key} must be a positive finite number, got {value}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise UsageError(f"weight_decay must be a finite number >= 0, got {self.weight_decay}")
        for key in ("val_images", "train_images"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise UsageError(f"{key} must be >= 1 (or unset for all), got {value}")
        if self.workers < 0:
            raise UsageError(f"workers must be >= 0, got {self.workers}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def phase_of(self, epoch: int) -> QuantMode:
        return QuantMode.QAT if self.qat_start is not None and epoch >= self.qat_start else QuantMode.FLOAT



@dataclass(frozen=True)
class SupernetConfig:
    """How a weight-sharing supernet trains (``posenet.nets.supernet_train``): sandwich rule, in-place
    distillation, then a QAT phase with weight bits drawn per layer.

    Each step trains the largest network (the in-place teacher; 8-bit in QAT), the smallest, and
    ``random_subnets`` random networks the budget accepts, and steps once on their summed gradients. The
    largest learns from the targets (``alpha``) and the study's teacher (1 - alpha); the others learn from
    the targets (``alpha``) and a blend of the largest's maps (share ``inplace``) and the study's teacher.
    The last ``qat_epochs`` epochs are QAT."""

    epochs: int = 4
    qat_epochs: int = 1
    batch_size: int = 16
    lr: float = 1e-2
    qat_lr: float = 1e-3
    alpha: float = 0.7
    inplace: float = 0.5
    random_subnets: int = 2
    seed: int = 0
    train_images: int | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise UsageError("supernet: epochs and batch_size must be >= 1")
        if not 0 <= self.qat_epochs <= self.epochs:
            raise UsageError(f"supernet: qat_epochs must be in [0, {self.epochs}], got {self.qat_epochs}")
        if self.random_subnets < 0:
            raise UsageError(f"supernet: random_subnets must be >= 0, got {self.random_subnets}")
        for key in ("alpha", "inplace"):
            value = getattr(self, key)
            if not 0.0 <= value <= 1.0:
                raise UsageError(f"supernet: {key} must be in [0, 1], got {value}")
        for key in ("lr", "qat_lr"):
            value = getattr(self, key)
            if not (isinstance(value, (int, float)) and value > 0 and value < float("inf")):
                raise UsageError(f"supernet: {key} must be a positive number, got {value}")
        if self.train_images is not None and self.train_images < self.batch_size:
            raise UsageError(f"supernet: train_images must be >= batch_size ({self.batch_size})")

    @property
    def qat_start(self) -> int | None:
        return self.epochs - self.qat_epochs if self.qat_epochs else None

    def phase_of(self, epoch: int) -> QuantMode:
        start = self.qat_start
        return QuantMode.QAT if start is not None and epoch >= start else QuantMode.FLOAT

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
