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
4. ``assemble``: connections are joined into people in ``GROUPING_ORDER`` (neck outwards).

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

from posenas.posenet.pose.grid_decode import grid_limbs, grid_peaks
from posenas.posenet.pose.keypoints import (
    GROUPING_ORDER,
    LIMBS,
    NUM_BODY_KEYPOINTS,
    NUM_HEATMAPS,
    NUM_PAFS,
    REDUNDANT_LIMBS,
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
_NO_PEAK = -1  # an empty slot of a person, and "no owner" of a peak
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


@dataclass(frozen=True, eq=False)  # eq=False: a generated __eq__ would compare arrays ambiguously
class Pose:
    """One decoded person.

    ``keypoints`` is (18, 3) = (x, y, heatmap score) in input coordinates and body-18 order, with
    (0, 0, 0) in missing slots. ``score`` is the sum of the keypoint scores and of the affinities of
    the limbs that joined them; ``count`` is the number of keypoints that entered through those limbs
    (a shoulder-ear limb may fill an ear without adding to either, as in Lightweight OpenPose).
    """

    keypoints: np.ndarray
    score: float
    count: int

    @property
    def coco_score(self) -> float:
        """Person score reported to COCO (Lightweight OpenPose's choice): score * max(0, count - 1)."""
        return self.score * max(0, self.count - 1)


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
        rows, cols = _match_one_to_one(affinity, accepted)
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


def _match_one_to_one(affinity: np.ndarray, accepted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Greedy one-to-one matching of accepted pairs by descending affinity: (rows, cols) kept."""
    rows, cols = np.nonzero(accepted)
    order = np.argsort(-affinity[rows, cols], kind="stable")
    row_used = np.zeros(affinity.shape[0], dtype=bool)
    col_used = np.zeros(affinity.shape[1], dtype=bool)
    kept = []
    for i in order:  # sequential by nature: each kept pair blocks later ones
        if not (row_used[rows[i]] or col_used[cols[i]]):
            row_used[rows[i]] = col_used[cols[i]] = True
            kept.append(i)
    kept_index = np.asarray(kept, dtype=np.intp)
    return rows[kept_index], cols[kept_index]


@dataclass
class _Person:
    """A person under construction: peak id per body slot (-1 = empty), score, keypoint count."""

    ids: np.ndarray
    score: float
    count: int


def assemble(
    peaks: Sequence[np.ndarray],
    connections: Sequence[np.ndarray],
    config: DecodeConfig,
    limb_order: Sequence[int] = GROUPING_ORDER,
) -> list[Pose]:
    """Join limb connections into people, sorted by descending score.

    Limbs are visited in ``limb_order``. A connection whose ends belong to nobody starts a person; one
    with a single owned end extends that person when the other end's slot is free; one joining two
    people whose filled slots are disjoint merges them (OpenPose's robust grouping). Limbs in
    ``REDUNDANT_LIMBS`` only fill a free slot of an existing person and change no score or count.
    People with fewer than ``min_keypoints`` keypoints or a mean score below ``min_mean_score`` are
    dropped.

    ``peaks`` and ``connections`` are as ``extract_peaks`` and ``score_limbs`` return them; peak ids
    only need to be unique non-negative integers.
    """
    all_peaks = np.concatenate([np.asarray(p, dtype=np.float32).reshape(-1, 4) for p in peaks])
    ids = all_peaks[:, 3].astype(np.intp)
    size = int(ids.max()) + 1 if ids.size else 0
    peak_xy = np.zeros((size, 2), dtype=np.float32)
    peak_xy[ids] = all_peaks[:, :2]
    peak_score = np.zeros(size, dtype=np.float64)
    peak_score[ids] = all_peaks[:, 2]

    grouping = _Grouping(peak_score)
    for limb in limb_order:
        for from_id, to_id, affinity in np.asarray(connections[limb]).reshape(-1, 3):
            ends = (int(from_id), int(to_id))
            grouping.connect(ends, LIMBS[limb], float(affinity), redundant=limb in REDUNDANT_LIMBS)

    poses = [
        _to_pose(person, peak_xy, peak_score)
        for person in grouping.people
        if person is not None
        and person.count >= config.min_keypoints
        and person.score >= config.min_mean_score * person.count
    ]
    return sorted(poses, key=lambda pose: -pose.score)


class _Grouping:
    """People under construction, and which person owns each peak (each peak belongs to at most one)."""

    def __init__(self, peak_score: np.ndarray) -> None:
        self.peak_score = peak_score
        self.people: list[_Person | None] = []  # None: merged into another person
        self.owner = np.full(peak_score.size, _NO_PEAK, dtype=np.intp)  # index into people

    def connect(self, ends: tuple[int, int], slots: tuple[int, int], affinity: float, redundant: bool) -> None:
        """Apply one connection between peaks ``ends`` at body ``slots``."""
        owners = (int(self.owner[ends[0]]), int(self.owner[ends[1]]))
        if owners == (_NO_PEAK, _NO_PEAK):
            if not redundant:
                self._start(ends, slots, affinity)
        elif _NO_PEAK in owners:
            held = 0 if owners[0] != _NO_PEAK else 1
            self._extend(owners[held], ends[1 - held], slots[1 - held], affinity, redundant)
        elif owners[0] != owners[1] and not redundant:
            self._merge(owners[0], owners[1], affinity)

    def _start(self, ends: tuple[int, int], slots: tuple[int, int], affinity: float) -> None:
        ids = np.full(NUM_BODY_KEYPOINTS, _NO_PEAK, dtype=np.intp)
        ids[list(slots)] = ends
        score = float(self.peak_score[list(ends)].sum()) + affinity
        self.owner[list(ends)] = len(self.people)
        self.people.append(_Person(ids, score, count=2))

    def _extend(self, index: int, peak: int, slot: int, affinity: float, redundant: bool) -> None:
        person = self.people[index]
        assert person is not None
        if person.ids[slot] != _NO_PEAK:
            return  # the slot already holds a different peak
        person.ids[slot] = peak
        self.owner[peak] = index
        if not redundant:
            person.score += float(self.peak_score[peak]) + affinity
            person.count += 1

    def _merge(self, kept_index: int, merged_index: int, affinity: float) -> None:
        kept, merged = self.people[kept_index], self.people[merged_index]
        assert kept is not None and merged is not None
        filled = merged.ids != _NO_PEAK
        if np.any(filled & (kept.ids != _NO_PEAK)):
            return  # both fill some body slot: two people, not halves of one
        kept.ids[filled] = merged.ids[filled]
        kept.score += merged.score + affinity
        kept.count += merged.count
        self.owner[merged.ids[filled]] = kept_index
        self.people[merged_index] = None


def _to_pose(person: _Person, peak_xy: np.ndarray, peak_score: np.ndarray) -> Pose:
    """Freeze a person into a Pose with (x, y, score) keypoints."""
    keypoints = np.zeros((NUM_BODY_KEYPOINTS, 3), dtype=np.float32)
    filled = person.ids != _NO_PEAK
    keypoints[filled, :2] = peak_xy[person.ids[filled]]
    keypoints[filled, 2] = peak_score[person.ids[filled]]
    keypoints.setflags(write=False)
    return Pose(keypoints=keypoints, score=person.score, count=person.count)


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
