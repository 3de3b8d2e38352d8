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

from posenas.catalog import load_dataclass
from posenas.errors import UsageError


class QuantMode(str, enum.Enum):
    """Arithmetic regime of one ``HwConv2d`` (ai8x-training v1)."""

    FLOAT = "float"
    """Pre-QAT training: BN active, BN output / 4, non-wide outputs clamped to [-1, 127/128]."""
    QAT = "qat"
    """BN folded into the conv; weights, bias and activations fake-quantized (straight-through)."""
    SIMULATE = "simulate"
    """The chip's integer arithmetic: integer inputs in [-128, 127], integer checkpoint weights."""


SHIFT_RULES = ("mse", "quantile")
MAX_QAT_FACTOR = 10.0


@dataclass(frozen=True)
class LowBitRecipe:
    """How QAT treats a network with weights below 8 bits; chosen by the ablation in BENCHMARKS.md
    ("Low-bit QAT"). Layers at 8 bits always keep ai8x v1's arithmetic; ``enabled=False`` is ai8x v1 for
    every layer (today's ai8x-training).

    * ``bias_bits``: 0 (default) quantizes a low-bit layer's bias to the weights' bits, as ai8x v1 does
      ({-2, -1, 0, 1} weight steps at 2 bits); 8 keeps it at the 8 bits of the chip's bias memory, on the
      weights' grid (-128..127 steps; ai8x-synthesis reads it so and simulates it exactly). Measured: the
      wider bias gains nothing (tiny-hw at 2 bits, 3 seeds: 0.0294 against 0.0310; student-hw-mixed alike).
    * ``shift``: ``mse`` holds each low-bit layer's power-of-two shift at the value with the least weight
      quantization error, chosen at the switch and again before every QAT epoch; ``quantile`` is ai8x v1
      (``shift_quantile`` of |[w; b]|, recomputed every step).
    * ``float_distill``: in QAT, the share of the loss taken by the L2 to the float network's own maps (the
      network as it was at the switch), replacing the share of the study's teacher; 0 is off.
    * ``qat_factor``: a low-bit network's QAT phase is this many times the schedule's (rounded), after the
      schedule's float phase: more epochs in all, the float phase unchanged (so a network and its
      lower-bit versions share it). 1 keeps the schedule.
    * ``qat_lr``: the QAT learning rate of a low-bit network; 0 keeps the schedule's.
    """

    enabled: bool = True
    bias_bits: int = 0
    shift: str = "mse"
    shift_quantile: float = 1.0
    float_distill: float = 0.0
    qat_factor: float = 1.0
    qat_lr: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise UsageError(f"lowbit.enabled must be true or false, got {self.enabled!r}")
        if self.bias_bits not in (0, 8) or isinstance(self.bias_bits, bool):
            raise UsageError(f"lowbit.bias_bits must be 8 or 0 (the weights' bits), got {self.bias_bits!r}")
        if self.shift not in SHIFT_RULES:
            raise UsageError(f"lowbit.shift must be one of {', '.join(SHIFT_RULES)}, got {self.shift!r}")
        _check_number("lowbit.shift_quantile", self.shift_quantile, 0.0, 1.0, low_open=True)
        _check_number("lowbit.float_distill", self.float_distill, 0.0, 1.0)
        _check_number("lowbit.qat_factor", self.qat_factor, 1.0, MAX_QAT_FACTOR)
        _check_number("lowbit.qat_lr", self.qat_lr, 0.0, 1.0)

    @classmethod
    def from_value(cls, value: LowBitRecipe | dict[str, Any] | None) -> LowBitRecipe:
        """The recipe from itself, a mapping of its fields (a checkpoint's or a study file's), or None."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        return load_dataclass(cls, value, where="lowbit", error=UsageError)

    def applies_to(self, lowest_bits: int) -> bool:
        """Whether the recipe changes the training of a network whose lowest weight bits are these."""
        return self.enabled and lowest_bits < 8


def _check_number(name: str, value: Any, low: float, high: float, *, low_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (low < value if low_open else low <= value) and value <= high
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise UsageError(f"{name} must be a number in {interval}, got {value!r}")


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
    lowbit: LowBitRecipe = LowBitRecipe()

    def __post_init__(self) -> None:
        # a checkpoint's or a study's mapping becomes the recipe (the dataclass is frozen)
        object.__setattr__(self, "lowbit", LowBitRecipe.from_value(self.lowbit))
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

    # The QAT phase has one encoding, ``qat_start`` (the first QAT epoch, None: float only). Study files and
    # the command line give its length instead (``qat_epochs``: the last N epochs); these two convert.
    @property
    def qat_epochs(self) -> int:
        """The QAT phase's length in epochs (0: float only)."""
        return 0 if self.qat_start is None else self.epochs - self.qat_start

    @staticmethod
    def qat_start_for(epochs: int, qat_epochs: int) -> int | None:
        """``qat_start`` for a schedule of ``epochs`` whose last ``qat_epochs`` are QAT (0: None, float only)."""
        return epochs - qat_epochs if qat_epochs else None

    def phase_of(self, epoch: int) -> QuantMode:
        return QuantMode.QAT if self.qat_start is not None and epoch >= self.qat_start else QuantMode.FLOAT

    def for_lowest_bits(self, lowest_bits: int) -> TrainConfig:
        """The schedule a network whose lowest weight bits are ``lowest_bits`` trains with: this one, with the
        low-bit recipe's QAT length and learning rate where it applies (idempotent: a schedule already
        lengthened is marked by its epochs, so apply it to the study's or the user's schedule only)."""
        recipe = self.lowbit
        if not recipe.applies_to(lowest_bits) or self.qat_start is None:
            return self
        epochs = self.qat_start + max(1, round((self.epochs - self.qat_start) * recipe.qat_factor))
        return dataclasses.replace(self, epochs=epochs, qat_lr=recipe.qat_lr or self.qat_lr)


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
    lowbit: LowBitRecipe = LowBitRecipe()  # its bias bits and shift rule, in the QAT phase's low-bit layers

    def __post_init__(self) -> None:
        object.__setattr__(self, "lowbit", LowBitRecipe.from_value(self.lowbit))
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
