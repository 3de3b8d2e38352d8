"""A COCO 2017 person-keypoints root as network samples (image + OpenPose targets), through pycocotools.

Real COCO and posenas's synthetic people share this loader: a root holds
``annotations/person_keypoints_{split}2017.json`` and ``{split}2017/*.jpg``.

Without augmentation a sample is the seeds' preprocessing: the longest side scaled to the input size,
the image top-left, grey 128 padding bottom/right. With an ``Augmentation`` it is one random
scale/rotate/shift/flip warp. Either way the sample carries the 2x3 matrix from the original image to the
input, which is all the evaluator needs to map decoded poses back.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from posenas.errors import DataError
from posenas.posenet.pose.keypoints import FLIP_COCO, NUM_COCO_KEYPOINTS, coco_to_body
from posenas.posenet.pose.targets import TargetConfig, render_targets
from posenas.posenet.pose.transforms import (
    Augmentation,
    augmentation_matrix,
    letterbox_matrix,
    transform_points,
    warp_image,
)


class PoseSample(NamedTuple):
    """One network sample. ``image`` is (S, S, 3) uint8 RGB; maps are float32 at the output stride."""

    image: np.ndarray
    heatmaps: np.ndarray
    pafs: np.ndarray
    mask: np.ndarray
    image_id: int
    matrix: np.ndarray  # original -> input, 2x3


@dataclass(frozen=True)
class PersonArrays:
    """The annotated people of one image, as arrays in original-image coordinates."""

    keypoints: np.ndarray  # (N, 17, 3) COCO order
    areas: np.ndarray  # (N,)
    annotations: tuple[dict, ...]  # the raw records (segmentation, iscrowd, num_keypoints)


def annotation_path(root: str | os.PathLike, split: str) -> Path:
    return Path(root) / "annotations" / f"person_keypoints_{split}2017.json"


def image_dir(root: str | os.PathLike, split: str) -> Path:
    return Path(root) / f"{split}2017"


def available_splits(root: str | os.PathLike) -> list[str]:
    """The splits ``root`` has annotations for (``annotations/person_keypoints_<split>2017.json``), sorted."""
    folder = Path(root) / "annotations"
    if not folder.is_dir():
        return []
    prefix, suffix = "person_keypoints_", "2017.json"
    names = [p.name for p in folder.iterdir() if p.is_file()]
    return sorted(
        n[len(prefix) : -len(suffix)]
        for n in names
        if n.startswith(prefix) and n.endswith(suffix) and len(n) > len(prefix + suffix)
    )


class SplitNotFound(DataError):
    """A root without the asked split; ``available`` names those it has, so that a caller can suggest one."""

    def __init__(self, root: str | os.PathLike, split: str, available: list[str]) -> None:
        self.root, self.split, self.available = Path(root), split, available
        path = annotation_path(root, split)
        if available:
            # The one mistake this catches most is a train-only root (a small real set) read as val.
            super().__init__(
                f"{root}: no {split} split ({path.relative_to(root)}); this root has: " + ", ".join(available)
            )
        else:
            super().__init__(
                f"{path}: annotation file not found ({root} has no annotations/person_keypoints_*2017.json)"
            )


def check_split(root: str | os.PathLike, split: str) -> None:
    """Raise ``SplitNotFound`` (one line, naming the splits the root has) when ``root`` lacks ``split``."""
    if not annotation_path(root, split).exists():  # one that exists but is unreadable: load_coco says why
        raise SplitNotFound(root, split, available_splits(root))


def load_coco(path: str | os.PathLike) -> COCO:
    """pycocotools' COCO over a person-keypoints file, with one-line errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found")
    try:
        with path.open("rb") as handle:
            dataset = json.load(handle)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable JSON annotation file ({exc.__class__.__name__})") from None
    if not isinstance(dataset, dict) or not isinstance(dataset.get("images"), list):
        raise DataError(f"{path}: not a COCO annotation file (no 'images' list)")
    annotations = dataset.get("annotations")
    if not isinstance(annotations, list) or any("keypoints" not in a for a in annotations):
        raise DataError(f"{path}: annotations without person keypoints (not a person_keypoints file)")
    if any(not isinstance(a["keypoints"], list) or len(a["keypoints"]) != 3 * NUM_COCO_KEYPOINTS for a in annotations):
        raise DataError(f"{path}: every annotation needs {3 * NUM_COCO_KEYPOINTS} keypoint numbers")
    _check_values(path, dataset["images"], annotations)
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        coco.createIndex()
    return coco


class CocoRoot(os.PathLike):
    """A COCO root whose split annotations are loaded (and checked) once, on first use, and shared by every
    ``CocoPoseDataset`` made from it. A study makes a dozen datasets of one root (the input check, the
    teacher, the supernet, its scorer, each trained network), and a file of COCO 2017's training counts
    takes 7 s and 1.2 GB to load (benchmarks/bench_annotations.py). It stands for its path wherever one is
    taken (``Path(root)``, ``os.fspath``, ``str``). The files are read once: a root edited meanwhile is seen
    by a new ``CocoRoot``."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._splits: dict[str, COCO] = {}

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"CocoRoot({str(self.path)!r}, loaded={sorted(self._splits)})"

    def annotations(self, split: str) -> COCO:
        """The split's annotation index; ``SplitNotFound`` or a one-line DataError when it cannot be used."""
        if split not in self._splits:
            check_split(self.path, split)
            self._splits[split] = load_coco(annotation_path(self.path, split))
        return self._splits[split]


