"""The COCO loader on real COCO images (shared/data/coco_sample) and on hand-made roots: geometry,
crowd and unlabelled-people masks, augmentation, and one-line errors naming the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from posenas.posenet.pose.coco import CocoPoseDataset, DataError, load_coco
from posenas.posenet.pose.keypoints import FLIP_BODY, coco_to_body
from posenas.posenet.pose.transforms import Augmentation, invert, letterbox_matrix, transform_points, warp_image


def test_real_coco_sample_loads(sample):
    assert sample.image_ids == [785, 40083, 196141, 197388]
    item = sample[0]
    assert item.image.shape == (128, 128, 3) and item.image.dtype == np.uint8
    assert item.heatmaps.shape == (19, 16, 16) and item.pafs.shape == (38, 16, 16) and item.mask.shape == (16, 16)
    # 000000000785.jpg is 640 x 425: scale 0.2, 85 rows of image then grey padding at the bottom.
    assert np.allclose(item.matrix, [[0.2, 0, 0], [0, 0.2, 0]])
    assert np.all(item.image[86:] == 128) and not np.all(item.image[:84] == 128)
    # One skier with 17 labelled keypoints: each heatmap peaks at the cell whose centre is nearest the
    # keypoint, at most 4 px away per axis (worst case, a cell corner: exp(-32 / (2 sigma^2)) = 0.067).
    body = coco_to_body(sample.people(785).keypoints)[0]
    for k in range(18):
        my, mx = np.unravel_index(item.heatmaps[k].argmax(), (16, 16))
        assert np.all(np.abs(8 * (np.array([mx, my]) + 0.5) - body[k, :2] * 0.2) <= 4 + 1e-4)
        assert item.heatmaps[k].max() >= 0.067


def test_unlabelled_people_are_masked_not_drawn(sample):
    # Image 40083 has two labelled people and one with no keypoints (area 491 px^2, bbox near x 1).
    index = sample.image_ids.index(40083)
    people = sample.people(40083)
    unlabelled = [a for a in people.annotations if a["num_keypoints"] == 0]
    assert len(unlabelled) == 1
    item = sample[index]
    x, y, w, h = unlabelled[0]["bbox"]
    s = item.matrix[0, 0]
    masked = np.argwhere(item.mask == 0)
    assert len(masked) > 0 and item.mask.sum() < 256
    # Every masked cell overlaps the unlabelled person's (scaled) box.
    for my, mx in masked:
        assert mx * 8 < (x + w) * s + 1 and (mx + 1) * 8 > x * s - 1
        assert my * 8 < (y + h) * s + 1 and (my + 1) * 8 > y * s - 1


def test_keypoints_move_with_the_image():
    # A smooth blob centred on continuous (50.5, 30.5) = the centre of pixel (50, 30) lands where the
    # matrix sends that point (a one-pixel dot would alias under a shrinking bilinear warp).
    yy, xx = np.mgrid[0:100, 0:200] + 0.5
    blob = 250 * np.exp(-((xx - 50.5) ** 2 + (yy - 30.5) ** 2) / (2 * 3.0**2))
    image = np.repeat(np.round(blob).astype(np.uint8)[..., None], 3, axis=2)
    rng = np.random.default_rng(1)
    for matrix in (letterbox_matrix(200, 100, 128), _random_matrix(200, 100, rng), _random_matrix(200, 100, rng)):
        warped = warp_image(image, matrix, 128, border=0)[..., 0].astype(np.float64)
        ys, xs = np.nonzero(warped)
        centroid = np.array([(xs + 0.5) @ warped[ys, xs], (ys + 0.5) @ warped[ys, xs]]) / warped.sum()
        assert np.allclose(centroid, transform_points(matrix, [50.5, 30.5]), atol=0.05)


def _random_matrix(width, height, rng):
    from posenas.posenet.pose.transforms import augmentation_matrix

    augmentation = Augmentation(flip=0.5, scale=(0.9, 1.5), rotation=40, shift=0.1)
    return augmentation_matrix(width, height, 128, augmentation, rng)[0]


def test_inverse_matrix_maps_back():
    matrix = _random_matrix(640, 480, np.random.default_rng(5))
    points = np.array([[10.0, 20.0], [600.0, 470.0]])
    assert np.allclose(transform_points(invert(matrix), transform_points(matrix, points)), points)


def test_flip_mirrors_targets_and_swaps_sides(sample):
    no_flip = CocoPoseDataset(
        sample.root, "val", augmentation=Augmentation(flip=0.0, scale=(1, 1), rotation=0, shift=0)
    )
    flip = CocoPoseDataset(sample.root, "val", augmentation=Augmentation(flip=1.0, scale=(1, 1), rotation=0, shift=0))
    for index in range(len(sample)):
        a, b = no_flip[index], flip[index]
        assert np.array_equal(b.image, a.image[:, ::-1])
        assert np.allclose(b.heatmaps[:18], a.heatmaps[list(FLIP_BODY)][:, :, ::-1], atol=1e-5)
        assert np.array_equal(b.mask, a.mask[:, ::-1])


def test_augmentation_is_reproducible_per_epoch(sample):
    augmented = CocoPoseDataset(sample.root, "val", augmentation=Augmentation(), seed=7)
    first = augmented[1]
    assert np.array_equal(augmented[1].image, first.image)
    augmented.set_epoch(1)
    assert not np.array_equal(augmented[1].image, first.image)


def _uncompressed_rle(mask: np.ndarray) -> dict:
    flat = mask.flatten(order="F").astype(np.int64)
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    counts = np.diff(np.concatenate([[0], changes])).tolist()
    return {"size": list(mask.shape), "counts": counts}


def _root(tmp_path: Path, annotations: list[dict], image: np.ndarray | None = None) -> Path:
    (tmp_path / "annotations").mkdir()
    (tmp_path / "val2017").mkdir()
    image = np.full((120, 160, 3), 90, np.uint8) if image is None else image
    cv2.imwrite(str(tmp_path / "val2017" / "000000000001.jpg"), image)
    dataset = {
        "images": [{"id": 1, "file_name": "000000000001.jpg", "width": 160, "height": 120}],
        "annotations": [dict(a, id=i + 1, image_id=1, category_id=1) for i, a in enumerate(annotations)],
        "categories": [{"id": 1, "name": "person"}],
    }
    (tmp_path / "annotations" / "person_keypoints_val2017.json").write_text(json.dumps(dataset))
    return tmp_path


def _labelled_person(x0: float) -> dict:
    keypoints = np.zeros((17, 3))
    keypoints[:, 0] = x0 + np.arange(17)
    keypoints[:, 1] = 20 + 4 * np.arange(17)
    keypoints[:, 2] = 2
    return {
        "keypoints": keypoints.ravel().tolist(),
        "num_keypoints": 17,
        "iscrowd": 0,
        "area": 2000.0,
        "bbox": [x0, 20, 17, 68],
        "segmentation": [[x0, 20, x0 + 17, 20, x0 + 17, 88, x0, 88]],
    }


def test_crowd_region_is_masked(tmp_path):
    crowd = np.zeros((120, 160), dtype=np.uint8)
    crowd[0:40, 100:160] = 1  # at scale 0.8 -> input rows 0-32, cols 80-128: cells my 0-3, mx 10-15
    annotations = [
        _labelled_person(10),
        {
            "keypoints": [0] * 51,
            "num_keypoints": 0,
            "iscrowd": 1,
            "area": 2400.0,
            "bbox": [100, 0, 60, 40],
            "segmentation": _uncompressed_rle(crowd),
        },
    ]
    item = CocoPoseDataset(_root(tmp_path, annotations), "val")[0]
    expected = np.ones((16, 16), np.float32)
    expected[0:4, 10:16] = 0
    assert np.array_equal(item.mask, expected)
    assert item.heatmaps[:18].max() > 0.5  # the labelled person is still drawn


def test_too_small_people_are_masked(tmp_path):
    tiny = dict(_labelled_person(120), area=50.0)  # 50 px^2 * 0.64 = 32 < 64 input px^2
    item = CocoPoseDataset(_root(tmp_path, [tiny]), "val")[0]
    assert not item.heatmaps[:18].any() and not item.pafs.any()
    assert item.mask.min() == 0 and item.mask[:, :9].min() == 1  # only around x 96..110 (cells 12-13)


def test_missing_annotation_file(tmp_path):
    with pytest.raises(DataError, match=r"person_keypoints_val2017\.json: annotation file not found"):
        CocoPoseDataset(tmp_path, "val")


def test_image_listed_but_absent(tmp_path):
    root = _root(tmp_path, [_labelled_person(10)])
    (root / "val2017" / "000000000001.jpg").unlink()
    with pytest.raises(DataError, match=r"000000000001\.jpg: image listed in .* is absent"):
        CocoPoseDataset(root, "val")


def test_corrupt_image(tmp_path):
    root = _root(tmp_path, [_labelled_person(10)])
    (root / "val2017" / "000000000001.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    dataset = CocoPoseDataset(root, "val")
    with pytest.raises(DataError, match=r"000000000001\.jpg: unreadable or corrupt image"):
        dataset[0]


READ_DAMAGED = """
import sys
from posenas.posenet.pose.coco import DataError, read_image
for path in sys.argv[1:]:
    try:
        read_image(path)
    except DataError as exc:
        print(exc)
