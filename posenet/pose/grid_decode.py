"""The microcontroller decoder: peaks and limb integrals on the stride-8 grid itself, no upsampling.

``decode`` (the upsampling decoder) resizes every map 8x with cubic interpolation before it looks for
peaks: at 16x16 maps that is 18 channels of 128x128 floats, 64 KB for one channel alone on a chip with
128 KB of SRAM. This decoder reads the network's maps where they are, and is the Python twin of
``posenet/nets/export/csrc/pose_grid.c`` (same steps, same float32 arithmetic, same order):

1. ``grid_peaks``: a cell is a candidate when it is >= ``peak_threshold``, > its left and upper
   neighbours and >= its right and lower ones (``decode``'s rule, on cells); candidates are ordered by
   descending cell value (ties in raster order) and refined to sub-cell precision by fitting a
   parabola to the logarithm of the cell and its two neighbours along each axis, which is exact for the
   Gaussian blobs the network is trained to draw. At a border the parabola goes through the border cell
   and the two cells inside it. The offset is clamped to half a cell; the peak's score is the fitted
   maximum. Suppression within ``nms_radius`` then visits them in that order, as ``decode``;
2. ``grid_limbs``: each candidate pair of a limb is sampled at ``paf_samples`` points; the PAF at a
   point is the bilinear interpolation of the four cells around it (cell centres at ``stride * (i +
   0.5)``, clamped to the outermost centres); the affinity and the acceptance rule are ``decode``'s,
   with the sum taken left to right and every quantity in float32;
3. grouping is ``assemble``, unchanged.

On the default synthetic val set and on COCO, the oracle AP of this decoder is within 0.01 of the
upsampling decoder's (benchmarks/BENCHMARKS.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from posenas.posenet.pose.keypoints import LIMBS, NUM_BODY_KEYPOINTS, NUM_PAFS

__all__ = ["grid_limbs", "grid_peaks", "refine_offsets"]

_LOG_FLOOR = np.float32(1e-3)  # values are floored here before taking logs
_HALF = np.float32(0.5)
_F32 = np.float32


def grid_peaks(heatmaps: np.ndarray, stride: int, threshold: float, nms_radius: float) -> list[np.ndarray]:
    """Keypoint candidates of the 18 body keypoints from stride-``stride`` heatmaps (C >= 18, h, w): a list
    of (k, 4) float32 arrays (x, y, score, id) in input pixels, as ``extract_peaks`` returns them."""
    maps = np.asarray(heatmaps, dtype=np.float32)[:NUM_BODY_KEYPOINTS]
    if maps.ndim != 3 or maps.shape[0] != NUM_BODY_KEYPOINTS:
        raise ValueError(f"heatmaps must have shape (>=18, h, w), got {np.shape(heatmaps)}")
    value = maps
    is_peak = value >= _F32(threshold)
    is_peak[:, :, 1:] &= value[:, :, 1:] > value[:, :, :-1]
    is_peak[:, :, :-1] &= value[:, :, :-1] >= value[:, :, 1:]
    is_peak[:, 1:] &= value[:, 1:] > value[:, :-1]
    is_peak[:, :-1] &= value[:, :-1] >= value[:, 1:]
    channel, row, col = np.nonzero(is_peak)  # channel-major, then raster order
    cell = maps[channel, row, col]
    order = np.lexsort((-cell, channel))  # stable: equal cells stay in raster order
    channel, row, col, cell = channel[order], row[order], col[order], cell[order]
    tx, gain_x = refine_offsets(maps, channel, row, col, axis=2)
    ty, gain_y = refine_offsets(maps, channel, row, col, axis=1)
    stride32 = _F32(stride)
    x = ((col.astype(np.float32) + _HALF) + tx) * stride32
    y = ((row.astype(np.float32) + _HALF) + ty) * stride32
    score = np.exp((np.log(np.maximum(cell, _LOG_FLOOR)) + gain_x) + gain_y).astype(np.float32)
    bounds = np.searchsorted(channel, np.arange(NUM_BODY_KEYPOINTS + 1))
    tables, first = [], 0
    for k in range(NUM_BODY_KEYPOINTS):
        lo, hi = bounds[k], bounds[k + 1]
        kept = lo + _suppress(x[lo:hi], y[lo:hi], nms_radius)
        ids = np.arange(first, first + kept.size, dtype=np.float32)
        tables.append(np.stack([x[kept], y[kept], score[kept], ids], axis=1).astype(np.float32))
        first += kept.size
    return tables


def refine_offsets(
    maps: np.ndarray, channel: np.ndarray, row: np.ndarray, col: np.ndarray, axis: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sub-cell offset (cells, in [-0.5, 0.5]) of each peak along ``axis`` (2: x, 1: y) and the gain of
    the fitted log-parabola there (added to the cell's log value), float32.

    Inside: the parabola through (-1, L), (0, C), (1, R) has curvature a2 = L - 2C + R and slope
    b = (R - L) / 2 at 0; its vertex is at -b / a2. At a border cell the parabola goes through the
    cell and the two inside it, (0, C), (1, N1), (2, N2) (mirrored at the far border): a2 = C - 2 N1 + N2,
    b = N1 - C - a2 / 2. Not downward (a2 >= 0), or fewer than three cells: offset 0."""
    size = maps.shape[axis]
    pos = col if axis == 2 else row

    def log_at(offset: np.ndarray) -> np.ndarray:
        where = np.clip(pos + offset, 0, size - 1)
        values = maps[channel, row, where] if axis == 2 else maps[channel, where, col]
        return np.log(np.maximum(values, _LOG_FLOOR)).astype(np.float32)

    centre = log_at(np.zeros_like(pos))
    first = pos == 0
    last = pos == size - 1
    direction = np.where(first, 1, np.where(last, -1, 0))
    inside = direction == 0
    # Inside: neighbours at -1 and +1. At a border: the two cells inward, in the inward direction.
    near = np.where(inside, log_at(-np.ones_like(pos)), log_at(direction))
    far = np.where(inside, log_at(np.ones_like(pos)), log_at(2 * direction))
    a2 = np.where(inside, (near - centre) + (far - centre), (centre - (near + near)) + far).astype(np.float32)
    b = np.where(inside, (far - near) * _HALF, (near - centre) - a2 * _HALF).astype(np.float32)
    usable = (a2 < 0) & (size >= 3)
    safe = np.where(usable, a2, _F32(-1.0)).astype(np.float32)
    t = np.clip(-b / safe, -_HALF, _HALF).astype(np.float32)
    t = np.where(usable, t, _F32(0.0)).astype(np.float32)
    gain = (b * t + (a2 * _HALF) * (t * t)).astype(np.float32)
    # At the far border the inward direction is -1: the offset and the slope change sign together.
    offset = np.where(direction < 0, -t, t).astype(np.float32)
    return offset, gain


