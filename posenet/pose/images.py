"""A folder of plain images without annotations (e.g. the deployment camera's), letterboxed like COCO samples.

Used for distillation on a user's own images (the teacher's maps are the only targets) and for
``posenas predict --images``. The letterbox is the evaluation one (``transforms.letterbox_matrix``: the
longest side scaled to the input, image top-left, grey padding), so a network sees these images exactly
as it sees un-augmented COCO samples.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from posenas.errors import DataError
from posenas.posenet.pose.coco import check_image_size, read_image
from posenas.posenet.pose.transforms import letterbox_matrix, warp_image

IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})


def letterboxed(image: np.ndarray, input_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(the (S, S, 3) letterboxed image, the 2x3 matrix from the original to it)."""
    height, width = image.shape[:2]
    check_image_size(width, height, "image")
    matrix = letterbox_matrix(width, height, input_size)
    return warp_image(image, matrix, input_size), matrix


class ImageFolder:
    """The image files directly inside ``folder`` (sorted by name; other files ignored)."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise DataError(f"{self.folder}: image folder not found")
        self.paths: list[Path] = sorted(
            p for p in self.folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not self.paths:
            raise DataError(f"{self.folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in the folder")

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> np.ndarray:
        """Image ``index`` as (H, W, 3) uint8 RGB (a one-line DataError if it cannot be decoded or no network
        input can use it)."""
        image = read_image(self.paths[index])
        check_image_size(image.shape[1], image.shape[0], str(self.paths[index]))
        return image
