"""COCO keypoint evaluation: results in COCO's json form, scored by pycocotools' COCOeval (OKS).

Kept apart from the data and the decoder, as pycocotools keeps ground truth, results and evaluation
apart: ``*_results`` functions make result lists, ``evaluate_results`` scores any of them.

- ``ground_truth_results``: the annotations themselves as detections (must score AP 1).
- ``oracle_results``: targets rendered from the ground truth at the network's resolution, decoded:
  the ceiling that the output stride, the input size and the decoder allow.
- ``prediction_results``: any predictor of (heatmaps, PAFs) for a batch of input images.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from posenas.errors import DataError
from posenas.posenet.pose.coco import CocoPoseDataset
from posenas.posenet.pose.decode import DecodeConfig, Pose, decode
from posenas.posenet.pose.keypoints import NUM_COCO_KEYPOINTS, body_to_coco
from posenas.posenet.pose.targets import heatmap_targets, paf_targets
from posenas.posenet.pose.transforms import invert, letterbox_matrix, transform_points, warp_image

PERSON_CATEGORY = 1

# (images (B, S, S, 3) uint8 RGB) -> (heatmaps (B, 19, h, w), pafs (B, 38, h, w)) as float32 arrays.
Predictor = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class KeypointMetrics:
    """COCOeval's keypoint summary (OKS, maxDets 20): AP over OKS 0.50:0.95 and its variants."""

    ap: float
    ap50: float
    ap75: float
    ap_medium: float
    ap_large: float
    ar: float
    ar50: float
    ar75: float
    ar_medium: float
    ar_large: float
    images: int
    detections: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def poses_to_results(poses: Iterable[Pose], matrix: np.ndarray, image_id: int) -> list[dict]:
    """Decoded poses (input coordinates) -> COCO result records in original-image coordinates."""
    back = invert(matrix)
    results = []
    for pose in poses:
        coco = body_to_coco(pose.keypoints)  # (17, 3): x, y, score
        found = coco[:, 2] > 0
        xy = np.where(found[:, None], transform_points(back, coco[:, :2]), 0.0)
        keypoints = np.concatenate([xy, found[:, None].astype(np.float64)], axis=1)
        results.append(
            {
                "image_id": int(image_id),
                "category_id": PERSON_CATEGORY,
                "keypoints": [round(float(v), 2) for v in keypoints.ravel()],
                "score": float(pose.coco_score),
            }
        )
    return results


def ground_truth_results(coco: COCO, image_ids: Iterable[int]) -> list[dict]:
    """Every labelled, non-crowd person of ``image_ids`` as a detection with score 1."""
    results = []
    for image_id in image_ids:
        for ann in coco.imgToAnns.get(image_id, []):
            if ann["num_keypoints"] > 0 and not ann["iscrowd"]:
                results.append(
                    {
                        "image_id": int(image_id),
                        "category_id": PERSON_CATEGORY,
                        "keypoints": list(ann["keypoints"]),
                        "score": 1.0,
                    }
                )
    return results


def _letterboxed(dataset: CocoPoseDataset) -> Iterator[tuple[int, np.ndarray]]:
    for image_id in dataset.image_ids:
        info = dataset.coco.imgs[image_id]
        yield image_id, letterbox_matrix(info["width"], info["height"], dataset.input_size)


def oracle_results(
    dataset: CocoPoseDataset,
    config: DecodeConfig | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[dict]:
    """Ground truth rendered as targets, decoded, mapped back: needs no image files.

    ``config`` None: the decoder's defaults for the dataset's input size."""
    config = config or DecodeConfig.for_input(dataset.input_size)
    results = []
    for image_id in dataset.image_ids:
        matrix, keypoints = dataset.letterboxed_people(image_id)
        heatmaps = heatmap_targets(keypoints, dataset.input_size, dataset.targets)
        pafs = paf_targets(keypoints, dataset.input_size, dataset.targets)
        results += poses_to_results(decode(heatmaps, pafs, config), matrix, image_id)
        if progress:
            progress(1)
    return results


def prediction_results(
    predictor: Predictor,
    dataset: CocoPoseDataset,
    config: DecodeConfig | None = None,
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
) -> list[dict]:
    """Run ``predictor`` on letterboxed images of ``dataset`` and decode every output."""
    config = config or DecodeConfig.for_input(dataset.input_size)
    results: list[dict] = []
    batch: list[tuple[int, np.ndarray, np.ndarray]] = []

    def flush() -> None:
        heatmaps, pafs = predictor(np.stack([image for _, image, _ in batch]))
        for (image_id, _, matrix), hm, paf in zip(batch, heatmaps, pafs):
            results.extend(poses_to_results(decode(np.asarray(hm), np.asarray(paf), config), matrix, image_id))
        if progress:
            progress(len(batch))
        batch.clear()

    for image_id, matrix in _letterboxed(dataset):
        batch.append((image_id, warp_image(dataset.load_image(image_id), matrix, dataset.input_size), matrix))
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    return results


def load_results(path: str | os.PathLike) -> list[dict]:
    """A COCO keypoint results file (a list of ``{image_id, keypoints, score}``), checked record by record:
    51 finite keypoint numbers and a finite score each, or one DataError naming the file and the record."""
    try:
        records = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable COCO results json ({exc.__class__.__name__})") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise DataError(f"{path}: not a COCO keypoint results list")
    for index, record in enumerate(records):
        keypoints, score = record.get("keypoints"), record.get("score", 1.0)
        if "image_id" not in record or not isinstance(keypoints, list) or len(keypoints) != 3 * NUM_COCO_KEYPOINTS:
            raise DataError(
                f"{path}: result {index} needs an image_id and {3 * NUM_COCO_KEYPOINTS} numbers of keypoints"
            )
        try:
            values = np.asarray(keypoints + [score], dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError(f"{path}: result {index} has keypoints or a score that are not numbers") from None
        if not np.isfinite(values).all():
            raise DataError(f"{path}: result {index} has NaN or infinite keypoints or score")
    return records


def evaluate_results(coco: COCO, results: list[dict], image_ids: Iterable[int]) -> KeypointMetrics:
    """COCOeval (iouType 'keypoints') over ``image_ids``. No detections at all scores 0 everywhere;
    a size range without ground truth is NaN."""
    image_ids = sorted(int(i) for i in image_ids)
    if not results:
        return KeypointMetrics(*([0.0] * 10), images=len(image_ids), detections=0)
    for record in results:
        if len(record["keypoints"]) != 3 * NUM_COCO_KEYPOINTS:
            raise ValueError(f"a result for image {record['image_id']} does not have 51 keypoint numbers")
    with contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints its progress and table
        detections = coco.loadRes([dict(r) for r in results])  # loadRes adds fields in place
        evaluator = COCOeval(coco, detections, "keypoints")
        evaluator.params.imgIds = image_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    # COCOeval writes -1 where a range has no ground truth (e.g. no medium people): not a score of 0.
    stats = [float(s) if s >= 0 else float("nan") for s in evaluator.stats]
    return KeypointMetrics(*stats, images=len(image_ids), detections=len(results))
