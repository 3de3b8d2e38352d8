"""COCO-17 <-> body-18 keypoints: the mapping both ways, the neck, flips and limbs."""

from __future__ import annotations

import numpy as np
import pytest

from posenas.posenet.pose.keypoints import (
    BODY_KEYPOINTS,
    COCO_KEYPOINTS,
    COCO_OF_BODY,
    FLIP_BODY,
    FLIP_COCO,
    GROUPING_ORDER,
    LIMBS,
    REDUNDANT_LIMBS,
    body_to_coco,
    coco_to_body,
)


def _coco_person() -> np.ndarray:
    """Keypoint k at (10 k + 1, 100 + k), all visible."""
    person = np.zeros((17, 3), dtype=np.float32)
    person[:, 0] = 10 * np.arange(17) + 1
    person[:, 1] = 100 + np.arange(17)
    person[:, 2] = 2
    return person


def test_coco_to_body_order_and_neck():
    body = coco_to_body(_coco_person())
    assert body.shape == (18, 3)
    # Names agree slot by slot: body "r_sho" is COCO "right_shoulder" (index 6), at x = 61.
    assert BODY_KEYPOINTS[2] == "r_sho" and COCO_KEYPOINTS[6] == "right_shoulder" and body[2, 0] == 61
    assert body[14, 0] == 21 and body[15, 0] == 11  # r_eye <- COCO 2, l_eye <- COCO 1
    assert body[17, 0] == 31 and body[16, 0] == 41  # l_ear <- COCO 3, r_ear <- COCO 4
    # Neck = mean of the shoulders (COCO 5 at x 51, y 105; COCO 6 at x 61, y 106), visible.
    assert body[1].tolist() == [56.0, 105.5, 2.0]


@pytest.mark.parametrize("left, right, neck_flag", [(2, 2, 2), (2, 1, 1), (1, 1, 1), (0, 2, 0), (2, 0, 0)])
def test_neck_flag_follows_the_shoulders(left, right, neck_flag):
    person = _coco_person()
    person[5, 2], person[6, 2] = left, right
    neck = coco_to_body(person)[1]
    assert neck[2] == neck_flag
    if neck_flag == 0:
        assert neck.tolist() == [0.0, 0.0, 0.0]


def test_round_trip_both_ways():
    rng = np.random.default_rng(3)
    coco = rng.uniform(0, 300, size=(5, 17, 3)).astype(np.float32)
    coco[..., 2] = rng.integers(0, 3, size=(5, 17))
    assert np.array_equal(body_to_coco(coco_to_body(coco)), coco)
    body = coco_to_body(coco)
    assert np.array_equal(coco_to_body(body_to_coco(body)), body)  # the neck is rebuilt identically


def test_mapping_tables_are_consistent():
    assert sorted(c for c in COCO_OF_BODY if c >= 0) == list(range(17))
    # Flipping twice is the identity; a flip maps every left name to its right twin.
    for flip, names in ((FLIP_BODY, BODY_KEYPOINTS), (FLIP_COCO, COCO_KEYPOINTS)):
        assert [flip[flip[k]] for k in range(len(flip))] == list(range(len(flip)))
        for k, name in enumerate(names):
            twin = names[flip[k]]
            swapped = name.replace("left", "#").replace("right", "left").replace("#", "right")
            swapped = swapped.replace("l_", "#").replace("r_", "l_").replace("#", "r_")
            assert twin == swapped
    # The flip commutes with the 17 -> 18 conversion.
    coco = np.random.default_rng(0).uniform(1, 9, size=(17, 3)).astype(np.float32)
    assert np.array_equal(coco_to_body(coco[list(FLIP_COCO)]), coco_to_body(coco)[list(FLIP_BODY)])


def test_limbs_cover_the_skeleton_once():
    assert len(LIMBS) == 19 and len(set(LIMBS)) == 19
    assert sorted(GROUPING_ORDER) == list(range(19))
    assert {k for limb in LIMBS for k in limb} == set(range(18))
    assert {LIMBS[i] for i in REDUNDANT_LIMBS} == {(2, 16), (5, 17)}
    assert LIMBS[GROUPING_ORDER[0]] == (1, 2)  # assembly starts at neck -> right shoulder


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="17, 3"):
        coco_to_body(np.zeros((18, 3)))
    with pytest.raises(ValueError, match="18, 3"):
        body_to_coco(np.zeros((17, 3)))
