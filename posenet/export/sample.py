"""The sample input of an export and the outputs the chip must produce for it.

ai8x-synthesis wants the sample as a NumPy int64 (C, H, W) array in [-128, 127] (docs/max78000.md
8.3): the network input after posenas' host-side steps (letterbox, ai8x normalisation, data folding).
The expected outputs are both heads' raw 32-bit accumulators from posenas' SIMULATE mode.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from posenas.posenet.nets.layers import quantize_input
from posenas.posenet.nets.model import PoseNet
from posenas.posenet.pose.coco import read_image
from posenas.posenet.pose.synth import render_image
from posenas.posenet.pose.transforms import letterbox_matrix, warp_image
from posenas.space.spec import ArchSpec

SAMPLE_SEED = 0  # the built-in sample: synthetic validation image 0 of seed 0


def letterboxed_image(image: np.ndarray, input_size: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (S, S, 3) uint8, as evaluation feeds the network."""
    height, width = image.shape[:2]
    return warp_image(image, letterbox_matrix(width, height, input_size), input_size)


def default_sample_image(input_size: int) -> np.ndarray:
    """A synthetic image with people, letterboxed to the network's input size."""
    return letterboxed_image(render_image(SAMPLE_SEED, "val", 0).image, input_size)


def sample_input(spec: ArchSpec, image_path: str | None = None) -> np.ndarray:
    """The network input for an image file (or the built-in synthetic image): int64 (C, H, W), after
    ai8x normalisation and the spec's data folding."""
    if image_path is None:
        image = default_sample_image(spec.input_size)
    else:
        image = letterboxed_image(read_image(image_path), spec.input_size)
    return network_input(image, spec)


def network_input(letterboxed: np.ndarray, spec: ArchSpec) -> np.ndarray:
    x = torch.from_numpy(letterboxed).permute(2, 0, 1)[None].to(torch.float32) / 255.0
    x_int = quantize_input(x)
    if spec.fold > 1:
        x_int = F.pixel_unshuffle(x_int.to(torch.float64), spec.fold).to(torch.int64)
    return x_int[0].numpy()


def random_input(spec: ArchSpec, seed: int) -> np.ndarray:
    """Uniform random integers in [-128, 127] of the network input's shape (for arithmetic tests)."""
    side = spec.input_size // spec.fold
    channels = spec.in_channels * spec.fold**2
    return np.random.default_rng(seed).integers(-128, 128, size=(channels, side, side), dtype=np.int64)


def simulate(model: PoseNet, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both heads' 32-bit accumulators, int64 (C, h, w), for one (C, H, W) integer input.

    The input is fed as it reaches the chip: data folding already applied, so the model's own folding
    is bypassed by calling the layers directly."""
    if x.dtype.kind not in "iu" or x.min() < -128 or x.max() > 127:
        raise ValueError("a sample input holds integers in [-128, 127]")
    with torch.no_grad():
        heatmaps, pafs = model.forward_folded(torch.from_numpy(x)[None].to(torch.float64))
    return heatmaps[0].to(torch.int64).numpy(), pafs[0].to(torch.int64).numpy()
