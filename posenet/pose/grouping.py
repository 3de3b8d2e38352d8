"""Grouping: limb connections into people, shared by both decoders (``decode.py``'s upsampled reference and
``grid_decode.py``'s microcontroller twin).

1. ``match_one_to_one``: a limb's candidate pairs, greedily by descending affinity, each peak used once.
2. ``assemble``: the connections joined into people in ``GROUPING_ORDER`` (neck outwards), OpenPose's robust
   grouping; the C decoders (``pose_decode.c``, ``pose_grid.c``) follow it step for step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from posenas.posenet.pose.keypoints import GROUPING_ORDER, LIMBS, NUM_BODY_KEYPOINTS, REDUNDANT_LIMBS

__all__ = ["Pose", "assemble", "match_one_to_one"]

_NO_PEAK = -1  # an empty slot of a person, and "no owner" of a peak


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


def match_one_to_one(affinity: np.ndarray, accepted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
    *,
    min_keypoints: int,
    min_mean_score: float,
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
        if person is not None and person.count >= min_keypoints and person.score >= min_mean_score * person.count
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
