"""The microcontroller decoder: peaks and limb integrals on the stride-8 grid itself, no upsampling.

``decode`` (the upsampling decoder) resizes every map 8x with cubic interpolation before it looks for
peaks: at 16x16 maps that is 18 channels of 128x128 floats, 64 KB for one channel alone on a chip with
128 KB of SRAM. This decoder reads the network's maps where they are, and is the Python twin of
``posenet/export/csrc/pose_grid.c`` (same steps, same float32 arithmetic, same order):

1. ``grid_peaks``: a cell is a candidate when it is >= ``peak_threshold``, > its left and upper
   neighbours and >= its right and lower ones (``decode``'s rule, on cells); candidates are ordered by
   descending cell value (ties in raster order) and refined to sub-cell precision by fitting a
   parabola to the logarithm (``floored_log``, a polynomial the C computes identically) of the cell and
   its two neighbours along each axis, which is exact for the
   Gaussian blobs the network is trained to draw. At a border the parabola goes through the border cell
   and the two cells inside it. The offset is clamped to half a cell; the peak's score is the fitted
   maximum. Suppression within ``nms_radius`` then visits them in that order, as ``decode``;
2. ``grid_limbs``: each candidate pair of a limb is sampled at ``paf_samples`` points; the PAF at a
   point is the bilinear interpolation of the four cells around it (cell centres at ``stride * (i +
   0.5)``, clamped to the outermost centres); the affinity and the acceptance rule are ``decode``'s,
   with the samples summed from the middle outwards (``sample_order``) and every quantity in float32;
3. grouping is ``assemble``, unchanged.

Oracle AP at input 128 (benchmarks/BENCHMARKS.md): 0.589 on the default synthetic val set and 0.823 on
shared/data/coco_sample, against the upsampling decoder's 0.552 and 0.724 (the sub-cell fit is exact for the
targets' Gaussians).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from posenas.posenet.pose.grouping import match_one_to_one
from posenas.posenet.pose.keypoints import LIMBS, NUM_BODY_KEYPOINTS, NUM_PAFS

__all__ = ["fast_exp", "floored_log", "grid_limbs", "grid_peaks", "refine_offsets", "sample_order"]

_F32 = np.float32
_LOG_FLOOR = _F32(1e-3)  # values are floored here before taking logs
_HALF = _F32(0.5)
# Polynomial log and exp in float32, bit for bit those of pose_grid.c (hex: exactly the C literals).
_LOG_POLY = [
    _F32(float.fromhex(c))
    for c in (
        "0x1.d4f456p-4",
        "-0x1.809922p-3",
        "0x1.a7667p-3",
        "-0x1.fde9dcp-3",
        "0x1.54fb36p-2",
        "-0x1.0001e6p-1",
        "0x1.000046p+0",
    )
]
_EXP2_POLY = [
    _F32(float.fromhex(c))
    for c in ("0x1.f0ca8p-10", "0x1.25264ap-7", "0x1.c9a1ccp-5", "0x1.ebceecp-3", "0x1.62e52ap-1", "0x1.fffffcp-1")
]
_SQRT2, _LN2, _LOG2E = (_F32(float.fromhex(c)) for c in ("0x1.6a09e6p+0", "0x1.62e43p-1", "0x1.715476p+0"))


def floored_log(values: np.ndarray) -> np.ndarray:
    """ln(max(v, 1e-3)) in float32, NaN counted as below the floor: v = m 2^e with m in [sqrt(1/2), sqrt(2)),
    ln v = e ln 2 + z P(z), z = m - 1, P a degree-6 fit (absolute error under 3e-7). The same operations as
    pose_grid.c, so that the C decoder and this one agree bit for bit without depending on libm or NumPy's
    SIMD log."""
    v = np.asarray(values, dtype=np.float32)
    v = np.where(v > _LOG_FLOOR, v, _LOG_FLOOR).astype(np.float32)
    bits = v.view(np.uint32)
    exponent = (bits >> np.uint32(23)).astype(np.int32) - 127
    m = ((bits & np.uint32(0x7FFFFF)) | np.uint32(0x3F800000)).astype(np.uint32).view(np.float32)
    big = m > _SQRT2
    m = np.where(big, m * _HALF, m).astype(np.float32)
    exponent = exponent + big
    z = m - _F32(1.0)
    p = np.full_like(z, _LOG_POLY[0])
    for c in _LOG_POLY[1:]:
        p = p * z + c
    p = p * z
    return (exponent.astype(np.float32) * _LN2 + p).astype(np.float32)


def fast_exp(values: np.ndarray) -> np.ndarray:
    """e^x in float32 as pose_grid.c: 2^(x log2 e) = 2^k 2^f, 2^f a degree-5 fit (relative error under 2e-7);
    0 below 2^-126 (and for NaN), infinity from 2^128."""
    y = np.asarray(values, dtype=np.float32) * _LOG2E
    small, large = ~(y > _F32(-126.0)), y >= _F32(128.0)
    y_safe = np.where(small | large, _F32(0.0), y).astype(np.float32)
    k = np.floor(y_safe)
    f = (y_safe - k).astype(np.float32)
    q = np.full_like(f, _EXP2_POLY[0])
    for c in _EXP2_POLY[1:]:
        q = q * f + c
    scale = ((k.astype(np.int32) + 127).astype(np.uint32) << np.uint32(23)).view(np.float32)
    with np.errstate(over="ignore"):
        out = (q * scale).astype(np.float32)
    return np.where(small, _F32(0.0), np.where(large, _F32(np.inf), out)).astype(np.float32)


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
    score = fast_exp((floored_log(cell) + gain_x) + gain_y)
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
        return floored_log(values)

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

    fields = np.asarray(pafs, dtype=np.float32)
    if fields.ndim != 3 or fields.shape[0] != NUM_PAFS:
        raise ValueError(f"PAFs must have shape (38, h, w), got {np.shape(pafs)}")
    connections = []
    for limb, (a, b) in enumerate(LIMBS):
        starts, ends = peaks[a], peaks[b]
        if len(starts) == 0 or len(ends) == 0:
            connections.append(np.empty((0, 3), dtype=np.float32))
            continue
        affinity, accepted = _pair_affinities(
            starts[:, :2], ends[:, :2], fields[2 * limb : 2 * limb + 2], stride, samples, min_score, min_ratio
        )
        rows, cols = match_one_to_one(affinity, accepted)
        found = np.column_stack([starts[rows, 3], ends[cols, 3], affinity[rows, cols]])
        connections.append(found.astype(np.float32))
    return connections


def _pair_affinities(
    starts: np.ndarray,
    ends: np.ndarray,
    field: np.ndarray,
    stride: int,
    samples: int,
    min_score: float,
    min_ratio: float,
) -> tuple[np.ndarray, np.ndarray]:
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
    inv_stride = _F32(1.0) / _F32(stride)  # a multiplication on the chip, here too
    gx0 = starts[:, None, 0] * inv_stride - _HALF  # grid units: cell centres at integers
    gy0 = starts[:, None, 1] * inv_stride - _HALF
    gdx, gdy = dx * inv_stride, dy * inv_stride
    for s in sample_order(samples):
        t = _F32(s) / last
        vx, vy = _bilinear(field, gx0 + t * gdx, gy0 + t * gdy, h, w)
        projection = vx * ux + vy * uy
        supports = projection > _F32(min_score)
        total = total + np.where(supports, projection, _F32(0.0)).astype(np.float32)
        support += supports
    affinity = (total / np.maximum(support, 1).astype(np.float32)).astype(np.float32)
    ratio = support.astype(np.float32) / _F32(samples)
    accepted = (length > 0) & (affinity > 0) & (ratio > _F32(min_ratio))
    return affinity, accepted


def sample_order(samples: int) -> list[int]:
    """The order in which a pair's samples are visited and summed: from the middle outwards (ties: the
    lower first). The C decoder stops scoring a pair as soon as it cannot pass, and a wrong pair leaves
    the field soonest in its middle; the affinity is summed in this order in both."""
    return sorted(range(samples), key=lambda s: (abs(2 * s - (samples - 1)), s))


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
