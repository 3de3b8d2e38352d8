"""Keypoint and limb conventions of the OpenPose family, and the COCO-17 <-> body-18 mapping.

Networks predict 18 *body* keypoints (COCO's 17 plus a neck synthesised from the shoulders) in the order
Lightweight OpenPose uses, a background heatmap, and two PAF channels (x, y) per limb. COCO files and
COCOeval speak the 17-keypoint order. Everything here is a constant or a pure NumPy function.

Coordinates everywhere in posenas are *continuous* pixel coordinates: pixel ``i`` covers ``[i, i + 1)``
and its centre is ``i + 0.5``. COCO's keypoint numbers are read as such coordinates.

Visibility flags keep COCO's meaning in both orders: 0 not labelled, 1 labelled but not visible,
2 labelled and visible.
"""

from __future__ import annotations

import numpy as np

COCO_KEYPOINTS: tuple[str, ...] = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)

# COCO's own skeleton (1-based, as in the annotation file's "categories").
COCO_SKELETON: tuple[tuple[int, int], ...] = (
    (16, 14),
    (14, 12),
    (17, 15),
    (15, 13),
    (12, 13),
    (6, 12),
    (7, 13),
    (6, 7),
    (6, 8),
    (7, 9),
    (8, 10),
    (9, 11),
    (2, 3),
    (1, 2),
    (1, 3),
    (2, 4),
    (3, 5),
    (4, 6),
    (5, 7),
)

BODY_KEYPOINTS: tuple[str, ...] = (
    "nose",
    "neck",
    "r_sho",
    "r_elb",
    "r_wri",
    "l_sho",
    "l_elb",
    "l_wri",
    "r_hip",
    "r_knee",
    "r_ank",
    "l_hip",
    "l_knee",
    "l_ank",
    "r_eye",
    "l_eye",
    "r_ear",
    "l_ear",
)

NUM_BODY_KEYPOINTS = 18
NUM_COCO_KEYPOINTS = 17
NECK = 1
BACKGROUND = 18
NUM_HEATMAPS = 19  # 18 keypoints + background
NUM_PAFS = 38  # 19 limbs x (x, y)

# Body slot k holds COCO keypoint COCO_OF_BODY[k]; the neck (-1) has no COCO counterpart.
COCO_OF_BODY: tuple[int, ...] = (0, -1, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)
COCO_LEFT_SHOULDER, COCO_RIGHT_SHOULDER = 5, 6

# Horizontal flip: body slot k takes the keypoint of slot FLIP_BODY[k] (left <-> right).
FLIP_BODY: tuple[int, ...] = (0, 1, 5, 6, 7, 2, 3, 4, 11, 12, 13, 8, 9, 10, 15, 14, 17, 16)
FLIP_COCO: tuple[int, ...] = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)

# Limbs as (from, to) body keypoints. Limb i owns PAF channels 2i (x) and 2i + 1 (y); the field points
# from the first keypoint to the second. This is the channel layout of Lightweight OpenPose's training.
LIMBS: tuple[tuple[int, int], ...] = (
    (1, 8),
    (8, 9),
    (9, 10),
    (1, 11),
    (11, 12),
    (12, 13),
    (1, 2),
    (2, 3),
    (3, 4),
    (2, 16),
    (1, 5),
    (5, 6),
    (6, 7),
    (5, 17),
    (1, 0),
    (0, 14),
    (0, 15),
    (14, 16),
    (15, 17),
)

# The order in which the decoder assembles people: from the neck outwards, so that every limb after the
# first usually extends a person that already exists. Indices into LIMBS.
GROUPING_ORDER: tuple[int, ...] = (6, 10, 7, 8, 11, 12, 0, 1, 2, 3, 4, 5, 14, 15, 17, 16, 18, 9, 13)
# Shoulder-ear limbs are redundant: they only complete people found through other limbs.
REDUNDANT_LIMBS: frozenset[int] = frozenset({9, 13})


def coco_to_body(keypoints: np.ndarray) -> np.ndarray:
    """COCO keypoints (..., 17, 3) -> body keypoints (..., 18, 3) with a synthesised neck.

    The neck is the shoulders' midpoint. It is labelled only when both shoulders are, and visible
    (flag 2) only when both are visible; otherwise flag 1. Unlabelled points are (0, 0, 0).
    """
    coco = np.asarray(keypoints, dtype=np.float32)
    if coco.shape[-2:] != (NUM_COCO_KEYPOINTS, 3):
        raise ValueError(f"COCO keypoints must have shape (..., 17, 3), got {coco.shape}")
    index = np.array([max(c, 0) for c in COCO_OF_BODY])
    body = coco[..., index, :].copy()
    left, right = coco[..., COCO_LEFT_SHOULDER, :], coco[..., COCO_RIGHT_SHOULDER, :]
    labelled = (left[..., 2] > 0) & (right[..., 2] > 0)
    both_visible = (left[..., 2] == 2) & (right[..., 2] == 2)
    neck = body[..., NECK, :]
    neck[..., :2] = np.where(labelled[..., None], (left[..., :2] + right[..., :2]) / 2, 0.0)
    neck[..., 2] = np.where(labelled, np.where(both_visible, 2.0, 1.0), 0.0)
    return body


def body_to_coco(keypoints: np.ndarray) -> np.ndarray:
    """Body keypoints (..., 18, 3) -> COCO keypoints (..., 17, 3); the neck is dropped."""
    body = np.asarray(keypoints, dtype=np.float32)
    if body.shape[-2:] != (NUM_BODY_KEYPOINTS, 3):
        raise ValueError(f"body keypoints must have shape (..., 18, 3), got {body.shape}")
    coco = np.zeros(body.shape[:-2] + (NUM_COCO_KEYPOINTS, 3), dtype=np.float32)
    for slot, c in enumerate(COCO_OF_BODY):
        if c >= 0:
            coco[..., c, :] = body[..., slot, :]
    return coco
