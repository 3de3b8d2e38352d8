"""Shared fixtures: the real COCO sample (four val2017 images) that the project keeps in shared/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from posenet.coco import CocoPoseDataset

_PROJECT = Path(__file__).resolve().parents[1]


def find_coco_sample() -> Path | None:
    """``$POSENAS_COCO_SAMPLE``, else shared/data/coco_sample inside or beside the project."""
    candidates = [os.environ.get("POSENAS_COCO_SAMPLE"), _PROJECT / "shared", _PROJECT.parent / "shared"]
    for candidate in candidates:
        if not candidate:
            continue
        path = Path(candidate)
        path = path if path.name == "coco_sample" else path / "data" / "coco_sample"
        if (path / "annotations" / "person_keypoints_val2017.json").is_file():
            return path
    return None


@pytest.fixture(scope="session")
def coco_sample_root() -> Path:
    root = find_coco_sample()
    if root is None:
        pytest.skip("shared/data/coco_sample not found (set POSENAS_COCO_SAMPLE)")
    return root


@pytest.fixture(scope="session")
def sample(coco_sample_root: Path) -> CocoPoseDataset:
    """The coco_sample val split at input 128, no augmentation."""
    return CocoPoseDataset(coco_sample_root, "val")
