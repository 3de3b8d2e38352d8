"""Pictures a person can look at: skeletons over images, ground truth next to predictions, in one sheet."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from posenas.posenet.pose.keypoints import COCO_SKELETON, NUM_COCO_KEYPOINTS

# Distinct colours for people (RGB), cycled.
PERSON_COLOURS: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
)


def draw_people(image: np.ndarray, people: np.ndarray, thickness: int = 2) -> np.ndarray:
    """A copy of ``image`` (RGB) with every person's COCO skeleton.

    ``people`` is (N, 17, 3) in the image's coordinates; points with flag 0 are not drawn, flag 1
    (labelled, hidden) as hollow circles, flag 2 (or any positive score) as filled ones.
    """
    canvas = np.ascontiguousarray(image.copy())
    people = np.asarray(people, dtype=np.float64).reshape(-1, NUM_COCO_KEYPOINTS, 3)
    radius = max(2, thickness + 1)
    for n, person in enumerate(people):
        colour = PERSON_COLOURS[n % len(PERSON_COLOURS)]
        shown = person[:, 2] > 0
        points = np.round(person[:, :2] - 0.5).astype(np.int32)  # continuous -> pixel index
        for a, b in COCO_SKELETON:
            if shown[a - 1] and shown[b - 1]:
                cv2.line(canvas, tuple(points[a - 1]), tuple(points[b - 1]), colour, thickness, cv2.LINE_AA)
        for k in np.flatnonzero(shown):
            hidden = person[k, 2] == 1
            cv2.circle(canvas, tuple(points[k]), radius, colour, 1 if hidden else -1, cv2.LINE_AA)
    return canvas


def fit_height(image: np.ndarray, height: int) -> tuple[np.ndarray, float]:
    """``image`` scaled to ``height`` rows, and the scale used (to scale keypoints alike)."""
    scale = height / image.shape[0]
    width = max(1, round(image.shape[1] * scale))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA), scale


def label(image: np.ndarray, text: str) -> np.ndarray:
    """``image`` with a caption bar on top."""
    bar = np.full((18, image.shape[1], 3), 32, dtype=np.uint8)
    cv2.putText(bar, text, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return np.vstack([bar, image])


def contact_sheet(tiles: Sequence[np.ndarray], columns: int, gap: int = 4) -> np.ndarray:
    """Tiles (RGB, any sizes) in a grid on a dark background."""
    if not tiles:
        raise ValueError("nothing to draw")
    columns = max(1, min(columns, len(tiles)))
    rows = [tiles[i : i + columns] for i in range(0, len(tiles), columns)]
    cell_h = max(t.shape[0] for t in tiles)
    cell_w = max(t.shape[1] for t in tiles)
    sheet = np.full((len(rows) * (cell_h + gap) + gap, columns * (cell_w + gap) + gap, 3), 16, dtype=np.uint8)
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            y, x = gap + r * (cell_h + gap), gap + c * (cell_w + gap)
            sheet[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
    return sheet


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write an RGB image as PNG, creating the folder; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"{path}: could not write the image")
    return path
