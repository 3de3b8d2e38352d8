"""Run checkpoints: the dict ai8x-training writes (so its tools recognise the state_dict), plus posenas's
own section with the spec and the arithmetic the weights belong to.

ai8x-training keys: ``epoch``, ``state_dict``, ``arch``, ``optimizer_state_dict``, ``optimizer_type``,
``extras`` ({current_mAP, best_mAP, best_epoch}). ``optimizer_type`` is the optimizer's *name*, not the
pickled class, so that every posenas checkpoint loads with ``torch.load(weights_only=True)``.
Writes are atomic (temporary file, then rename): a crash never leaves half a checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from posenas.errors import CheckpointError, UsageError
from posenas.files import atomic_write_stream
from posenas.posenet.nets.config import LowBitRecipe
from posenas.posenet.nets.layers import QuantMode
from posenas.posenet.nets.model import PoseNet, build_model
from posenas.posenet.nets.weights import check_state_dict, read_weights_only
from posenas.space.spec import ArchSpec, SpecError

FORMAT_VERSION = 1


@dataclass
class RunCheckpoint:
    """What a run checkpoint holds, in memory."""

    spec: ArchSpec
    mode: QuantMode
    epoch: int
    state_dict: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any] | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    train_config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "state_dict": self.state_dict,
            "arch": self.spec.name.lower(),
            "optimizer_state_dict": self.optimizer_state or {},
            "optimizer_type": "Adam",
            "extras": dict(self.extras),
            "posenas": {
                "format": FORMAT_VERSION,
                "spec": self.spec.to_dict(),
                "mode": self.mode.value,
                "history": list(self.history),
                "train_config": dict(self.train_config),
            },
        }


def save_checkpoint(checkpoint: RunCheckpoint, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_stream(path, lambda stream: torch.save(checkpoint.to_dict(), stream))
    return path


def load_checkpoint(path: str | os.PathLike) -> RunCheckpoint:
    """A posenas run checkpoint, read without pickle and checked against its own spec."""
    path = Path(path)
    raw = read_weights_only(path, "checkpoint", CheckpointError)
    meta = raw.get("posenas") if isinstance(raw, dict) else None
    if not isinstance(meta, dict) or "spec" not in meta or not isinstance(raw.get("state_dict"), dict):
        raise CheckpointError(f"{path}: not a posenas run checkpoint (no 'posenas' section with a spec)")
    try:
        spec = ArchSpec.from_dict(meta["spec"])
        mode = QuantMode(meta.get("mode", "float"))
    except (SpecError, ValueError) as exc:
        raise CheckpointError(f"{path}: bad spec or mode ({exc})") from None
    checkpoint = RunCheckpoint(
        spec=spec,
        mode=mode,
        epoch=int(raw.get("epoch", 0)),
        state_dict=raw["state_dict"],
        optimizer_state=raw.get("optimizer_state_dict") or None,
        extras=dict(raw.get("extras", {})),
        history=list(meta.get("history", [])),
        train_config=dict(meta.get("train_config", {})),
    )
    model_for(checkpoint, str(path))  # validates keys and shapes now, not at first use
    return checkpoint


def recipe_of(checkpoint: RunCheckpoint) -> LowBitRecipe:
    """The low-bit recipe the checkpoint's QAT layers were made with: its training's, and ai8x v1 (disabled)
    for a checkpoint without one (made before the recipe existed, or not by posenas's training)."""
    try:
        return LowBitRecipe.from_value(checkpoint.train_config.get("lowbit", {"enabled": False}))
    except UsageError as exc:
        raise CheckpointError(f"checkpoint: {exc}") from None


def model_for(checkpoint: RunCheckpoint, source: str = "checkpoint") -> PoseNet:
    """The model of ``checkpoint`` with its weights, in the checkpoint's arithmetic (float or QAT)."""
    model = build_model(checkpoint.spec)
    if checkpoint.mode is not QuantMode.FLOAT:
        model.start_qat(recipe_of(checkpoint))
    check_state_dict(model.state_dict(), checkpoint.state_dict, source, CheckpointError, optional_suffix=None)
    model.load_state_dict(checkpoint.state_dict)
    return model


def model_in_mode(checkpoint: RunCheckpoint, mode: QuantMode, source: str = "checkpoint") -> PoseNet:
    """The model of ``checkpoint`` in the arithmetic ``mode``: a float checkpoint asked for QAT or simulate
    is quantized post-training; a QAT checkpoint cannot go back to float (its batch-norm is folded)."""
    model = model_for(checkpoint, source)
    if mode is QuantMode.FLOAT and model.mode is not QuantMode.FLOAT:
        raise CheckpointError(
            f"{source}: holds QAT weights (batch-norm folded); float needs a float-phase "
            "checkpoint such as RUN/best-float.pt"
        )
    if mode is not QuantMode.FLOAT and model.mode is QuantMode.FLOAT:
        model.start_qat(recipe_of(checkpoint))  # post-training quantization of a float checkpoint
    if mode is QuantMode.SIMULATE:
        model.to_simulate()
    return model
