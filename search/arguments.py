"""Checks of command-line values that several commands share, made before any work starts.

Each raises :class:`~posenas.errors.UsageError` (or ``OutputError``) naming the flag, so a bad value costs
the user one line, not minutes of work followed by a traceback.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from posenas.errors import OutputError, UsageError
from posenas.files import output_folder

OUTPUT_STRIDE = 8  # the networks' maps are at stride 8: inputs must be multiples of it


def at_least(flag: str, value: int | None, low: int = 1) -> None:
    """``value`` (when given) is an integer >= ``low``."""
    if value is not None and value < low:
        raise UsageError(f"{flag} must be >= {low}, got {value}")


def positive_finite(flag: str, value: float | None) -> None:
    """``value`` (when given) is a finite number > 0 (NaN and infinities are refused)."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise UsageError(f"{flag} must be a positive finite number, got {value}")


def input_size(flag: str, value: int) -> None:
    if value < OUTPUT_STRIDE or value % OUTPUT_STRIDE:
        raise UsageError(f"{flag} must be a positive multiple of {OUTPUT_STRIDE}, got {value}")


def device(name: str | None) -> str | None:
    """``name`` if torch can run on it here (``cpu``, ``cuda``, ``cuda:N`` with that GPU present)."""
    if name is None:
        return None
    import torch

    try:
        parsed = torch.device(name)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device {name!r}: not a device (use cpu or cuda)") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name}: no CUDA GPU is available here (use cpu)")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise UsageError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    elif parsed.type != "cpu":
        raise UsageError(f"--device {name}: only cpu and cuda are supported")
    return name


def output_file(path: str | os.PathLike, what: str = "output file") -> Path:
    """A file path to write: its folder is created (or refused in one line) and it is not a folder."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{what} {path}: is a folder")
    output_folder(path.parent, f"folder of {what}")
    return path