print("after", file=sys.stderr)
"""


def test_a_damaged_image_is_one_error_and_the_codecs_print_nothing(tmp_path):
    """Issue 26: libpng and libjpeg print their own lines on stderr ("libpng error: IDAT: CRC error", "Corrupt
    JPEG data: ...") beside posenas' one line; read_image silences them for the decode only."""
    import subprocess
    import sys

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    damaged = []
    for suffix in (".png", ".jpg"):
        whole = cv2.imencode(suffix, image)[1].tobytes()
        scrambled = bytearray(whole)
        scrambled[100:400] = b"\x07" * 300
        for name, data in (("half", whole[: len(whole) // 2]), ("scrambled", bytes(scrambled))):
            damaged.append(tmp_path / f"{name}{suffix}")
            damaged[-1].write_bytes(data)
    run = subprocess.run(
        [sys.executable, "-c", READ_DAMAGED, *map(str, damaged)], capture_output=True, text=True, timeout=60
    )
    assert run.stdout.count("unreadable or corrupt image") == len(damaged), run.stdout
    assert run.stderr == "after\n"  # stderr works again after the decodes, and held nothing else


def test_json_without_keypoints(tmp_path):
    root = _root(tmp_path, [{"bbox": [0, 0, 5, 5], "area": 25, "iscrowd": 0}])
    with pytest.raises(DataError, match="annotations without person keypoints"):
        CocoPoseDataset(root, "val")
    (root / "annotations" / "person_keypoints_val2017.json").write_text("{ not json")
    with pytest.raises(DataError, match="not a readable JSON"):
        load_coco(root / "annotations" / "person_keypoints_val2017.json")


def test_people_only_drops_empty_images(tmp_path):
    root = _root(
        tmp_path, [{"keypoints": [0] * 51, "num_keypoints": 0, "iscrowd": 0, "area": 10.0, "bbox": [0, 0, 2, 5]}]
    )
    assert len(CocoPoseDataset(root, "val")) == 1
    with pytest.raises(DataError, match="the val split has no images with people"):  # nothing to train on
        CocoPoseDataset(root, "val", people_only=True)
    shutil.rmtree(root / "val2017")
    with pytest.raises(DataError, match="image folder not found"):
        CocoPoseDataset(root, "val")


def _train_only_root(source: Path, root: Path) -> Path:
    """The coco_sample's val annotations and images as the only split, train: a root like coco_mini_train."""
    (root / "annotations").mkdir(parents=True)
    shutil.copy(
        source / "annotations" / "person_keypoints_val2017.json",
        root / "annotations" / "person_keypoints_train2017.json",
    )
    shutil.copytree(source / "val2017", root / "train2017")
    return root


def test_a_missing_split_names_the_splits_the_root_has(coco_sample_root, tmp_path):
    from posenas.posenet.pose.coco import SplitNotFound, available_splits

    root = _train_only_root(coco_sample_root, tmp_path / "train-only")
    assert available_splits(root) == ["train"] and available_splits(coco_sample_root) == ["val"]
    with pytest.raises(SplitNotFound) as caught:
        CocoPoseDataset(root, "val")
    message = str(caught.value)
    assert caught.value.available == ["train"] and isinstance(caught.value, DataError)
    assert message == f"{root}: no val split (annotations/person_keypoints_val2017.json); this root has: train"
    assert "--split" not in message  # the library names no flag: train has none, eval and predict add theirs
    assert len(CocoPoseDataset(root, "train").image_ids) == 4  # the split it has opens
    # Two splits, neither asked for: both named, sorted.
    annotations = root / "annotations"
    shutil.copy(annotations / "person_keypoints_train2017.json", annotations / "person_keypoints_minival2017.json")
    with pytest.raises(SplitNotFound, match=r"this root has: minival, train$"):
        CocoPoseDataset(root, "val")
    # No annotations at all: the file it looked for, as before.
    with pytest.raises(SplitNotFound, match=r"person_keypoints_val2017.json: annotation file not found"):
        CocoPoseDataset(tmp_path / "empty", "val")


def test_datasets_of_one_coco_root_share_one_load_of_each_split(synth_root, tmp_path, monkeypatch):
    import os

    import posenas.posenet.pose.coco as coco_module
    from posenas.posenet.pose.coco import CocoRoot

    loads = []
    real = coco_module.load_coco
    monkeypatch.setattr(coco_module, "load_coco", lambda path: loads.append(Path(path).name) or real(path))
    path = synth_root(train=4, val=3, seed=5)
    root = CocoRoot(path)
    # it stands for its path wherever a path is taken
    assert Path(root) == path and os.fspath(root) == str(path) == str(root)
    first = CocoPoseDataset(root, "val", input_size=128, limit=2)
    second = CocoPoseDataset(root, "val", input_size=96)
    train = CocoPoseDataset(root, "train", people_only=True)
    assert first.coco is second.coco and train.coco is not first.coco
    assert loads == ["person_keypoints_val2017.json", "person_keypoints_train2017.json"]
    assert len(first) == 2 and len(second) == 3 and len(train) == 4 and second[0].image.shape == (96, 96, 3)
    # a path, or another CocoRoot, loads its own (a root edited meanwhile is read again)
    assert CocoPoseDataset(path, "val").coco is not first.coco
    assert CocoPoseDataset(CocoRoot(path), "val").coco is not first.coco
    assert loads.count("person_keypoints_val2017.json") == 3
    # a missing split or a bad file is a one-line error, and stays one on the next try
    broken = tmp_path / "broken"
    shutil.copytree(path, broken)
    (broken / "annotations" / "person_keypoints_train2017.json").write_text("{")
    (broken / "annotations" / "person_keypoints_val2017.json").unlink()
    broken_root = CocoRoot(broken)
    for _ in range(2):
        with pytest.raises(DataError, match="not a readable JSON annotation file"):
            CocoPoseDataset(broken_root, "train")
        with pytest.raises(DataError, match="no val split .* this root has: train"):
            CocoPoseDataset(broken_root, "val")
