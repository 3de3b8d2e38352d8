"""Tests for posenet.decode on hand-drawn network maps (128x128 input, stride 8, 16x16 maps).

The maps are drawn here, by a small local helper, with the target conventions the decoder inverts
(those of posenet.targets, restated rather than imported so that the two are checked against each
other, not against themselves): Gaussian heatmaps measured to cell centres ``8 * (m + 0.5)``, summed
over people and clipped at 1, with sigma 7 px (Lightweight OpenPose's 7 px at 368 scaled to 128 px, but
never below 7/8 of a cell); PAFs holding the limb's unit vector at cells whose centre lies within one
cell of the segment (a capsule), averaged where people overlap.
"""

from __future__ import annotations

import numpy as np
import pytest

from posenas.posenet.pose.decode import (
    DecodeConfig,
    Pose,
    assemble,
    decode,
    extract_peaks,
    score_limbs,
    upsample_maps,
)
from posenas.posenet.pose.keypoints import BODY_KEYPOINTS, GROUPING_ORDER, LIMBS, NECK

INPUT_SIZE = 128
STRIDE = 8
CELLS = INPUT_SIZE // STRIDE
SIGMA = 7.0  # max(7 * 128 / 368, 7 / 8 * STRIDE)

# A standing person, facing the camera, in input pixels relative to the neck (height ~ 110 px).
# Body-18 order: nose, neck, r_sho, r_elb, r_wri, l_sho, l_elb, l_wri, r_hip, r_knee, r_ank,
# l_hip, l_knee, l_ank, r_eye, l_eye, r_ear, l_ear.
TEMPLATE = np.array(
    [
        (0, -16),
        (0, 0),
        (-13, 1),
        (-17, 19),
        (-19, 35),
        (13, 1),
        (17, 19),
        (19, 35),
        (-8, 36),
        (-9, 58),
        (-10, 80),
        (8, 36),
        (9, 58),
        (10, 80),
        (-8, -25),
        (8, -25),
        (-16, -18),
        (16, -18),
    ],
    dtype=np.float64,
)
LEGS = (8, 9, 10, 11, 12, 13)


def make_person(
    neck: tuple[float, float], scale: float = 1.0, missing: tuple[int, ...] = (), seed: int = 0
) -> np.ndarray:
    """(18, 3) keypoints (x, y, visibility) of the template, each moved by a seeded jitter of at most
    1 px per axis so that keypoints sit anywhere within their cells. Missing slots are zero."""
    keypoints = np.zeros((18, 3))
    jitter = np.random.default_rng(seed).uniform(-1.0, 1.0, size=(18, 2))
    keypoints[:, :2] = np.asarray(neck, dtype=np.float64) + scale * TEMPLATE + jitter
    keypoints[:, 2] = 2
    keypoints[list(missing)] = 0
    return keypoints


