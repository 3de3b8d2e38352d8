"""Reading weight files that may come from anywhere: no pickled code runs, every key and shape is checked.

``torch.load(weights_only=True)`` refuses anything but tensors and plain containers, so a file from the
internet cannot execute code on load. ``check_state_dict`` then names the first wrong key or shape in one
line, before a single tensor is copied.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch

from posenas.errors import WeightsError


def read_weights_only(path: str | os.PathLike, what: str, error: type[WeightsError] = WeightsError) -> object:
    """The contents of ``path`` loaded with ``weights_only=True``, or ``error`` naming the file."""
    path = Path(path)
    if path.is_dir():
        raise error(f"{path}: is a folder, not a {what} file (a run's is RUN/best.pt)")
    if not path.is_file():
        raise error(f"{path}: {what} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise error(f"{path}: not a loadable weights-only checkpoint ({exc.__class__.__name__})") from None


def check_state_dict(
    expected: Mapping[str, torch.Tensor],
    state: Mapping[str, torch.Tensor],
    source: str,
    error: type[WeightsError] = WeightsError,
    *,
    allow_extra: bool = False,
    optional_suffix: str | None = "num_batches_tracked",
) -> None:
    """Raise ``error`` unless ``state`` has every key of ``expected`` (keys ending in ``optional_suffix``
    may be absent; None: none may) with the same shapes and only finite values; extra keys are an error
    unless ``allow_extra``."""
    optional = (lambda key: key.endswith(optional_suffix)) if optional_suffix else (lambda key: False)
    missing = [k for k in expected if k not in state and not optional(k)]
    if missing:
        raise error(f"{source}: {len(missing)} key(s) missing, first {missing[0]!r}")
    if not allow_extra:
        unexpected = [k for k in state if k not in expected]
        if unexpected:
            raise error(f"{source}: {len(unexpected)} unexpected key(s), first {unexpected[0]!r}")
    for key, tensor in expected.items():
        if key in state and tuple(state[key].shape) != tuple(tensor.shape):
            got, want = tuple(state[key].shape), tuple(tensor.shape)
            raise error(f"{source}: {key!r} has shape {got}, expected {want}")
    for key, value in state.items():
        # NaN or infinite weights would flow silently into AP, integer checkpoints and C tables.
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise error(f"{source}: {key!r} holds NaN or infinite values")
