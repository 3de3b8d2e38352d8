"""OpenPose training targets at the network's output stride: 19 heatmaps, 38 PAFs and a loss mask.

Inputs are body keypoints already in network-input coordinates (``posenet.keypoints`` conventions).
The output cell (mx, my) stands for the input point (stride * (mx + 0.5), stride * (my + 0.5)), the
same point for heatmaps and PAFs, and the one the decoder maps peaks back to.

- Heatmap k: sum over people of exp(-d^2 / (2 sigma^2)), d in input pixels from the keypoint to the
  cell centre, values below 0.01 dropped, clipped to 1. Channel 18 is background = 1 - max(0..17).
- PAF of limb (a, b): the unit vector a -> b on cells whose centre lies within ``paf_thickness`` cells
  of the segment; where people overlap the vectors are averaged (OpenPose's rule).
- Mask: 0 on cells touched by an ignored region (crowds, unlabelled or too-small people), else 1.

Everything is vectorised over people, keypoints, limbs and cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from posenas.posenet.pose.keypoints import LIMBS, NUM_BODY_KEYPOINTS, NUM_HEATMAPS, NUM_PAFS

# Lightweight OpenPose trains with sigma 7 px at a 368 px input and stride 8. posenas scales that width
# with the input, but never below the reference's 7/8 of a cell: narrower Gaussians fall between the
# cell centres, so the maps no longer say where inside a cell a keypoint is. Measured on
# shared/data/coco_sample at 128 px (oracle, `posenas eval --oracle`): sigma 2.43 px (pure scaling)
# gives AP 0.133, sigma 7 px gives 0.724 (benchmarks/BENCHMARKS.md has the sweep).
REFERENCE_SIGMA, REFERENCE_INPUT, REFERENCE_STRIDE = 7.0, 368, 8
_MIN_VALUE_EXPONENT = np.log(100.0)  # Gaussian values below 0.01 are not drawn


@dataclass(frozen=True)
class TargetConfig:
    """How targets are drawn. ``sigma`` (input pixels) None: Lightweight OpenPose's 7 px at 368 scaled to
    the input, and at least 7/8 of the stride (7 px at 128).

    ``min_person_area`` (input pixels squared, of the person's segmentation area): smaller labelled
    people are too small to supervise at this resolution; they are masked out instead of drawn.
    """

    stride: int = 8
    sigma: float | None = None
    paf_thickness: float = 1.0
    min_person_area: float = 64.0

    def __post_init__(self) -> None:
        if self.stride < 1 or self.paf_thickness <= 0 or (self.sigma is not None and self.sigma <= 0):
            raise ValueError("stride, sigma and paf_thickness must be positive")

    def sigma_for(self, input_size: int) -> float:
        if self.sigma is not None:
            return self.sigma
        scaled = REFERENCE_SIGMA * input_size / REFERENCE_INPUT
        return max(scaled, REFERENCE_SIGMA / REFERENCE_STRIDE * self.stride)


def _cell_centres(out_h: int, out_w: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    xs = (np.arange(out_w, dtype=np.float32) + 0.5) * stride
    ys = (np.arange(out_h, dtype=np.float32) + 0.5) * stride
    return xs, ys


def _drawable(keypoints: np.ndarray, input_size: int) -> np.ndarray:
    """Labelled keypoints (flag > 0) that lie inside the input square: the ones that get targets."""
    x, y, v = keypoints[..., 0], keypoints[..., 1], keypoints[..., 2]
    return (v > 0) & (x >= 0) & (y >= 0) & (x < input_size) & (y < input_size)


def heatmap_targets(keypoints: np.ndarray, input_size: int, config: TargetConfig = TargetConfig()) -> np.ndarray:
    """(N, 18, 3) body keypoints in input coordinates -> (19, h, w) heatmaps, background last."""
    out = input_size // config.stride
    xs, ys = _cell_centres(out, out, config.stride)
    keypoints = np.asarray(keypoints, dtype=np.float32).reshape(-1, NUM_BODY_KEYPOINTS, 3)
    valid = _drawable(keypoints, input_size)
    two_sigma_sq = 2.0 * config.sigma_for(input_size) ** 2
    # Separable Gaussian: exp(-(dx^2 + dy^2)/2s^2) = exp(-dx^2/2s^2) * exp(-dy^2/2s^2); the 0.01 cut
    # needs the full exponent, so it is applied on the sum of the two.
    ex = (xs[None, None, :] - keypoints[..., 0:1]) ** 2 / two_sigma_sq  # (N, 18, w)
    ey = (ys[None, None, :] - keypoints[..., 1:2]) ** 2 / two_sigma_sq  # (N, 18, h)
    exponent = ey[..., :, None] + ex[..., None, :]  # (N, 18, h, w)
    gauss = np.where((exponent <= _MIN_VALUE_EXPONENT) & valid[..., None, None], np.exp(-exponent), 0.0)
    heatmaps = np.empty((NUM_HEATMAPS, out, out), dtype=np.float32)
    heatmaps[:NUM_BODY_KEYPOINTS] = np.minimum(gauss.sum(axis=0), 1.0)
    heatmaps[NUM_BODY_KEYPOINTS] = 1.0 - heatmaps[:NUM_BODY_KEYPOINTS].max(axis=0)
    return heatmaps


def paf_targets(keypoints: np.ndarray, input_size: int, config: TargetConfig = TargetConfig()) -> np.ndarray:
    """(N, 18, 3) body keypoints in input coordinates -> (38, h, w) part affinity fields."""
    out = input_size // config.stride
    xs, ys = _cell_centres(out, out, config.stride)
    keypoints = np.asarray(keypoints, dtype=np.float32).reshape(-1, NUM_BODY_KEYPOINTS, 3)
    valid = _drawable(keypoints, input_size)
    limb_a, limb_b = np.array(LIMBS).T
    start, end = keypoints[:, limb_a, :2], keypoints[:, limb_b, :2]  # (N, 19, 2), input pixels
    delta = end - start
    length = np.linalg.norm(delta, axis=-1)  # (N, 19)
    present = valid[:, limb_a] & valid[:, limb_b] & (length > 1e-6)
    unit = delta / np.where(length > 1e-6, length, 1.0)[..., None]
    # Offsets of every cell centre from the limb start, in cells: (N, 19, h, w) along and across the limb.
    dx = (xs[None, None, None, :] - start[..., 0, None, None]) / config.stride
    dy = (ys[None, None, :, None] - start[..., 1, None, None]) / config.stride
    along = dx * unit[..., 0, None, None] + dy * unit[..., 1, None, None]
    across = dx * unit[..., 1, None, None] - dy * unit[..., 0, None, None]
    # Distance from the cell centre to the segment (not the line): a capsule around the limb. Unlike a
    # strip that ends at the endpoints, it also supports limbs shorter than a cell (eye-ear at 128 px).
    beyond = np.clip(along, 0.0, None) - np.clip(along, None, (length / config.stride)[..., None, None])
    on_limb = (beyond**2 + across**2 <= config.paf_thickness**2) & present[..., None, None]
    count = on_limb.sum(axis=0)  # (19, h, w)
    weight = on_limb.astype(np.float32)
    vx = np.einsum("nlhw,nl->lhw", weight, unit[..., 0])
    vy = np.einsum("nlhw,nl->lhw", weight, unit[..., 1])
    divisor = np.maximum(count, 1)
    pafs = np.empty((NUM_PAFS, out, out), dtype=np.float32)
    pafs[0::2] = vx / divisor
    pafs[1::2] = vy / divisor
    return pafs


def downsample_mask(ignore: np.ndarray | None, input_size: int, stride: int = 8) -> np.ndarray:
    """An input-resolution ignore map (True = do not supervise) -> (h, w) loss mask, 0 where any pixel
    of the cell is ignored: a cell that may hold an unsupervised person must not be taught background."""
    out = input_size // stride
    if ignore is None:
        return np.ones((out, out), dtype=np.float32)
    cells = np.asarray(ignore, dtype=bool)[: out * stride, : out * stride].reshape(out, stride, out, stride)
    return (~cells.any(axis=(1, 3))).astype(np.float32)


def render_targets(
    keypoints: np.ndarray,
    input_size: int,
    config: TargetConfig = TargetConfig(),
    ignore: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Heatmaps (19, h, w), PAFs (38, h, w) and mask (h, w) for one input image."""
    if input_size % config.stride:
        raise ValueError(f"input size {input_size} is not a multiple of the stride {config.stride}")
    return (
        heatmap_targets(keypoints, input_size, config),
        paf_targets(keypoints, input_size, config),
        downsample_mask(ignore, input_size, config.stride),
    )