def _suppress(x: np.ndarray, y: np.ndarray, radius: float) -> np.ndarray:
    """Indices kept by greedy suppression of peaks given in visiting order (float32 distances)."""
    keep = np.ones(x.size, dtype=bool)
    radius_sq = _F32(radius) * _F32(radius)
    for i in range(x.size):  # sequential by nature: only kept peaks suppress
        if keep[i]:
            dx, dy = x[i + 1 :] - x[i], y[i + 1 :] - y[i]
            keep[i + 1 :] &= ~((dx * dx + dy * dy) < radius_sq)
    return np.flatnonzero(keep)


def grid_limbs(
    peaks: Sequence[np.ndarray], pafs: np.ndarray, stride: int, samples: int, min_score: float, min_ratio: float
) -> list[np.ndarray]:
    """Accepted connections of every limb from stride-``stride`` PAFs (38, h, w), as ``score_limbs``
    returns them: (m, 3) float32 arrays (from id, to id, affinity), greedy one-to-one by affinity."""
    from posenas.posenet.pose.decode import _match_one_to_one

    fields = np.asarray(pafs, dtype=np.float32)
    if fields.ndim != 3 or fields.shape[0] != NUM_PAFS:
        raise ValueError(f"PAFs must have shape (38, h, w), got {np.shape(pafs)}")
    connections = []
    for limb, (a, b) in enumerate(LIMBS):
        starts, ends = peaks[a], peaks[b]
        if len(starts) == 0 or len(ends) == 0:
            connections.append(np.empty((0, 3), dtype=np.float32))
            continue
        affinity, accepted = _pair_affinities(starts[:, :2], ends[:, :2], fields[2 * limb : 2 * limb + 2], stride,
                                              samples, min_score, min_ratio)  # fmt: skip
        rows, cols = _match_one_to_one(affinity, accepted)
        found = np.column_stack([starts[rows, 3], ends[cols, 3], affinity[rows, cols]])
        connections.append(found.astype(np.float32))
    return connections


