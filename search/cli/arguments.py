"""Checks of command-line values that several commands share, made before any work starts.

Each raises :class:`~posenas.errors.UsageError` (or ``OutputError``) naming the flag, so a bad value costs
the user one line, not minutes of work followed by a traceback.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from posenas.errors import OutputError, UsageError
from posenas.files import output_folder
from posenas.search.cli import options

OUTPUT_STRIDE = 8  # the networks' maps are at stride 8: inputs must be multiples of it


def at_least(flag: str, value: int | None, low: int = 1) -> None:
    """``value`` (when given) is an integer >= ``low``."""
    if value is not None and value < low:
        raise UsageError(f"{flag} must be >= {low}, got {value}")


def positive_finite(flag: str, value: float | None) -> None:
    """``value`` (when given) is a finite number > 0 (NaN and infinities are refused)."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise UsageError(f"{flag} must be a positive finite number, got {value}")


def in_interval(flag: str, value: float | None, low: float, high: float, *, low_open: bool = False) -> None:
    """``value`` (when given) is a finite number in [low, high] (or (low, high] with ``low_open``)."""
    if value is None:
        return
    if not (math.isfinite(value) and (low < value if low_open else low <= value) and value <= high):
        raise UsageError(f"{flag} must be a number in {'(' if low_open else '['}{low:g}, {high:g}], got {value}")


# -- the low-bit QAT recipe (posenet.nets.config.LowBitRecipe): the same flags for train and search
LOWBIT_FLAGS = {  # recipe field -> flag
    "enabled": "--lowbit",
    "bias_bits": "--lowbit-bias-bits",
    "shift": "--lowbit-shift",
    "shift_quantile": "--shift-quantile",
    "float_distill": "--float-distill",
    "qat_factor": "--lowbit-qat-factor",
    "qat_lr": "--lowbit-qat-lr",
}


def add_lowbit_arguments(parser) -> None:
    """The recipe's flags; each defaults to None (the study's or the recipe's default)."""
    group = parser.add_argument_group("low-bit QAT recipe (networks with weights below 8 bits)")
    group.add_argument("--lowbit", choices=("on", "off"), help="the recipe on (default) or off (ai8x v1 QAT)")
    group.add_argument(
        "--lowbit-bias-bits",
        type=int,
        choices=(8, 0),
        help="a low-bit layer's bias: 0 = the weights' bits (default, as ai8x v1) or 8 bits",
    )
    group.add_argument(
        "--lowbit-shift",
        choices=("mse", "quantile"),
        help="a low-bit layer's shift: least quantization error (default) or ai8x v1's quantile",
    )
    group.add_argument(
        "--shift-quantile",
        type=options.Number(0, 1, low_open=True),
        metavar="Q",
        help="with --lowbit-shift quantile: the quantile of |w, b| in (0, 1] (ai8x default 1)",
    )
    group.add_argument(
        "--float-distill",
        type=options.Number(0, 1),
        metavar="F",
        help="share of the QAT loss spent on the float network's maps, in [0, 1]",
    )
    group.add_argument(
        "--lowbit-qat-factor",
        type=options.Number(1, 10),
        metavar="K",
        help="a low-bit network's QAT phase is K times the schedule's, after its float phase (K in [1, 10])",
    )
    group.add_argument(
        "--lowbit-qat-lr",
        type=options.Number(0, 1),
        metavar="LR",
        help="QAT learning rate of a low-bit network (0: the schedule's)",
    )


def lowbit_overrides(args) -> dict[str, object]:
    """The recipe fields the flags set (checked here, each naming its flag), for ``LowBitRecipe(**...)``."""
    in_interval("--shift-quantile", args.shift_quantile, 0.0, 1.0, low_open=True)
    in_interval("--float-distill", args.float_distill, 0.0, 1.0)
    in_interval("--lowbit-qat-factor", args.lowbit_qat_factor, 1.0, 10.0)
    in_interval("--lowbit-qat-lr", args.lowbit_qat_lr, 0.0, 1.0)
    values = {field: getattr(args, flag[2:].replace("-", "_")) for field, flag in LOWBIT_FLAGS.items()}
    if values["enabled"] is not None:
        values["enabled"] = values["enabled"] == "on"
    return {field: value for field, value in values.items() if value is not None}


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


# The person score (results.json's "score", Pose.coco_score) below which a candidate is not drawn. The decoder
# keeps every person it assembles (3+ keypoints, mean keypoint score >= 0.2), however weak; this threshold has
# the best person-detection F1 (OKS 0.5) of the real teacher on the project's 40 real COCO images, averaged over
# teacher inputs 128, 256 and 432 (benchmarks/bench_predict_threshold.py; BENCHMARKS.md, "predict's person-score
# threshold"). A tiny set: a direction, not a tuned constant.
DEFAULT_MIN_SCORE = 20.0


def check_split_flag(root: str, split: str) -> None:
    """The loader's missing-split error with the flag that picks a split the root has (library errors name no
    flags: a command without --split, e.g. train, gets the same line without it)."""
    from posenas.errors import DataError
    from posenas.posenet.pose.coco import SplitNotFound, check_split

    try:
        check_split(root, split)
    except SplitNotFound as exc:
        if not exc.available:
            raise
        pick = exc.available[0] if len(exc.available) == 1 else "NAME (one of those)"
        raise DataError(f"{exc}; pass --split {pick}") from None


def trial_study(study_name: str | None, storage_url: str | None) -> tuple[Any, str]:
    """``search.trials.load_study`` in the command line's words: ``--trial`` needs ``--study``, and a study
    database that is not where the default says suggests ``--storage``."""
    from posenas.errors import StudyError
    from posenas.search.storage import sqlite_path
    from posenas.search.trials import default_storage, load_study

    if not study_name:
        raise StudyError("--trial needs --study (the study name posenas search printed)")
    path = sqlite_path(storage_url or default_storage(study_name))
    if path is not None and not path.is_file():
        raise StudyError(f"no study database {path}; pass --storage (the study's URL, as posenas search printed it)")
    return load_study(study_name, storage_url)
