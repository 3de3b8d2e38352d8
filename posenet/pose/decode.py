"""Multi-person pose decoding: stride-8 heatmaps + part affinity fields (PAFs) -> people.

This is the bottom-up grouping of the OpenPose family, with Lightweight OpenPose's constants, written
as the inverse of posenas's target conventions:

* heatmap ``k`` (of 18 keypoints; channel 18 is the background and is ignored) holds a Gaussian around
  each keypoint, measured to the output cell centre ``stride * (m + 0.5)`` in input coordinates;
* PAF channels ``2i`` and ``2i + 1`` of limb ``i`` hold the unit vector from ``LIMBS[i][0]`` to
  ``LIMBS[i][1]`` near the segment between the two keypoints.

Decoding runs in four steps, each a public function so that it can be tested and reused on its own:

1. ``upsample_maps``: cubic upsampling of the maps (by the stride, by default, i.e. to input size);
2. ``extract_peaks``: keypoint candidates = thresholded local maxima, thinned by a score-ordered
   suppression radius;
3. ``score_limbs``: every candidate pair of every limb is scored by sampling the PAF along it, then
   matched greedily one-to-one;
4. ``assemble``: connections are joined into people in ``GROUPING_ORDER`` (neck outwards), by
   ``grouping.py``, which the grid decoder shares.

All coordinates are continuous input-pixel coordinates (pixel ``i`` covers ``[i, i + 1)``, centre
``i + 0.5``), as everywhere in posenas; upsampled pixel ``j`` therefore sits at
``(j + 0.5) * stride / upsample``.

Where this differs from Lightweight OpenPose, and why:

* borders: the maps are continued two cells outwards before upsampling (``upsample_maps``), because
  cv2's replicated border makes false edge peaks at 16x16 maps, where the border cells are 1/8 of
  the image; ``DecodeConfig(extrapolate_borders=False)`` restores the reference behaviour;
* plateaus: a peak may tie its right and lower neighbours (``_local_maxima``), because cubic x8
  upsampling of a symmetric blob yields two equal pixels, where the strict rule finds no peak;
* suppression visits peaks by descending score, not by x, so that a cluster keeps its strongest;
* grouping uses OpenPose's robust form (merging two partial people), and, with ``GROUPING_ORDER``
  visiting limbs from the neck outwards as a tree, gives the reference's people on its inputs.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from posenas.posenet.pose import grouping
from posenas.posenet.pose.grid_decode import grid_limbs, grid_peaks
from posenas.posenet.pose.grouping import Pose
from posenas.posenet.pose.keypoints import (
    GROUPING_ORDER,
    LIMBS,
    NUM_BODY_KEYPOINTS,
    NUM_HEATMAPS,
    NUM_PAFS,
)

__all__ = [
    "DECODERS",
    "DecodeConfig",
    "Pose",
    "assemble",
    "decode",
    "extract_peaks",
    "candidate_counts",
    "score_limbs",
    "upsample_maps",
]

GRID_PAF_SAMPLES = 5  # the grid decoder's default paf_samples (pose_grid.c's pg_default_config)
DECODERS = ("upsampled", "grid")  # DecodeConfig.decoder: the reference, and the microcontroller's
_BORDER_CELLS = 2  # the cubic kernel reaches two cells beyond the outermost cell centre
_LOG_FLOOR = 1e-3  # heatmap values are floored here before taking logs


@dataclass(frozen=True)
class DecodeConfig:
    """Constants of the decoder. Lengths are in input pixels; defaults are Lightweight OpenPose's,
    with its 6-px suppression radius (at a 368-px input) scaled to a 128-px input."""

    upsample: int = 8
    """Upsampling factor of the network maps before peak search. 8 = the stride = input resolution."""
    stride: int = 8
    """Input pixels per output cell of the network."""
    peak_threshold: float = 0.1
    """Heatmap values below this are never keypoints."""
    nms_radius: float = 6 * 128 / 368
    """A peak closer than this to a higher-scoring peak of the same keypoint is dropped."""
    paf_samples: int = None  # type: ignore[assignment]  # resolved in __post_init__
    """Points sampled along a candidate limb, both endpoints included. Default: the decoder's, 10 for
    "upsampled" (Lightweight OpenPose's) and ``GRID_PAF_SAMPLES`` = 5 for "grid" (the same oracle AP, half the
    microcontroller's limb time)."""
    paf_min_score: float = 0.05
    """A sample supports a limb when the PAF's projection on the limb direction exceeds this."""
    paf_min_ratio: float = 0.8
    """A limb is accepted only when more than this fraction of its samples support it."""
    min_keypoints: int = 3
    """People with fewer keypoints are dropped."""
    min_mean_score: float = 0.2
    """People whose score per keypoint is lower are dropped."""
    extrapolate_borders: bool = True
    """Continue the maps by two cells beyond each border before upsampling (see ``upsample_maps``).
    False: cv2's replicated border cells, as Lightweight OpenPose, which make false peaks at the edge."""
    decoder: str = "upsampled"
    """"upsampled": peaks on the maps upsampled by ``upsample`` (this module, the reference); "grid": peaks
    and limb integrals on the network's grid with sub-cell refinement (``grid_decode``, the
    microcontroller's decoder, which ignores ``upsample`` and ``extrapolate_borders``)."""

    def __post_init__(self) -> None:
        if self.paf_samples is None:
            object.__setattr__(self, "paf_samples", GRID_PAF_SAMPLES if self.decoder == "grid" else 10)
        if self.upsample < 1 or self.stride < 1:
            raise ValueError(f"upsample and stride must be >= 1, got {self.upsample} and {self.stride}")
        if self.paf_samples < 2:
            raise ValueError(f"paf_samples must be >= 2 (both endpoints), got {self.paf_samples}")
        if self.nms_radius < 0:
            raise ValueError(f"nms_radius must be >= 0, got {self.nms_radius}")
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {self.decoder!r}")

    @classmethod
    def for_input(cls, input_size: int, **overrides: object) -> DecodeConfig:
        """Defaults for a network input of ``input_size`` pixels: the suppression radius scales with it."""
        return cls(**{"nms_radius": 6 * input_size / 368, **overrides})  # type: ignore[arg-type]

    @property
    def pixel_size(self) -> float:
        """Input pixels per upsampled pixel."""
        return self.stride / self.upsample


def upsample_maps(maps: np.ndarray, config: DecodeConfig, heatmap_channels: int = 0) -> np.ndarray:
    """(C, h, w) network maps -> (C, h * upsample, w * upsample) float32, by cubic interpolation.

    cv2 resizes channel-last images of any channel count in one call, and its pixel-centre alignment
    (dst ``j`` samples src ``(j + 0.5) / f - 0.5``) is exactly our cell-centre convention. The result
    is a channel-first *view* of cv2's channel-last output: copying it into channel-first order would
    cost several times the resize itself.

    Borders: beyond the outermost cell centres cv2 extrapolates from replicated border cells. On a
    slope rising inwards the cubic kernel's negative lobe then dips below the border value and rises
    again at the edge, a false peak (up to 0.8 for a keypoint 1-2 cells inside); and a keypoint between
    the edge and the outer cell centre is pulled to the edge. With ``config.extrapolate_borders`` the
    maps are first extended by two cells: the first ``heatmap_channels`` channels as Gaussians (a
    parabola in log space through the last three cells, exact for the targets' blobs), the others
    linearly. Oracle AP (targets from the ground truth, decoded; 300 synthetic val images, seed 1,
    128 px): 0.488 replicated, 0.493 all linear, 0.551 as here.
    """
    maps = np.asarray(maps, dtype=np.float32)
    pad = _BORDER_CELLS if config.extrapolate_borders else 0
    if pad:
        maps = _extend_borders(maps, pad, heatmap_channels)
    channels_last = np.ascontiguousarray(np.moveaxis(maps, 0, -1))
    height, width = channels_last.shape[:2]
    size = (width * config.upsample, height * config.upsample)
    resized = cv2.resize(channels_last, size, interpolation=cv2.INTER_CUBIC)
    if resized.ndim == 2:  # cv2 drops the axis of a single channel
        resized = resized[..., None]
    crop = pad * config.upsample
    resized = resized[crop : resized.shape[0] - crop, crop : resized.shape[1] - crop]
    return np.moveaxis(resized, -1, 0)


def _extend_borders(maps: np.ndarray, cells: int, heatmap_channels: int) -> np.ndarray:
    """(C, h, w) -> (C, h + 2 cells, w + 2 cells): every border continued outwards, rows then columns
    (so corners are continued twice). Heatmap channels continue as Gaussians, the rest linearly."""
    extended = maps
    for axis in (1, 2):
        lines = np.moveaxis(extended, axis, -1)
        before = _continue_line(lines[..., :3][..., ::-1], cells, heatmap_channels)[..., ::-1]
        after = _continue_line(lines[..., -3:], cells, heatmap_channels)
        extended = np.moveaxis(np.concatenate([before, lines, after], axis=-1), -1, axis)
    return extended


def _continue_line(edge: np.ndarray, cells: int, heatmap_channels: int) -> np.ndarray:
    """Values 1..cells steps beyond a border, from the (C, ..., <=3) cells nearest to it, ordered
    towards it (v2, v1, v0). Fewer than 3 cells: linear (2) or constant (1)."""
    v0 = edge[..., -1:]
    v1 = edge[..., -2:-1] if edge.shape[-1] > 1 else v0
    steps = np.arange(1, cells + 1, dtype=np.float32)
    linear = v0 + (v0 - v1) * steps
    if heatmap_channels == 0 or edge.shape[-1] < 3:
        return linear
    # A Gaussian is a downward parabola in log space: fit it to the last three cells and continue it.
    # Where the fit is not downward (no blob here, or zeros) the linear continuation stands, and the
    # Gaussian one is capped by it (or by the border value): the extension never invents a peak.
    blobs = edge[:heatmap_channels]
    log2, log1, log0 = (np.log(np.maximum(blobs[..., i : i + 1], _LOG_FLOOR)) for i in range(3))
    curvature = log0 - 2 * log1 + log2
    slope = log0 - log1
    gaussian = np.exp(log0 + slope * steps + curvature * steps * (steps + 1) / 2)
    blob_linear = linear[:heatmap_channels]
    bounded = np.minimum(gaussian, np.maximum(blob_linear, blobs[..., -1:]))
    return np.concatenate([np.where(curvature < 0, bounded, blob_linear), linear[heatmap_channels:]])


def extract_peaks(heatmaps_upsampled: np.ndarray, config: DecodeConfig) -> list[np.ndarray]:
    """Keypoint candidates of each of the 18 body keypoints: a list of (k, 4) arrays (x, y, score, id).

    ``heatmaps_upsampled`` is (C >= 18, H, W); channels past 17 (the background) are ignored. Within a
    channel peaks are ordered by descending score; ids number all peaks 0, 1, ... across channels.
    """
    heatmaps = np.asarray(heatmaps_upsampled, dtype=np.float32)
    if heatmaps.ndim != 3 or heatmaps.shape[0] < NUM_BODY_KEYPOINTS:
        raise ValueError(f"upsampled heatmaps must have shape (>=18, H, W), got {heatmaps.shape}")
    channel, x, y, score = _local_maxima(heatmaps[:NUM_BODY_KEYPOINTS], config)
    by_channel_then_score = np.lexsort((-score, channel))  # stable: ties stay in raster order
    channel, x, y, score = (a[by_channel_then_score] for a in (channel, x, y, score))
    bounds = np.searchsorted(channel, np.arange(NUM_BODY_KEYPOINTS + 1))
    kept = np.concatenate(
        [lo + _suppress_close(x[lo:hi], y[lo:hi], config.nms_radius) for lo, hi in itertools.pairwise(bounds)]
    )
    table = np.stack([x[kept], y[kept], score[kept], np.arange(kept.size)], axis=1).astype(np.float32)
    return np.split(table, np.searchsorted(channel[kept], np.arange(1, NUM_BODY_KEYPOINTS)))


def candidate_counts(heatmaps_upsampled: np.ndarray, config: DecodeConfig) -> np.ndarray:
    """Local maxima above the threshold per body keypoint, before suppression: (18,) ints. A decoder
    with static buffers (the exported C) must hold this many candidates to decode like this one."""
    channel = _local_maxima(np.asarray(heatmaps_upsampled[:NUM_BODY_KEYPOINTS], dtype=np.float32), config)[0]
    return np.bincount(channel, minlength=NUM_BODY_KEYPOINTS)


def _local_maxima(heatmaps: np.ndarray, config: DecodeConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All local maxima >= threshold of (K, H, W) maps: (channel, x, y, score), x and y in input px.

    A maximum is strictly greater than its left and upper neighbours and not smaller than its right
    and lower ones. The strict 4-neighbour rule alone finds nothing on a plateau, and plateaus are
    common: cubic upsampling of a symmetric cell by an even factor puts the cell centre between two
    pixels of exactly equal value. A tie to the right (below) moves the peak half a pixel right
    (down), to the plateau's middle.
    """
    # Shifted comparisons over whole maps, in place. (Comparing only above-threshold pixels is no
    # cheaper: sigma-7 blobs put ~13% of the pixels of a 3-person frame above 0.1.)
    is_peak = heatmaps >= config.peak_threshold
    is_peak[:, :, 1:] &= heatmaps[:, :, 1:] > heatmaps[:, :, :-1]  # beats the left neighbour
    is_peak[:, :, :-1] &= heatmaps[:, :, :-1] >= heatmaps[:, :, 1:]  # ties or beats the right one
    is_peak[:, 1:] &= heatmaps[:, 1:] > heatmaps[:, :-1]  # beats the upper neighbour
    is_peak[:, :-1] &= heatmaps[:, :-1] >= heatmaps[:, 1:]  # ties or beats the lower one
    # Searched channel-last: the mask's memory order for cv2's output (upsample_maps returns a view),
    # where flatnonzero needs no copy; a 3-D nonzero would be several times slower.
    found = np.moveaxis(is_peak, 0, -1)
    row, col, channel = np.unravel_index(np.flatnonzero(found), found.shape)
    score = heatmaps[channel, row, col]
    tie_right = _neighbour(heatmaps, channel, row, col + 1) == score
    tie_down = _neighbour(heatmaps, channel, row + 1, col) == score
    x = (col + 0.5 + 0.5 * tie_right) * config.pixel_size
    y = (row + 0.5 + 0.5 * tie_down) * config.pixel_size
    return channel, x, y, score


def _neighbour(heatmaps: np.ndarray, channel: np.ndarray, row: np.ndarray, col: np.ndarray) -> np.ndarray:
    """Values of (K, H, W) maps at (channel, row, col), -inf outside the map."""
    height, width = heatmaps.shape[1:]
    inside = (row >= 0) & (row < height) & (col >= 0) & (col < width)
    values = heatmaps[channel, np.clip(row, 0, height - 1), np.clip(col, 0, width - 1)]
    return np.where(inside, values, -np.inf)


def _suppress_close(x: np.ndarray, y: np.ndarray, radius: float) -> np.ndarray:
    """Indices of the peaks (given by descending score) that greedy suppression keeps: each peak
    closer than ``radius`` to a kept one is dropped.

    Lightweight OpenPose visits peaks by x; visiting by score keeps the strongest of a close cluster.
    """
    if x.size < 2:
        return np.arange(x.size)
    xy = np.stack([x, y], axis=1)
    too_close = np.sum((xy[:, None, :] - xy[None, :, :]) ** 2, axis=-1) < radius**2
    keep = np.ones(x.size, dtype=bool)
    for i in range(x.size):  # sequential by nature: only kept peaks suppress
        if keep[i]:
            keep[i + 1 :] &= ~too_close[i, i + 1 :]
    return np.flatnonzero(keep)


def score_limbs(peaks: Sequence[np.ndarray], pafs_upsampled: np.ndarray, config: DecodeConfig) -> list[np.ndarray]:
    """Accepted connections of every limb: a list, indexed like ``LIMBS``, of (m, 3) float arrays
    (id of the peak at ``LIMBS[i][0]``, id of the peak at ``LIMBS[i][1]``, affinity).

    Each peak takes part in at most one connection per limb (greedy by descending affinity).
    """
    pafs = np.asarray(pafs_upsampled, dtype=np.float32)
    if pafs.ndim != 3 or pafs.shape[0] != NUM_PAFS:
        raise ValueError(f"upsampled PAFs must have shape (38, H, W), got {pafs.shape}")
    if len(peaks) != NUM_BODY_KEYPOINTS:
        raise ValueError(f"expected peaks of 18 keypoints, got {len(peaks)}")
    connections = []
    for limb, (a, b) in enumerate(LIMBS):
        from_peaks, to_peaks = peaks[a], peaks[b]
        if len(from_peaks) == 0 or len(to_peaks) == 0:
            connections.append(np.empty((0, 3), dtype=np.float32))
            continue
        field = pafs[2 * limb : 2 * limb + 2]
        affinity, accepted = _pair_affinities(from_peaks[:, :2], to_peaks[:, :2], field, config)
        rows, cols = grouping.match_one_to_one(affinity, accepted)
        found = np.column_stack([from_peaks[rows, 3], to_peaks[cols, 3], affinity[rows, cols]])
        connections.append(found.astype(np.float32))
    return connections


def _pair_affinities(
    starts: np.ndarray, ends: np.ndarray, field: np.ndarray, config: DecodeConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Affinity (n, m) of every start -> end pair under a (2, H, W) field, and which pairs pass.

    The affinity is the mean projection of the field on the pair's direction over the samples that
    support it (projection > paf_min_score); a pair passes when its affinity is positive, more than
    paf_min_ratio of its samples support it, and its endpoints differ.
    """
    delta = ends[None, :, :] - starts[:, None, :]  # (n, m, 2)
    length = np.linalg.norm(delta, axis=-1)
    direction = delta / np.where(length > 0, length, 1.0)[..., None]
    t = np.linspace(0.0, 1.0, config.paf_samples)
    points = starts[:, None, None, :] + t[None, None, :, None] * delta[:, :, None, :]  # (n, m, S, 2)
    # Nearest upsampled pixel: pixel j is centred on (j + 0.5) * pixel_size.
    pixel = np.rint(points / config.pixel_size - 0.5).astype(np.intp)
    col = np.clip(pixel[..., 0], 0, field.shape[2] - 1)
    row = np.clip(pixel[..., 1], 0, field.shape[1] - 1)
    projection = field[0][row, col] * direction[..., None, 0] + field[1][row, col] * direction[..., None, 1]
    supports = projection > config.paf_min_score
    n_support = supports.sum(axis=-1)
    affinity = np.where(supports, projection, 0.0).sum(axis=-1) / np.maximum(n_support, 1)
    accepted = (length > 0) & (affinity > 0) & (n_support / config.paf_samples > config.paf_min_ratio)
    return affinity, accepted


def assemble(
    peaks: Sequence[np.ndarray],
    connections: Sequence[np.ndarray],
    config: DecodeConfig,
    limb_order: Sequence[int] = GROUPING_ORDER,
) -> list[Pose]:
    """:func:`posenas.posenet.pose.grouping.assemble` with ``config``'s thresholds: both decoders group
    their connections through it."""
    return grouping.assemble(
        peaks,
        connections,
        min_keypoints=config.min_keypoints,
        min_mean_score=config.min_mean_score,
        limb_order=limb_order,
    )


def decode(heatmaps: np.ndarray, pafs: np.ndarray, config: DecodeConfig = DecodeConfig()) -> list[Pose]:
    """Network outputs -> people, sorted by descending score.

    ``heatmaps`` is (19, h, w) (channel 18, the background, is ignored) and ``pafs`` (38, h, w), both at
    the network's stride; keypoints come back in input coordinates. ``config.decoder`` chooses the
    upsampling decoder (the reference) or the grid decoder (``grid_decode``, the microcontroller's).
    """
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    pafs = np.asarray(pafs, dtype=np.float32)
    if heatmaps.ndim != 3 or heatmaps.shape[0] != NUM_HEATMAPS:
        raise ValueError(f"heatmaps must have shape (19, h, w), got {heatmaps.shape}")
    if pafs.ndim != 3 or pafs.shape[0] != NUM_PAFS:
        raise ValueError(f"pafs must have shape (38, h, w), got {pafs.shape}")
    if pafs.shape[1:] != heatmaps.shape[1:]:
        raise ValueError(f"heatmaps {heatmaps.shape} and pafs {pafs.shape} differ in (h, w)")
    if heatmaps.shape[1] == 0 or heatmaps.shape[2] == 0:
        raise ValueError(f"maps must not be empty, got (h, w) = {heatmaps.shape[1:]}")
    if config.decoder == "grid":
        peaks = grid_peaks(heatmaps, config.stride, config.peak_threshold, config.nms_radius)
        connections = grid_limbs(
            peaks, pafs, config.stride, config.paf_samples, config.paf_min_score, config.paf_min_ratio
        )
        return assemble(peaks, connections, config)
    # One resize for keypoint heatmaps and PAFs together; the background is never used.
    maps = np.concatenate([heatmaps[:NUM_BODY_KEYPOINTS], pafs])
    upsampled = upsample_maps(maps, config, heatmap_channels=NUM_BODY_KEYPOINTS)
    peaks = extract_peaks(upsampled[:NUM_BODY_KEYPOINTS], config)
    connections = score_limbs(peaks, upsampled[NUM_BODY_KEYPOINTS:], config)
    return assemble(peaks, connections, config)