def _pair_affinities(starts: np.ndarray, ends: np.ndarray, field: np.ndarray, stride: int, samples: int,
                     min_score: float, min_ratio: float) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """float32 affinity (n, m) of every pair and which pairs pass (``decode``'s rule, on the grid)."""
    dx = (ends[None, :, 0] - starts[:, None, 0]).astype(np.float32)
    dy = (ends[None, :, 1] - starts[:, None, 1]).astype(np.float32)
    length = np.sqrt(dx * dx + dy * dy).astype(np.float32)
    safe = np.where(length > 0, length, _F32(1.0)).astype(np.float32)
    ux, uy = dx / safe, dy / safe
    h, w = field.shape[1:]
    total = np.zeros(dx.shape, dtype=np.float32)
    support = np.zeros(dx.shape, dtype=np.int64)
    last = _F32(samples - 1)
    stride32 = _F32(stride)
    for s in range(samples):
        t = _F32(s) / last
        px = starts[:, None, 0] + t * dx
        py = starts[:, None, 1] + t * dy
        vx, vy = _bilinear(field, px / stride32 - _HALF, py / stride32 - _HALF, h, w)
        projection = vx * ux + vy * uy
        supports = projection > _F32(min_score)
        total = total + np.where(supports, projection, _F32(0.0)).astype(np.float32)
        support += supports
    affinity = (total / np.maximum(support, 1).astype(np.float32)).astype(np.float32)
    ratio = support.astype(np.float32) / _F32(samples)
    accepted = (length > 0) & (affinity > 0) & (ratio > _F32(min_ratio))
    return affinity, accepted


def _bilinear(field: np.ndarray, gx: np.ndarray, gy: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Both channels of a (2, h, w) field at grid coordinates (cell centres at integers), clamped to the
    outermost centres: ((1 - fy) * top + fy * bottom), top = (1 - fx) * v00 + fx * v01, in float32."""
    gx = np.clip(gx, _F32(0.0), _F32(w - 1)).astype(np.float32)
    gy = np.clip(gy, _F32(0.0), _F32(h - 1)).astype(np.float32)
    c0 = np.minimum(np.floor(gx).astype(np.intp), max(w - 2, 0))
    r0 = np.minimum(np.floor(gy).astype(np.intp), max(h - 2, 0))
    c1, r1 = np.minimum(c0 + 1, w - 1), np.minimum(r0 + 1, h - 1)
    fx = (gx - c0.astype(np.float32)).astype(np.float32)
    fy = (gy - r0.astype(np.float32)).astype(np.float32)
    one = _F32(1.0)
    out = []
    for channel in field:
        top = (one - fx) * channel[r0, c0] + fx * channel[r0, c1]
        bottom = (one - fx) * channel[r1, c0] + fx * channel[r1, c1]
        out.append(((one - fy) * top + fy * bottom).astype(np.float32))
    return out[0], out[1]
