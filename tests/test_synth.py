"""The synthetic-people dataset: a COCO root pycocotools reads, honest flags and masks from the label map,
determinism, variety (people, occlusion, truncation, sizes) and the left/right convention."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from posenas.posenet.pose import synth
from posenas.posenet.pose.keypoints import (
    COCO_KEYPOINTS,
    COCO_LEFT_SHOULDER,
    COCO_RIGHT_SHOULDER,
    COCO_SKELETON,
)
from posenas.posenet.pose.synth import SynthConfig, render_image, write_coco_root

FRONTAL = SynthConfig(facing_away_probability=0.0, side_view_probability=0.0, tilt_probability=0.0)
FACING_AWAY = SynthConfig(facing_away_probability=1.0, side_view_probability=0.0, tilt_probability=0.0)
# Keypoints the body's own volume may turn away (face, shoulders, hips): v=1 on their own part is allowed.
GEOMETRIC = np.isfinite(synth.SELF_OCCLUSION_THRESHOLD)


def keypoints_of(annotation: dict) -> np.ndarray:
    return np.array(annotation["keypoints"], dtype=np.float64).reshape(17, 3)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> tuple[Path, dict[str, int], list[int]]:
    out = tmp_path_factory.mktemp("synth")
    calls: list[int] = []
    counts = write_coco_root(out, train=6, val=4, seed=3, progress=calls.append)
    return out, counts, calls


@pytest.fixture(scope="module")
def rendered() -> list[synth.SynthImage]:
    return [render_image(0, "train", k) for k in range(50)]


# -- the COCO root -------------------------------------------------------------------------------------


def test_root_layout_counts_and_progress(root):
    out, counts, calls = root
    assert calls == [1] * 10
    # Exactly the two json files: no temporary file is left behind.
    assert sorted(p.name for p in (out / "annotations").iterdir()) == [
        "person_keypoints_train2017.json",
        "person_keypoints_val2017.json",
    ]
    for split, n, first_id in (("train", 6, 1), ("val", 4, 1_000_001)):
        content = json.loads((out / "annotations" / f"person_keypoints_{split}2017.json").read_text())
        assert [image["id"] for image in content["images"]] == list(range(first_id, first_id + n))
        assert counts[f"{split}_images"] == n
        assert counts[f"{split}_annotations"] == len(content["annotations"])
        assert content["info"]["version"] == synth.SYNTH_VERSION and content["licenses"] == []
        assert content["categories"] == [
            {
                "id": 1,
                "name": "person",
                "supercategory": "person",
                "keypoints": list(COCO_KEYPOINTS),
                "skeleton": [list(p) for p in COCO_SKELETON],
            }
        ]
        assert sorted(p.name for p in (out / f"{split}2017").iterdir()) == [
            f"{i:012d}.jpg" for i in range(first_id, first_id + n)
        ]


@pytest.mark.parametrize("split", ["train", "val"])
def test_root_reads_in_pycocotools_with_consistent_annotations(root, split):
    out, _, _ = root
    coco = COCO(str(out / "annotations" / f"person_keypoints_{split}2017.json"))
    assert coco.getCatIds() == [1] and len(coco.getImgIds()) == (6 if split == "train" else 4)
    ids = [a["id"] for a in coco.dataset["annotations"]]
    assert len(ids) == len(set(ids)) > 0
    for image_id in coco.getImgIds():
        info = coco.imgs[image_id]
        image = cv2.imread(str(out / f"{split}2017" / info["file_name"]))
        assert image is not None and image.shape == (info["height"], info["width"], 3)
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        assert 1 <= len(annotations) <= SynthConfig().max_people
        for a in annotations:
            assert a["category_id"] == 1 and a["iscrowd"] == 0
            rle = a["segmentation"]
            assert isinstance(rle["counts"], str) and rle["size"] == [info["height"], info["width"]]
            assert np.allclose(a["bbox"], mask_utils.toBbox(rle), atol=1e-6)
            assert abs(a["area"] - float(mask_utils.area(rle))) < 1e-6 and a["area"] >= 16
            k = keypoints_of(a)
            assert set(np.unique(k[:, 2])) <= {0.0, 1.0, 2.0}
            assert a["num_keypoints"] == int((k[:, 2] > 0).sum())
            assert np.all(k[k[:, 2] == 0] == 0)  # unlabelled: exactly (0, 0, 0)
            labelled = k[k[:, 2] > 0]
            assert np.all((labelled[:, 0] >= 0) & (labelled[:, 0] < info["width"]))
            assert np.all((labelled[:, 1] >= 0) & (labelled[:, 1] < info["height"]))
            x, y, w, h = a["bbox"]
            visible = k[k[:, 2] == 2]
            assert np.all((visible[:, 0] >= x - 1) & (visible[:, 0] <= x + w + 1))
            assert np.all((visible[:, 1] >= y - 1) & (visible[:, 1] <= y + h + 1))
            assert np.all(np.round(k[:, :2], 2) == k[:, :2])


# -- honest flags and masks ------------------------------------------------------------------------------


def test_flags_and_masks_come_from_the_label_map(rendered):
    checked = {1: 0, 2: 0}
    for item in rendered:
        figures = item.labels >> synth.FIGURE_SHIFT
        assert item.image.shape == item.labels.shape + (3,) and item.labels.dtype == np.uint16
        assert figures.max() == len(item.annotations)  # every drawn person is annotated, and only those
        for number, a in enumerate(item.annotations, start=1):
            mask = mask_utils.decode(a["segmentation"]).astype(bool)
            assert np.array_equal(mask, figures == number)
            for keypoint, (x, y, v) in enumerate(keypoints_of(a)):
                if v == 0:
                    continue
                label = int(item.labels[int(y), int(x)])
                own = label >> synth.FIGURE_SHIFT == number
                on_own_part = own and bool(synth.KEYPOINT_ON_PART[keypoint, label & synth.PART_MASK])
                if v == 2:
                    assert on_own_part, (COCO_KEYPOINTS[keypoint], label)
                else:  # covered by someone or something else, or turned away by its own body
                    assert not on_own_part or GEOMETRIC[keypoint], (COCO_KEYPOINTS[keypoint], label)
                checked[int(v)] += 1
    assert checked[2] > 1000 and checked[1] > 100


def test_variety_people_occlusion_truncation_and_sizes(rendered):
    people = [len(item.annotations) for item in rendered]
    assert min(people) == 1 and max(people) == SynthConfig().max_people
    causes = {"other figure": 0, "object": 0, "own body": 0}
    truncated = 0
    for item in rendered:
        height, width = item.labels.shape
        for number, a in enumerate(item.annotations, start=1):
            k = keypoints_of(a)
            for x, y, _ in k[k[:, 2] == 1]:
                label = int(item.labels[int(y), int(x)])
                if label == synth.LABEL_OBJECT:
                    causes["object"] += 1
                elif label >> synth.FIGURE_SHIFT == number:
                    causes["own body"] += 1
                elif label >> synth.FIGURE_SHIFT > 0:
                    causes["other figure"] += 1
            x, y, w, h = a["bbox"]
            at_border = x == 0 or y == 0 or x + w == width or y + h == height
            truncated += at_border and bool(np.any(k[5:, 2] == 0))  # a body point fell outside
    assert min(causes.values()) >= 10, causes
    assert truncated >= 10
    sizes = {item.labels.shape for item in rendered}
    assert len(sizes) >= 40
    assert all(160 <= h <= 320 and 160 <= w <= 320 for h, w in sizes)
    # Figure sizes: from small to nearly the image height.
    relative = [a["bbox"][3] / item.labels.shape[0] for item in rendered for a in item.annotations]
    assert min(relative) < 0.25 and max(relative) > 0.8


# -- conventions ----------------------------------------------------------------------------------------


def shoulder_order(config: SynthConfig, images: int = 40) -> tuple[int, int]:
    """(figures with the right shoulder on the image left, figures with both shoulders labelled)."""
    right_on_left = both = 0
    for k in range(images):
        for a in render_image(5, "val", k, config).annotations:
            points = keypoints_of(a)
            left, right = points[COCO_LEFT_SHOULDER], points[COCO_RIGHT_SHOULDER]
            if left[2] > 0 and right[2] > 0:
                both += 1
                right_on_left += right[0] < left[0]
    return right_on_left, both


def test_facing_the_camera_the_right_side_is_on_the_image_left():
    right_on_left, both = shoulder_order(FRONTAL)
    assert both >= 50 and right_on_left >= 0.95 * both


def test_facing_away_the_right_side_is_on_the_image_right_and_the_face_is_unlabelled():
    right_on_left, both = shoulder_order(FACING_AWAY)
    assert both >= 50 and right_on_left <= 0.05 * both
    annotations = [a for k in range(20) for a in render_image(5, "val", k, FACING_AWAY).annotations]
    faces = np.array([keypoints_of(a)[:3, 2] for a in annotations])
    assert np.mean(faces == 0) > 0.9  # nose and eyes on the back of the head are not labelled


def test_side_views_hide_one_eye_behind_the_head(rendered):
    one_eye = 0
    for item in rendered:
        for number, a in enumerate(item.annotations, start=1):
            k = keypoints_of(a)
            eyes = sorted(k[[1, 2], 2])
            if eyes == [1.0, 2.0]:
                hidden = k[1] if k[1, 2] == 1 else k[2]
                own_head = (number << synth.FIGURE_SHIFT) | synth.HEAD
                one_eye += int(item.labels[int(hidden[1]), int(hidden[0])]) == own_head
    assert one_eye >= 5


# -- determinism ----------------------------------------------------------------------------------------


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path, root):
    out, _, _ = root
    write_coco_root(tmp_path / "again", train=6, val=4, seed=3)
    write_coco_root(tmp_path / "other", train=6, val=4, seed=4)
    first, again, other = tree_bytes(out), tree_bytes(tmp_path / "again"), tree_bytes(tmp_path / "other")
    assert first == again
    assert first.keys() == other.keys()
    assert all(first[name] != other[name] for name in first if name.endswith(".jpg"))


def test_an_image_depends_only_on_seed_split_and_index():
    a, b = render_image(7, "val", 12), render_image(7, "val", 12)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    assert a.annotations == b.annotations
    other = render_image(7, "train", 12)
    assert other.image.shape != a.image.shape or not np.array_equal(other.image, a.image)


def test_val_split_does_not_depend_on_the_train_split(tmp_path):
    write_coco_root(tmp_path / "small", train=0, val=2, seed=1)
    write_coco_root(tmp_path / "large", train=3, val=2, seed=1)
    small, large = tree_bytes(tmp_path / "small"), tree_bytes(tmp_path / "large")
    assert all(small[name] == large[name] for name in small if "val2017" in name)


# -- errors ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"width_range": (320, 160)},
        {"height_range": (8, 8)},
        {"min_people": 3, "max_people": 2},
        {"max_people": 100},
        {"figure_height_range": (0.0, 0.5)},
        {"facing_away_probability": 0.6, "side_view_probability": 0.6},
        {"jpeg_quality": 0},
    ],
)
def test_bad_config_is_refused(kwargs):
    with pytest.raises(ValueError):
        SynthConfig(**kwargs)


def test_bad_split_and_counts_are_refused(tmp_path):
    with pytest.raises(ValueError, match="split"):
        render_image(0, "test", 0)
    with pytest.raises(ValueError, match="train"):
        write_coco_root(tmp_path, train=-1, val=0)