def coco_root(root: str | os.PathLike) -> CocoRoot:
    """``root`` itself when it is a ``CocoRoot`` (its loaded splits shared), else a new one over the path."""
    return root if isinstance(root, CocoRoot) else CocoRoot(root)


MAX_SIDE = 16384  # pixels: larger photos are not what a 128x128 network is fed (and cost GBs to decode)
MAX_ASPECT = 16  # longest side / shortest: beyond it a letterboxed image is a few rows of content in padding


def check_image_size(width: int, height: int, where: str) -> None:
    """DataError naming ``where`` for an image no network input can use: over ``MAX_SIDE`` pixels on a side,
    or so elongated that letterboxing leaves it almost all padding."""
    if max(width, height) > MAX_SIDE:
        raise DataError(f"{where}: {width} x {height} pixels; at most {MAX_SIDE} on a side")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise DataError(
            f"{where}: {width} x {height} pixels, more than {MAX_ASPECT} times as long as it is wide: "
            "letterboxed, it would be almost all padding"
        )


def _check_values(path: Path, images: list, annotations: list) -> None:
    """Impossible values fail here, naming the record, rather than as NaN targets or a crash mid-epoch."""
    for image in images:
        if not isinstance(image, dict) or "id" not in image or "file_name" not in image:
            raise DataError(f"{path}: every image needs an id and a file_name")
        for key in ("width", "height"):
            value = image.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DataError(f"{path}: image {image['id']} has {key} {value!r}; it must be a positive integer")
        check_image_size(image["width"], image["height"], f"{path}: image {image['id']}")
    if annotations:
        try:
            keypoints = np.asarray([a["keypoints"] for a in annotations], dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError(f"{path}: keypoints must be numbers") from None
        bad = np.flatnonzero(~np.isfinite(keypoints).all(axis=1))
        if bad.size:
            raise DataError(f"{path}: annotation {annotations[bad[0]].get('id')} has NaN or infinite keypoints")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB, or a one-line DataError naming the file."""
    data = np.fromfile(str(path), dtype=np.uint8) if os.path.isfile(path) else None
    if data is None:
        raise DataError(f"{path}: image file not found")
    image = _decode_quietly(data) if data.size else None
    if image is None:
        raise DataError(f"{path}: unreadable or corrupt image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _decode_quietly(data: np.ndarray) -> np.ndarray | None:
    """cv2.imdecode with what the codecs print silenced for the call: a corrupt file is reported once, as the
    caller's DataError. OpenCV's logger has a level; libpng and libjpeg write to file descriptor 2 themselves
    ("libpng error: IDAT: CRC error"), so fd 2 points at /dev/null while they run (under a lock: two threads
    swapping it at once could leave it pointing there)."""
    with _QUIET_DECODE, open(os.devnull, "wb") as null:
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(null.fileno(), 2)
            return cv2.imdecode(data, cv2.IMREAD_COLOR)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            cv2.utils.logging.setLogLevel(level)


_QUIET_DECODE = threading.Lock()


class CocoPoseDataset:
    """Person-keypoint images of one split as ``PoseSample``s (a map-style dataset for torch loaders).

    ``people_only`` keeps only images with at least one labelled, non-crowd person (the training set);
    evaluation keeps every image, as COCOeval scores false positives on empty images too. Datasets made
    from one ``CocoRoot`` share its loaded annotations; from a path, each loads its own.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "val",
        *,
        input_size: int = 128,
        targets: TargetConfig = TargetConfig(),
        augmentation: Augmentation | None = None,
        people_only: bool = False,
        seed: int = 0,
        limit: int | None = None,
    ) -> None:
        self.root, self.split, self.input_size = Path(root), split, input_size
        self.targets, self.augmentation, self.seed = targets, augmentation, seed
        self.epoch = 0
        self.coco = coco_root(root).annotations(split)
        ids = sorted(self.coco.getImgIds())
        if people_only:
            ids = [i for i in ids if any(a["num_keypoints"] > 0 and not a["iscrowd"] for a in self._anns(i))]
        self.image_ids: list[int] = ids[:limit] if limit is not None else ids
        if not self.image_ids:
            what = "no images with people" if people_only else "no images"
            raise DataError(f"{annotation_path(root, split)}: the {split} split has {what}")
        self._check_images_exist()

    def _anns(self, image_id: int) -> list[dict]:
        return self.coco.imgToAnns.get(image_id, [])

    def _check_images_exist(self) -> None:
        folder = image_dir(self.root, self.split)
        if not folder.is_dir():
            raise DataError(f"{folder}: image folder not found")
        present = set(os.listdir(folder))
        for image_id in self.image_ids:
            name = self.coco.imgs[image_id]["file_name"]
            if name not in present:
                raise DataError(f"{folder / name}: image listed in {annotation_path(self.root, self.split)} is absent")

    def __len__(self) -> int:
        return len(self.image_ids)

    def set_epoch(self, epoch: int) -> None:
        """Augmentations depend on (seed, epoch, index): reproducible, and different every epoch."""
        self.epoch = epoch

    def image_path(self, image_id: int) -> Path:
        return image_dir(self.root, self.split) / self.coco.imgs[image_id]["file_name"]

    def load_image(self, image_id: int) -> np.ndarray:
        return read_image(self.image_path(image_id))

    def people(self, image_id: int) -> PersonArrays:
        anns = tuple(self._anns(image_id))
        keypoints = np.array([a["keypoints"] for a in anns], dtype=np.float32).reshape(-1, NUM_COCO_KEYPOINTS, 3)
        areas = np.array([float(a.get("area", 0.0)) for a in anns], dtype=np.float32)
        return PersonArrays(keypoints, areas, anns)

    def __getitem__(self, index: int) -> PoseSample:
        image_id = self.image_ids[index]
        image = self.load_image(image_id)
        height, width = image.shape[:2]
        flipped = False
        if self.augmentation is None:
            matrix = letterbox_matrix(width, height, self.input_size)
        else:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            matrix, flipped = augmentation_matrix(width, height, self.input_size, self.augmentation, rng)
        return self.sample(image, image_id, matrix, flipped)

    def sample(self, image: np.ndarray, image_id: int, matrix: np.ndarray, flipped: bool = False) -> PoseSample:
        """The sample of ``image`` (original, RGB) seen through ``matrix``."""
        warped = warp_image(image, matrix, self.input_size)
        keypoints, ignore = self.input_people(image_id, matrix, flipped, image.shape[:2])
        heatmaps, pafs, mask = render_targets(keypoints, self.input_size, self.targets, ignore)
        return PoseSample(warped, heatmaps, pafs, mask, image_id, matrix.astype(np.float32))

    def letterboxed_people(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        """(matrix, body keypoints in input coordinates) of ``image_id`` under the evaluation letterbox;
        reads only the annotations, not the image."""
        info = self.coco.imgs[image_id]
        matrix = letterbox_matrix(info["width"], info["height"], self.input_size)
        return matrix, self.input_people(image_id, matrix, False, (info["height"], info["width"]))[0]

    def input_people(
        self, image_id: int, matrix: np.ndarray, flipped: bool, image_hw: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Supervised people as (N, 18, 3) body keypoints in input coordinates, and the ignore map.

        Crowds, people without labelled keypoints and people below ``min_person_area`` after the warp
        go to the ignore map (their pixels are masked out of the loss) instead of the targets.
        """
        people = self.people(image_id)
        scale_sq = abs(np.linalg.det(matrix[:, :2]))
        num_keypoints = np.array([a["num_keypoints"] for a in people.annotations], dtype=np.int64)
        crowd = np.array([bool(a["iscrowd"]) for a in people.annotations], dtype=bool)
        supervised = ~crowd & (num_keypoints > 0) & (people.areas * scale_sq >= self.targets.min_person_area)
        coco = people.keypoints[supervised].copy()
        coco[..., :2] = transform_points(matrix, coco[..., :2])
        if flipped:
            coco = coco[:, FLIP_COCO]
        ignored = [a for a, keep in zip(people.annotations, supervised) if not keep]
        return coco_to_body(coco), self._ignore_map(ignored, matrix, image_hw)

    def _ignore_map(self, annotations: list[dict], matrix: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray | None:
        if not annotations:
            return None
        height, width = image_hw
        ignore = np.zeros((self.input_size, self.input_size), dtype=np.uint8)
        for ann in annotations:
            segmentation = ann.get("segmentation")
            # fillPoly works on pixel indices (centres at integers): continuous - 0.5, 4 fractional bits.
            if isinstance(segmentation, list) and segmentation:  # polygons: transform and fill at input size
                polygons = [
                    np.round((transform_points(matrix, np.reshape(p, (-1, 2))) - 0.5) * 16).astype(np.int32)
                    for p in segmentation
                    if len(p) >= 6
                ]
                cv2.fillPoly(ignore, polygons, 1, lineType=cv2.LINE_8, shift=4)
            elif isinstance(segmentation, dict):  # RLE (crowds): decode at the original size, then warp
                rle = segmentation
                if isinstance(rle.get("counts"), list):
                    rle = mask_utils.frPyObjects(rle, height, width)
                full = mask_utils.decode(rle)
                ignore |= warp_image(full, matrix, self.input_size, border=0, nearest=True)
            elif "bbox" in ann:  # no segmentation: the box
                x, y, w, h = ann["bbox"]
                corners = transform_points(matrix, np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]]))
                cv2.fillPoly(ignore, [np.round((corners - 0.5) * 16).astype(np.int32)], 1, shift=4)
        return ignore.astype(bool)
