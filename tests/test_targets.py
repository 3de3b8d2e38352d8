"""OpenPose targets against hand-computed values: peaks, background, PAF direction and support, masks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from posenas.posenet.pose.keypoints import BACKGROUND, LIMBS
from posenas.posenet.pose.targets import TargetConfig, downsample_mask, heatmap_targets, paf_targets, render_targets

SIGMA = 7.0  # input pixels at 128: 7/8 of the stride (pure scaling, 2.43 px, would fall between cells)


def _person(points: dict[int, tuple[float, float]], flag: int = 2) -> np.ndarray:
    """One body-18 person with the given keypoints (others unlabelled)."""
    person = np.zeros((1, 18, 3), dtype=np.float32)
    for k, (x, y) in points.items():
        person[0, k] = (x, y, flag)
    return person


def test_sigma_scales_with_the_input_down_to_seven_eighths_of_a_cell():
    assert TargetConfig().sigma_for(368) == 7.0
    assert TargetConfig().sigma_for(736) == 14.0
    assert TargetConfig().sigma_for(128) == 7.0
    assert TargetConfig(stride=4).sigma_for(128) == 3.5
    assert TargetConfig(sigma=3.0).sigma_for(128) == 3.0


def test_keypoint_on_a_cell_centre_peaks_at_one():
    # Cell (mx 4, my 6) has its centre at (8 * 4.5, 8 * 6.5) = (36, 52).
    heatmaps = heatmap_targets(_person({0: (36.0, 52.0)}), 128)
    assert heatmaps.shape == (19, 16, 16)
    nose = heatmaps[0]
    assert nose[6, 4] == pytest.approx(1.0)
    assert np.unravel_index(nose.argmax(), nose.shape) == (6, 4)
    # Cells 8 px away: exp(-64 / 98) = 0.52046; 8 px diagonally: exp(-128 / 98) = 0.27087; 16 px:
    # exp(-256 / 98) = 0.07337; 24 px: 0.0028 < 0.01, not drawn.
    assert nose[6, 5] == pytest.approx(0.52046, abs=1e-5) and nose[5, 4] == pytest.approx(0.52046, abs=1e-5)
    assert nose[7, 5] == pytest.approx(0.27087, abs=1e-5) and nose[6, 2] == pytest.approx(0.07337, abs=1e-5)
    assert nose[6, 1] == 0.0 and nose[6, 7] == 0.0
    # The drawn support is every cell within sqrt(98 ln 100) = 21.2 px = 2.65 cells: offsets i^2 + j^2 <= 7, 21 cells.
    assert np.count_nonzero(nose) == 21
    assert heatmaps[BACKGROUND][6, 4] == pytest.approx(0.0) and heatmaps[BACKGROUND][0, 0] == 1.0
    assert not heatmaps[1:18].any()


def test_keypoint_between_two_cells():
    # (40, 52) is 4 px from the centres of cells (4, 6) and (5, 6): exp(-16 / 98) = 0.84936.
    nose = heatmap_targets(_person({0: (40.0, 52.0)}), 128, TargetConfig(sigma=SIGMA))[0]
    expected = math.exp(-16 / (2 * SIGMA**2))
    assert expected == pytest.approx(0.84936, abs=1e-5)
    assert nose[6, 4] == pytest.approx(expected, rel=1e-5) and nose[6, 5] == pytest.approx(expected, rel=1e-5)
    assert nose[6, 4] == nose.max()
    # A narrow Gaussian (sigma 2.43 px, pure scaling of 7 px at 368) keeps only these two cells:
    # the diagonal neighbours at 4^2 + 8^2 = 80 px^2 get exp(-80 / 11.86) = 0.0012 < 0.01.
    narrow = heatmap_targets(_person({0: (40.0, 52.0)}), 128, TargetConfig(sigma=7 * 128 / 368))[0]
    assert np.count_nonzero(narrow) == 2 and narrow[6, 4] == pytest.approx(0.25937, abs=1e-5)


def test_overlapping_people_sum_and_clip():
    # Two people 16 px apart: at the cell between them each adds exp(-64 / 98) = 0.52046 -> 1.04 -> 1.
    two = np.concatenate([_person({0: (28.0, 52.0)}), _person({0: (44.0, 52.0)})])
    assert heatmap_targets(two, 128)[0][6, 4] == 1.0
    # At (mx 4, my 4) both are 16 px up and 8 px across: 2 x exp(-(64 + 256) / 98) = 0.07637.
    assert heatmap_targets(two, 128)[0][4, 4] == pytest.approx(0.07637, abs=1e-5)
    same_cell = np.concatenate([_person({0: (36.0, 52.0)}), _person({0: (37.0, 52.0)})])
    assert heatmap_targets(same_cell, 128)[0][6, 4] == 1.0  # 1 + 0.92, clipped


def test_unlabelled_and_outside_points_draw_nothing():
    person = _person({0: (36.0, 52.0), 3: (36.0, 52.0), 5: (-3.0, 20.0), 6: (130.0, 20.0)})
    person[0, 3, 2] = 0  # unlabelled
    heatmaps = heatmap_targets(person, 128)
    assert heatmaps[0].max() == 1.0 and not heatmaps[3].any() and not heatmaps[5].any() and not heatmaps[6].any()
    occluded = _person({0: (36.0, 52.0)}, flag=1)  # labelled but hidden: still supervised
    assert heatmap_targets(occluded, 128)[0].max() == 1.0


def test_paf_direction_and_support():
    # Limb 6 is neck (1) -> r_sho (2), channels 12 (x) and 13 (y); drawn from (20, 52) to (60, 52).
    assert LIMBS[6] == (1, 2)
    pafs = paf_targets(_person({1: (20.0, 52.0), 2: (60.0, 52.0)}), 128)
    assert pafs.shape == (38, 16, 16)
    x, y = pafs[12], pafs[13]
    # Support: cell centres within one cell (8 px) of the segment. Row my 6 (y = 52): centres 12 .. 68
    # (mx 1..8); rows 5 and 7 (8 px off): only centres over the segment, 20 .. 60 (mx 2..7). 20 cells,
    # each exactly the unit vector (1, 0).
    support = set(map(tuple, np.argwhere(x != 0)))
    assert support == {(6, mx) for mx in range(1, 9)} | {(my, mx) for my in (5, 7) for mx in range(2, 8)}
    assert np.all(x[x != 0] == 1.0) and not y.any()
    assert np.count_nonzero(pafs) == 20  # no other limb has both ends labelled


def test_paf_points_from_first_to_second_keypoint_diagonally():
    # r_sho (2) -> r_elb (3) is limb 7, channels 14/15; a 45-degree limb down-left.
    pafs = paf_targets(_person({2: (84.0, 20.0), 3: (52.0, 52.0)}), 128)
    x, y = pafs[14], pafs[15]
    on = x != 0
    assert on.sum() >= 5
    assert np.allclose(x[on], -math.sqrt(0.5)) and np.allclose(y[on], math.sqrt(0.5))
    # The segment passes through the centres of cells (10, 2), (9, 3), ..., (6, 6): all on the support.
    for mx, my in ((10, 2), (9, 3), (8, 4), (7, 5), (6, 6)):
        assert on[my, mx]


def test_overlapping_limbs_average():
    forward = _person({1: (20.0, 52.0), 2: (60.0, 52.0)})
    backward = _person({1: (60.0, 52.0), 2: (20.0, 52.0)})
    both = paf_targets(np.concatenate([forward, forward, backward]), 128)
    assert both[12][6, 4] == pytest.approx(1 / 3)  # (1 + 1 - 1) / 3


def test_limb_shorter_than_a_cell_is_supported():
    # Eye -> ear (limb 17: r_eye 14 -> r_ear 16, channels 34/35), 3 px long inside cell (4, 6).
    pafs = paf_targets(_person({14: (35.0, 51.0), 16: (38.0, 51.0)}), 128)
    assert pafs[34][6, 4] == 1.0 and np.count_nonzero(pafs[34]) >= 1


def test_zero_length_and_half_labelled_limbs_are_not_drawn():
    assert not paf_targets(_person({1: (20.0, 52.0), 2: (20.0, 52.0)}), 128).any()
    person = _person({1: (20.0, 52.0), 2: (60.0, 52.0)})
    person[0, 2, 2] = 0
    assert not paf_targets(person, 128).any()


def test_mask_cells_touched_by_ignored_pixels():
    ignore = np.zeros((128, 128), dtype=bool)
    ignore[0:8, 16:24] = True  # exactly cell (my 0, mx 2)
    ignore[40, 30] = True  # one pixel of cell (5, 3)
    mask = downsample_mask(ignore, 128)
    assert mask.shape == (16, 16) and mask.dtype == np.float32
    assert mask[0, 2] == 0 and mask[5, 3] == 0 and mask.sum() == 256 - 2
    assert downsample_mask(None, 128).min() == 1.0


def test_render_targets_bundle_and_empty_image():
    heatmaps, pafs, mask = render_targets(np.zeros((0, 18, 3)), 128)
    assert not heatmaps[:18].any() and np.all(heatmaps[BACKGROUND] == 1) and not pafs.any() and mask.min() == 1
    with pytest.raises(ValueError, match="multiple of the stride"):
        render_targets(np.zeros((0, 18, 3)), 100)