def draw_maps(people: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps (19, 16, 16) and PAFs (38, 16, 16) of labelled people, as the targets define them."""
    centres = STRIDE * (np.arange(CELLS) + 0.5)
    cell_x, cell_y = np.meshgrid(centres, centres)
    heatmaps = np.zeros((19, CELLS, CELLS))
    paf_sum = np.zeros((38, CELLS, CELLS))
    paf_count = np.zeros((19, CELLS, CELLS))
    for keypoints in people:
        labelled = keypoints[:, 2] > 0
        for k in np.flatnonzero(labelled):
            d2 = (cell_x - keypoints[k, 0]) ** 2 + (cell_y - keypoints[k, 1]) ** 2
            heatmaps[k] += np.exp(-d2 / (2 * SIGMA**2))
        for limb, (a, b) in enumerate(LIMBS):
            if labelled[a] and labelled[b]:
                start, end = keypoints[a, :2], keypoints[b, :2]
                near = _near_segment(cell_x, cell_y, start, end)
                unit = (end - start) / np.linalg.norm(end - start)
                paf_sum[2 * limb][near] += unit[0]
                paf_sum[2 * limb + 1][near] += unit[1]
                paf_count[limb][near] += 1
    heatmaps = np.minimum(heatmaps, 1.0)
    heatmaps[18] = 1.0 - heatmaps[:18].max(axis=0)
    pafs = paf_sum / np.maximum(np.repeat(paf_count, 2, axis=0), 1)
    return heatmaps.astype(np.float32), pafs.astype(np.float32)


def _near_segment(cell_x: np.ndarray, cell_y: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cells whose centre lies within one cell of the segment a-b (of the segment, not its line)."""
    length = np.linalg.norm(b - a)
    ux, uy = (b - a) / length
    rx, ry = cell_x - a[0], cell_y - a[1]
    along = rx * ux + ry * uy
    across = rx * uy - ry * ux
    beyond = np.clip(along, 0.0, None) - np.clip(along, None, length)  # 0 when the projection is on it
    return beyond**2 + across**2 <= STRIDE**2


def assignment(poses: list[Pose], people: list[np.ndarray]) -> list[int]:
    """For each pose, the one person that every one of its keypoints is nearest to (same slot).

    Fails if a pose mixes people (keypoints nearest to different people)."""
    owners = []
    for pose in poses:
        found = np.flatnonzero(pose.keypoints[:, 2] > 0)
        nearest = set()
        for k in found:
            distances = [
                np.hypot(*(pose.keypoints[k, :2] - person[k, :2])) if person[k, 2] > 0 else np.inf for person in people
            ]
            nearest.add(int(np.argmin(distances)))
        assert len(nearest) == 1, f"a pose mixes people {sorted(nearest)}"
        owners.append(nearest.pop())
    return owners


def max_error(pose: Pose, person: np.ndarray) -> float:
    """Largest distance between a found keypoint and its labelled position (px)."""
    both = (pose.keypoints[:, 2] > 0) & (person[:, 2] > 0)
    return float(np.hypot(*(pose.keypoints[both, :2] - person[both, :2]).T).max())


def found_slots(pose: Pose) -> set[int]:
    return set(np.flatnonzero(pose.keypoints[:, 2] > 0).tolist())


def peaks_and_connections(
    heatmaps: np.ndarray, pafs: np.ndarray, config: DecodeConfig
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The first three decoding steps, as decode runs them."""
    upsampled = upsample_maps(np.concatenate([heatmaps[:18], pafs]), config, heatmap_channels=18)
    peaks = extract_peaks(upsampled[:18], config)
    return peaks, score_limbs(peaks, upsampled[18:], config)


# --- whole decode -----------------------------------------------------------------------------------


def test_one_person_is_recovered_keypoint_by_keypoint():
    person = make_person((64, 28))
    poses = decode(*draw_maps([person]))
    assert len(poses) == 1
    pose = poses[0]
    assert pose.count == 18 and found_slots(pose) == set(range(18))
    assert pose.keypoints.shape == (18, 3)
    # An isolated keypoint comes back within 1.1 px (see the localisation test); allow for neighbours.
    assert max_error(pose, person) < 1.5
    assert BODY_KEYPOINTS[2] == "r_sho"
    assert np.hypot(*(pose.keypoints[2, :2] - person[2, :2])) < 1.5
    # score = 18 keypoint scores + 17 limb affinities (the ears enter through the eyes, not through the
    # redundant shoulder-ear limbs); clean unit fields give affinities near 1 (cubic overshoot aside).
    affinities = pose.score - pose.keypoints[:, 2].sum()
    assert 17 * 0.9 < affinities < 17 * 1.15
    assert pose.coco_score == pytest.approx(pose.score * 17)


@pytest.mark.parametrize(
    "people",
    [
        [make_person((34, 26), 0.8, seed=1), make_person((94, 26), 0.8, seed=2)],
        [make_person((22, 44), 0.6, seed=3), make_person((64, 26), 0.9, seed=4), make_person((106, 56), 0.55, seed=5)],
    ],
    ids=["two", "three-scales"],
)
def test_side_by_side_people_come_out_as_separate_poses(people):
    poses = decode(*draw_maps(people))
    assert len(poses) == len(people)
    owners = assignment(poses, people)
    assert sorted(owners) == list(range(len(people)))  # one pose per person, no cross-person mixing
    for pose, owner in zip(poses, owners):
        assert pose.count == 18  # face limbs of the small people are shorter than a cell
        assert max_error(pose, people[owner]) < 1.5
    assert [pose.score for pose in poses] == sorted((pose.score for pose in poses), reverse=True)


def test_overlapping_people_are_kept_apart():
    """The arms cross (each wrist lies past the other person's): their PAFs overlap and average."""
    people = [make_person((50, 26), seed=6), make_person((78, 30), seed=7)]
    poses = decode(*draw_maps(people))
    assert len(poses) == 2
    owners = assignment(poses, people)
    assert sorted(owners) == [0, 1]
    for pose, owner in zip(poses, owners):
        assert pose.count == 18 and max_error(pose, people[owner]) < 1.5


def test_person_without_legs_is_one_pose():
    person = make_person((64, 28), missing=LEGS)
    poses = decode(*draw_maps([person]))
    assert len(poses) == 1 and poses[0].count == 12
    assert found_slots(poses[0]) == set(range(18)) - set(LEGS)


def test_missing_elbow_drops_the_orphaned_wrist_not_the_person():
    """Without r_elb the wrist has no limb to the body; its lone fragment is too small to be a pose."""
    person = make_person((64, 28), missing=(3,))
    poses = decode(*draw_maps([person]))
    assert len(poses) == 1 and poses[0].count == 16
    assert found_slots(poses[0]) == set(range(18)) - {3, 4}


def test_person_without_neck_falls_apart_along_the_skeleton():
    """Every body-18 path from an arm to a leg or to the other arm runs through the neck (the
    shoulder-ear limbs only fill free slots), so a neck-less person decodes as its arms, legs and face.
    Each fragment is still one person's: nothing is mixed and nothing is dropped."""
    person = make_person((64, 28), missing=(NECK,))
    poses = decode(*draw_maps([person]))
    assert assignment(poses, [person]) == [0] * len(poses)
    fragments = sorted(sorted(found_slots(pose)) for pose in poses)
    assert fragments == [[0, 14, 15, 16, 17], [2, 3, 4], [5, 6, 7], [8, 9, 10], [11, 12, 13]]


def test_merge_joins_two_fragments_of_one_person():
    """The merge path: visiting a limb between two existing fragments joins them (sum of scores)."""
    person = make_person((64, 28))
    heatmaps, pafs = draw_maps([person])
    config = DecodeConfig()
    peaks, connections = peaks_and_connections(heatmaps, pafs, config)
    # Build the right arm from both ends first (neck-r_sho, r_elb-r_wri), then bridge with r_sho-r_elb.
    order = (6, 8, 7)
    merged = assemble(peaks, connections, config, limb_order=order)
    assert len(merged) == 1 and merged[0].count == 4 and found_slots(merged[0]) == {1, 2, 3, 4}
    halves = assemble(peaks, connections, DecodeConfig(min_keypoints=2), limb_order=(6, 8))
    affinity = connections[7][0, 2]
    assert merged[0].score == pytest.approx(sum(pose.score for pose in halves) + affinity)


def test_wrong_direction_paf_rejects_the_connection():
    person = make_person((64, 28), missing=tuple(k for k in range(18) if k not in (1, 2, 3)))
    heatmaps, pafs = draw_maps([person])
    assert len(decode(heatmaps, pafs)) == 1  # neck - r_sho - r_elb: 3 keypoints, one pose
    reversed_pafs = -pafs  # every field now points from b to a
    _, connections = peaks_and_connections(heatmaps, reversed_pafs, DecodeConfig())
    assert all(len(c) == 0 for c in connections)
    assert decode(heatmaps, reversed_pafs) == []


def test_empty_maps_give_no_poses():
    assert decode(np.zeros((19, CELLS, CELLS), np.float32), np.zeros((38, CELLS, CELLS), np.float32)) == []


def test_coarser_upsampling_keeps_the_coordinate_convention():
    """Other factors: upsampled pixel j sits at (j + 0.5) * 8 / upsample input px. The error stays
    within about half an upsampled pixel plus the interpolation's."""
    person = make_person((64, 28))
    for upsample, tolerance in ((2, 2.6), (4, 1.8), (16, 1.0)):
        poses = decode(*draw_maps([person]), config=DecodeConfig(upsample=upsample))
        assert len(poses) == 1 and poses[0].count == 18
        assert max_error(poses[0], person) < tolerance


# --- peaks -------------------------------------------------------------------------------------------


def _blank_upsampled() -> np.ndarray:
    return np.zeros((19, INPUT_SIZE, INPUT_SIZE), np.float32)


def test_close_peaks_keep_only_the_higher_one():
    config = DecodeConfig()
    assert 2.0 < config.nms_radius < 3.0
    heatmaps = _blank_upsampled()
    heatmaps[5, 40, 40] = 0.6
    heatmaps[5, 40, 42] = 0.9  # 2 px away: only the higher one stays
    heatmaps[5, 80, 40] = 0.7
    heatmaps[5, 80, 43] = 0.5  # 3 px away: kept
    peaks = extract_peaks(heatmaps, config)
    assert [len(p) for p in peaks] == [0] * 5 + [3] + [0] * 12
    np.testing.assert_allclose(peaks[5][:, :3], [[42.5, 40.5, 0.9], [40.5, 80.5, 0.7], [43.5, 80.5, 0.5]])
    np.testing.assert_array_equal(peaks[5][:, 3], [0, 1, 2])


def test_peaks_have_global_ids_in_channel_order():
    heatmaps = _blank_upsampled()
    heatmaps[0, 10, 10] = heatmaps[0, 100, 100] = heatmaps[17, 50, 50] = 0.5
    heatmaps[18, 60, 60] = 1.0  # background: never a keypoint
    peaks = extract_peaks(heatmaps, DecodeConfig())
    assert peaks[0][:, 3].tolist() == [0, 1] and peaks[17][:, 3].tolist() == [2]
    assert sum(len(p) for p in peaks) == 3


def test_threshold_and_borders():
    heatmaps = _blank_upsampled()
    heatmaps[1, 20, 20] = 0.1  # at the threshold: kept (values *below* it are ignored)
    heatmaps[2, 20, 20] = 0.099
    heatmaps[3, 0, 127] = 0.5  # a corner pixel has no rivals outside the map
    peaks = extract_peaks(heatmaps, DecodeConfig())
    assert len(peaks[1]) == 1 and len(peaks[2]) == 0
    np.testing.assert_allclose(peaks[3][0, :2], [127.5, 0.5])


def test_faint_blob_gives_no_peak():
    heatmaps, _ = draw_maps([make_person((64, 28), missing=tuple(range(1, 18)))])
    config = DecodeConfig()
    assert len(extract_peaks(upsample_maps(heatmaps, config, heatmap_channels=18), config)[0]) == 1
    faint = upsample_maps(0.05 * heatmaps, config, heatmap_channels=18)
    assert all(len(p) == 0 for p in extract_peaks(faint, config))


def test_a_single_hot_cell_gives_one_peak_at_its_centre():
    """Cubic x8 upsampling of a lone cell makes a 2x2 plateau of equal pixels around the cell centre;
    the decoder must find exactly one peak there, not none."""
    heatmaps = np.zeros((19, CELLS, CELLS), np.float32)
    heatmaps[4, 5, 7] = 1.0
    config = DecodeConfig()
    peaks = extract_peaks(upsample_maps(heatmaps, config, heatmap_channels=18), config)
    assert len(peaks[4]) == 1
    np.testing.assert_allclose(peaks[4][0, :2], [STRIDE * 7.5, STRIDE * 5.5])


def test_blobs_near_a_corner_give_one_accurate_peak_each():
    """One keypoint swept over the 2x2 corner cells. cv2 alone extrapolates from replicated border
    cells: cubic ringing then adds a false peak at the edge and drags keypoints that lie outside the
    outer cell centres to the edge. The decoder's Gaussian border extension removes both."""
    centres = STRIDE * (np.arange(CELLS) + 0.5)
    cell_x, cell_y = np.meshgrid(centres, centres)
    extended, replicated = DecodeConfig(), DecodeConfig(extrapolate_borders=False)
    errors, false_peaks = [], 0
    for y in np.arange(0.25, 16.0, 1.0):
        for x in np.arange(0.25, 16.0, 1.0):
            heatmaps = np.zeros((19, CELLS, CELLS), np.float32)
            heatmaps[0] = np.exp(-((cell_x - x) ** 2 + (cell_y - y) ** 2) / (2 * SIGMA**2))
            (peak,) = extract_peaks(upsample_maps(heatmaps, extended, heatmap_channels=18), extended)[0]
            errors.append(np.hypot(peak[0] - x, peak[1] - y))
            false_peaks += len(extract_peaks(upsample_maps(heatmaps, replicated), replicated)[0]) - 1
    assert max(errors) < 1.3
    assert false_peaks > 100  # of 256 positions: why the extension exists


def test_localisation_error_is_about_a_pixel_anywhere_in_a_cell():
    """One isolated keypoint swept over a whole cell in half pixels: cubic upsampling of the
    sigma-7 Gaussian puts the peak within ~1 px (half an upsampled pixel plus interpolation bias)."""
    config = DecodeConfig()
    centres = STRIDE * (np.arange(CELLS) + 0.5)
    cell_x, cell_y = np.meshgrid(centres, centres)
    errors = []
    for dx in np.arange(-4.0, 4.0, 0.5):
        for dy in np.arange(-4.0, 4.0, 0.5):
            x, y = 60.0 + dx, 60.0 + dy  # 60 = centre of cell 7
            heatmaps = np.zeros((19, CELLS, CELLS), np.float32)
            heatmaps[0] = np.exp(-((cell_x - x) ** 2 + (cell_y - y) ** 2) / (2 * SIGMA**2))
            (peak,) = extract_peaks(upsample_maps(heatmaps, config, heatmap_channels=18), config)[0]
            errors.append(np.hypot(peak[0] - x, peak[1] - y))
    assert max(errors) < 1.1 and np.mean(errors) < 0.6


# --- limbs and assembly ------------------------------------------------------------------------------


def _peak_table(points: list[list[tuple[float, float, float]]]) -> list[np.ndarray]:
    """Per-keypoint (k, 4) peak arrays from (x, y, score) lists, ids numbered in order."""
    peaks, next_id = [], 0
    for k in range(18):
        rows = points[k] if k < len(points) else []
        ids = np.arange(next_id, next_id + len(rows))
        peaks.append(np.array([(*row, i) for row, i in zip(rows, ids)], np.float32).reshape(-1, 4))
        next_id += len(rows)
    return peaks


def test_score_limbs_is_one_to_one_and_rejects_zero_length_pairs():
    config = DecodeConfig()
    pafs = np.zeros((38, INPUT_SIZE, INPUT_SIZE), np.float32)
    pafs[0] = 1.0  # limb 0 (neck -> r_hip): a uniform field pointing +x everywhere
    # Two necks, two r_hips; every neck -> hip pair to the right is supported; one hip sits on a neck.
    points: list[list[tuple[float, float, float]]] = [[] for _ in range(18)]
    points[1] = [(20.5, 40.5, 0.9), (60.5, 40.5, 0.9)]
    points[8] = [(60.5, 40.5, 0.9), (100.5, 40.5, 0.9)]
    peaks = _peak_table(points)
    (connections, *others) = score_limbs(peaks, pafs, config)
    assert all(len(c) == 0 for c in others)
    # Candidates: n0->h0 (40 px), n0->h1 (80 px), n1->h1 (40 px); n1->h0 has zero length.
    # All have affinity 1; greedy by affinity (stable order) takes n0->h0, then n1->h1.
    assert connections[:, :2].tolist() == [[0, 2], [1, 3]]
    np.testing.assert_allclose(connections[:, 2], 1.0)


def test_redundant_limbs_only_fill_free_slots():
    """A shoulder-ear connection completes a person without changing its score or count, and never
    starts one."""
    config = DecodeConfig()
    points: list[list[tuple[float, float, float]]] = [[] for _ in range(18)]
    points[1], points[2], points[3] = [(64.5, 30.5, 0.9)], [(50.5, 30.5, 0.8)], [(46.5, 48.5, 0.7)]
    points[16] = [(48.5, 12.5, 0.6)]  # r_ear
    points[5], points[17] = [(90.5, 90.5, 0.9)], [(100.5, 80.5, 0.9)]  # a lone l_sho - l_ear pair
    peaks = _peak_table(points)
    connections = [np.empty((0, 3), np.float32) for _ in LIMBS]
    connections[6] = np.array([[0, 1, 0.9]], np.float32)  # neck - r_sho
    connections[7] = np.array([[1, 2, 0.8]], np.float32)  # r_sho - r_elb
    connections[9] = np.array([[1, 4, 0.7]], np.float32)  # r_sho - r_ear (redundant)
    connections[13] = np.array([[3, 5, 0.9]], np.float32)  # l_sho - l_ear (redundant, no person)
    (pose,) = assemble(peaks, connections, config)
    assert pose.count == 3 and pose.score == pytest.approx(0.9 + 0.8 + 0.7 + 0.9 + 0.8)
    np.testing.assert_allclose(pose.keypoints[16], [48.5, 12.5, 0.6])
    assert found_slots(pose) == {1, 2, 3, 16}


def test_weak_people_are_dropped():
    points: list[list[tuple[float, float, float]]] = [[] for _ in range(18)]
    points[1], points[2], points[3] = [(64.5, 30.5, 0.1)], [(50.5, 30.5, 0.1)], [(46.5, 48.5, 0.1)]
    peaks = _peak_table(points)
    connections = [np.empty((0, 3), np.float32) for _ in LIMBS]
    connections[6] = np.array([[0, 1, 0.1]], np.float32)
    connections[7] = np.array([[1, 2, 0.1]], np.float32)
    # score 0.5 over 3 keypoints = 0.167 < 0.2
    assert assemble(peaks, connections, DecodeConfig()) == []
    assert len(assemble(peaks, connections, DecodeConfig(min_mean_score=0.15))) == 1
    assert assemble(peaks, connections, DecodeConfig(min_mean_score=0.0, min_keypoints=4)) == []


def test_grouping_order_visits_every_limb_once():
    assert sorted(GROUPING_ORDER) == list(range(len(LIMBS)))


# --- API ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "heatmap_shape, paf_shape, message",
    [
        ((18, 16, 16), (38, 16, 16), "heatmaps"),
        ((19, 16), (38, 16, 16), "heatmaps"),
        ((19, 16, 16), (19, 16, 16), "pafs"),
        ((19, 16, 16), (38, 16, 15), "differ"),
        ((19, 0, 16), (38, 0, 16), "empty"),
    ],
)
def test_bad_shapes_raise(heatmap_shape, paf_shape, message):
    with pytest.raises(ValueError, match=message):
        decode(np.zeros(heatmap_shape, np.float32), np.zeros(paf_shape, np.float32))


def test_steps_check_their_inputs():
    config = DecodeConfig()
    with pytest.raises(ValueError, match="upsampled heatmaps"):
        extract_peaks(np.zeros((17, 8, 8), np.float32), config)
    with pytest.raises(ValueError, match="upsampled PAFs"):
        score_limbs([np.empty((0, 4))] * 18, np.zeros((36, 8, 8), np.float32), config)
    with pytest.raises(ValueError, match="18 keypoints"):
        score_limbs([np.empty((0, 4))] * 17, np.zeros((38, 8, 8), np.float32), config)


def test_config_and_pose_are_immutable():
    config = DecodeConfig()
    with pytest.raises(AttributeError):
        config.upsample = 4  # type: ignore[misc]
    with pytest.raises(ValueError, match="paf_samples"):
        DecodeConfig(paf_samples=1)
    (pose,) = decode(*draw_maps([make_person((64, 28))]))
    with pytest.raises(ValueError):
        pose.keypoints[0, 0] = 1.0
    assert Pose(np.zeros((18, 3), np.float32), score=2.0, count=1).coco_score == 0.0
