"""Geometry between an original image and the network input: letterboxing and training augmentation.

Every mapping is one 2x3 affine matrix in continuous pixel coordinates (see ``posenet.keypoints``),
``input_xy = A @ original_xy + t``. One matrix moves the image (one warp), the keypoints, the crowd
masks, and, inverted, the decoded poses back to the original image, so the four can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

GREY = 128  # pad colour of the seeds' preprocessing


@dataclass(frozen=True)
class Augmentation:
    """Random training augmentation around the letterbox fit.

    ``scale`` multiplies the letterbox scale (above 1 the image is larger than the input and the shift
    chooses the crop); ``rotation`` is the largest rotation in degrees; ``shift`` moves the image centre
    by up to this fraction of the input size on each axis; ``flip`` is the probability of a horizontal
    mirror (which also swaps left and right keypoints).
    """

    flip: float = 0.5
    scale: tuple[float, float] = (0.75, 1.5)
    rotation: float = 30.0
    shift: float = 0.25

    def __post_init__(self) -> None:
        if not 0.0 <= self.flip <= 1.0:
            raise ValueError(f"flip probability must be in [0, 1], got {self.flip}")
        low, high = self.scale
        if not 0.0 < low <= high:
            raise ValueError(f"scale range must satisfy 0 < low <= high, got {self.scale}")
        if self.rotation < 0 or self.shift < 0:
            raise ValueError("rotation and shift must be >= 0")


def letterbox_matrix(width: int, height: int, input_size: int) -> np.ndarray:
    """Scale the longest side to ``input_size``; the image sits top-left, padding goes bottom/right."""
    s = input_size / max(width, height)
    return np.array([[s, 0.0, 0.0], [0.0, s, 0.0]], dtype=np.float64)


def augmentation_matrix(
    width: int, height: int, input_size: int, augmentation: Augmentation, rng: np.random.Generator
) -> tuple[np.ndarray, bool]:
    """A random (matrix, flipped) for one training sample: scale, rotate, shift (crop), maybe mirror."""
    s = input_size / max(width, height) * rng.uniform(*augmentation.scale)
    angle = np.deg2rad(rng.uniform(-augmentation.rotation, augmentation.rotation))
    centre = np.array([input_size / 2, input_size / 2]) + rng.uniform(-1, 1, size=2) * augmentation.shift * input_size
    rotate_scale = s * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    translation = centre - rotate_scale @ np.array([width / 2, height / 2])
    matrix = np.hstack([rotate_scale, translation[:, None]])
    flipped = bool(rng.random() < augmentation.flip)
    if flipped:  # x -> input_size - x, applied after the rest
        matrix = np.array([[-1.0, 0.0, input_size], [0.0, 1.0, 0.0]]) @ np.vstack([matrix, [0.0, 0.0, 1.0]])
    return matrix, flipped


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to points of shape (..., 2)."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def invert(matrix: np.ndarray) -> np.ndarray:
    """The inverse 2x3 affine matrix (input -> original)."""
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))


def matrix_scale(matrix: np.ndarray) -> float:
    """The isotropic scale of a similarity transform (sqrt of |det A|)."""
    return float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))


def _pixel_matrix(matrix: np.ndarray) -> np.ndarray:
    """A continuous-coordinate matrix as OpenCV's pixel-index matrix (pixel centres at integers)."""
    a, t = matrix[:, :2], matrix[:, 2]
    return np.hstack([a, (t + a.sum(axis=1) * 0.5 - 0.5)[:, None]])


def warp_image(
    image: np.ndarray,
    matrix: np.ndarray,
    input_size: int,
    *,
    border: int | float = GREY,
    nearest: bool = False,
) -> np.ndarray:
    """Warp ``image`` into an ``input_size`` square through ``matrix``.

    Large reductions are first done by an area resize, because a bilinear warp that skips most source
    pixels aliases (COCO's 640 px images become 128 px). ``nearest`` is for label masks.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    scale = matrix_scale(matrix)
    if scale < 0.5 and not nearest:
        height, width = image.shape[:2]
        small_w, small_h = max(1, round(width * scale)), max(1, round(height * scale))
        image = cv2.resize(image, (small_w, small_h), interpolation=cv2.INTER_AREA)
        shrink = np.array([[small_w / width, 0.0, 0.0], [0.0, small_h / height, 0.0]])
        matrix = matrix @ np.vstack([invert(shrink), [0.0, 0.0, 1.0]])
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    channels = 1 if image.ndim == 2 else image.shape[2]
    value = (border,) * channels if channels > 1 else border
    return cv2.warpAffine(
        image,
        _pixel_matrix(matrix),
        (input_size, input_size),
        flags=flags,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=value,
    )
