"""The built-in synthetic-people dataset: a COCO-format person-keypoints root, rendered on the CPU.

Why: the data pipeline (loader, OpenPose targets, decoder, COCOeval) has to run, and a network has to
learn something measurable, on machines without COCO. The generator writes the same layout and json
schema as COCO 2017 person keypoints, so nothing downstream knows the difference.

What an image holds: one to ``max_people`` articulated figures with COCO's 17-keypoint skeleton on a
cluttered background, with distractor shapes that are not people, occlusion between figures (depth
order) and by foreground objects, and truncation at the image borders.

The figure model is a 3-D stick body (pelvis root, torso lean/bend/twist, neck and head, shoulders and
hips, upper arm/forearm and thigh/shin with elbow and knee flexion limits, hands and feet) seen by an
orthographic camera after a body yaw and an in-plane roll. The 3-D model is only there to make the 2-D
picture consistent: limb foreshortening, shoulder and hip width shrinking with yaw, which side is near
(drawn last), and which face points turn away. Facing the camera, the person's RIGHT side is on the image
LEFT; facing away, the reverse.

Honest labels: every body part and foreground object is drawn into a uint16 *label map* with the same
geometry as into the colour image. Visibility flags, segmentation, area and bbox are read from it:

* a keypoint outside the image is unlabelled, (0, 0, 0), as in COCO;
* inside, it is visible (v=2) when its pixel shows one of its own adjacent body parts (a wrist: the
  forearm or the hand) and the body's own geometry does not turn it away (the far eye of a profile);
* otherwise it is labelled but not visible (v=1): covered by another figure, an object, or the figure's
  own body (a wrist behind the torso, the far ear);
* nose and eyes of a figure seen from behind are left unlabelled, as COCO's annotators do.

Label values: 0 background (clutter included), ``LABEL_OBJECT`` for foreground objects, and
``(figure_number << FIGURE_SHIFT) | part`` for people, where figure number ``i + 1`` is the image's
annotation ``i``. Coordinates are continuous pixel coordinates (pixel ``i`` covers ``[i, i + 1)``).

Everything is a pure function of (seed, split, index): image ``k`` of a split draws from
``np.random.default_rng([seed, split_code, k])`` only.

Entry points: ``render_image`` (one image with its annotations and label map), ``write_coco_root`` (a
whole root), configured by ``SynthConfig``. Speed on one core, drawing, RLE, JPEG encoding, file writes
and json included: about 400 images/s into tmpfs, about 310 onto a slow virtual disk.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from posenas.files import atomic_write_text
from posenas.posenet.pose.keypoints import COCO_KEYPOINTS, COCO_SKELETON, NUM_COCO_KEYPOINTS

SYNTH_VERSION = "1.0"

# -- splits and ids ---------------------------------------------------------------------------------------
SPLIT_CODES: dict[str, int] = {"train": 0, "val": 1}
# Image ids are unique across splits and independent of the other split's size.
IMAGE_ID_BASE: dict[str, int] = {"train": 1, "val": 1_000_001}
MAX_IMAGES_PER_SPLIT = 1_000_000
# Annotation id = image id * ANNOTATION_ID_STRIDE + annotation index: unique, and stable per image.
ANNOTATION_ID_STRIDE = 100

# -- the label map ----------------------------------------------------------------------------------------
LABEL_BACKGROUND = 0
LABEL_OBJECT = 1  # a foreground object (occluder or distractor) drawn over the people
FIGURE_SHIFT = 5  # person label = (figure number << FIGURE_SHIFT) | part; figure number >= 1
PART_MASK = (1 << FIGURE_SHIFT) - 1

# Body parts, in the order a figure lists its shapes before depth sorting.
(
    TORSO,
    NECK,
    HEAD,
    R_UPPER_ARM,
    R_FOREARM,
    R_HAND,
    L_UPPER_ARM,
    L_FOREARM,
    L_HAND,
    R_THIGH,
    R_SHIN,
    R_FOOT,
    L_THIGH,
    L_SHIN,
    L_FOOT,
) = range(15)
PART_NAMES: tuple[str, ...] = (
    "torso",
    "neck",
    "head",
    "r_upper_arm",
    "r_forearm",
    "r_hand",
    "l_upper_arm",
    "l_forearm",
    "l_hand",
    "r_thigh",
    "r_shin",
    "r_foot",
    "l_thigh",
    "l_shin",
    "l_foot",
)

# The parts whose pixels count as "the keypoint is seen", per COCO keypoint.
KEYPOINT_PARTS: tuple[tuple[int, ...], ...] = (
    (HEAD,),
    (HEAD,),
    (HEAD,),
    (HEAD,),
    (HEAD,),  # nose, eyes, ears
    (TORSO, NECK, L_UPPER_ARM),
    (TORSO, NECK, R_UPPER_ARM),  # shoulders
    (L_UPPER_ARM, L_FOREARM),
    (R_UPPER_ARM, R_FOREARM),  # elbows
    (L_FOREARM, L_HAND),
    (R_FOREARM, R_HAND),  # wrists
    (TORSO, L_THIGH),
    (TORSO, R_THIGH),  # hips
    (L_THIGH, L_SHIN),
    (R_THIGH, R_SHIN),  # knees
    (L_SHIN, L_FOOT),
    (R_SHIN, R_FOOT),  # ankles
)


def _keypoint_on_part_table() -> np.ndarray:
    table = np.zeros((NUM_COCO_KEYPOINTS, PART_MASK + 1), dtype=bool)
    for keypoint, parts in enumerate(KEYPOINT_PARTS):
        table[keypoint, list(parts)] = True
    table.setflags(write=False)
    return table


# KEYPOINT_ON_PART[k, part]: does a pixel of `part` show keypoint k? Read-only.
KEYPOINT_ON_PART = _keypoint_on_part_table()

# COCO keypoint indices used by the model.
NOSE, L_EYE, R_EYE, L_EAR, R_EAR = range(5)
L_SHO, R_SHO, L_ELB, R_ELB, L_WRI, R_WRI, L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANK, R_ANK = range(5, 17)

# Self-occlusion by the body's own volume: a point whose outward surface normal has a camera-facing
# component below this threshold is turned away from the camera. -inf: decided by the label map alone.
# The nose sticks out (still seen in profile); an eye hides as soon as it turns away; the far ear once
# the head turns about 30 degrees; shoulders and hips only when the body is nearly side-on.
SELF_OCCLUSION_THRESHOLD = np.array(
    [
        -0.2,
        0.05,
        0.05,
        -0.6,
        -0.6,
        -0.75,
        -0.75,
        -np.inf,
        -np.inf,
        -np.inf,
        -np.inf,
        -0.75,
        -0.75,
        -np.inf,
        -np.inf,
        -np.inf,
        -np.inf,
    ]
)
SELF_OCCLUSION_THRESHOLD.setflags(write=False)
# Nose and eyes turned further away than this are on the back of the head: not labelled.
FACE_UNLABELLED_BELOW = -0.35

# -- body proportions, in figure heights (standing height, ankle to crown ~ 1) ----------------------------


class BodyShape(NamedTuple):
    """Segment lengths, widths and drawing thicknesses of one figure (figure heights or pixels)."""

    head_radius: float
    neck_length: float  # shoulder centre to head centre
    torso_length: float  # pelvis to shoulder centre
    shoulder_half_width: float
    hip_half_width: float
    torso_half_depth: float  # chest depth: the torso's width in a side view
    upper_arm: float
    forearm: float
    hand_radius: float
    thigh: float
    shin: float
    foot: float
    neck_thickness: float
    upper_arm_thickness: float
    forearm_thickness: float
    thigh_thickness: float
    shin_thickness: float
    foot_thickness: float


MEAN_BODY = BodyShape(
    head_radius=0.062,
    neck_length=0.105,
    torso_length=0.29,
    shoulder_half_width=0.11,
    hip_half_width=0.07,
    torso_half_depth=0.06,
    upper_arm=0.17,
    forearm=0.15,
    hand_radius=0.027,
    thigh=0.245,
    shin=0.235,
    foot=0.06,
    neck_thickness=0.05,
    upper_arm_thickness=0.055,
    forearm_thickness=0.045,
    thigh_thickness=0.085,
    shin_thickness=0.062,
    foot_thickness=0.035,
)
_MEAN_BODY_ARRAY = np.array(MEAN_BODY)
# Which BodyShape fields scale with a figure's build (broad or slim) rather than its length.
_WIDTH_FIELDS = np.array([name.endswith(("thickness", "width", "depth")) for name in BodyShape._fields])

# -- joint angles (radians): rest value, spread (normal), limits -------------------------------------------


class Pose(NamedTuple):
    """Joint angles of one figure. Arm and leg angles are abduction (sideways, outwards positive) and
    flexion (forwards positive) of the upper segment, then the elbow or knee flexion (0 = straight)."""

    torso_pitch: float  # forward lean
    torso_bend: float  # sideways, towards the person's left positive
    torso_twist: float  # shoulders' yaw relative to the hips
    head_yaw: float
    head_pitch: float  # looking down positive
    head_roll: float
    r_arm_abduction: float
    r_arm_flexion: float
    r_elbow: float
    l_arm_abduction: float
    l_arm_flexion: float
    l_elbow: float
    r_thigh_abduction: float
    r_thigh_flexion: float
    r_knee: float
    l_thigh_abduction: float
    l_thigh_flexion: float
    l_knee: float


# (rest, spread, lower limit, upper limit) per Pose field.
JOINTS: dict[str, tuple[float, float, float, float]] = {
    "torso_pitch": (0.05, 0.15, -0.35, 0.9),
    "torso_bend": (0.0, 0.08, -0.35, 0.35),
    "torso_twist": (0.0, 0.15, -0.6, 0.6),
    "head_yaw": (0.0, 0.35, -1.2, 1.2),
    "head_pitch": (0.0, 0.15, -0.5, 0.6),
    "head_roll": (0.0, 0.1, -0.4, 0.4),
    "r_arm_abduction": (0.2, 0.35, -0.3, 2.9),
    "r_arm_flexion": (0.1, 0.5, -0.9, 2.8),
    "r_elbow": (0.3, 0.6, 0.0, 2.5),
    "l_arm_abduction": (0.2, 0.35, -0.3, 2.9),
    "l_arm_flexion": (0.1, 0.5, -0.9, 2.8),
    "l_elbow": (0.3, 0.6, 0.0, 2.5),
    "r_thigh_abduction": (0.06, 0.1, -0.2, 0.8),
    "r_thigh_flexion": (0.0, 0.2, -0.6, 1.9),
    "r_knee": (0.1, 0.3, 0.0, 2.4),
    "l_thigh_abduction": (0.06, 0.1, -0.2, 0.8),
    "l_thigh_flexion": (0.0, 0.2, -0.6, 1.9),
    "l_knee": (0.1, 0.3, 0.0, 2.4),
}
assert tuple(JOINTS) == Pose._fields
_JOINT_TABLE = np.array([JOINTS[name] for name in Pose._fields])  # (18, 4)

# Pose families: (probability, {field: (rest, spread)}) overriding JOINTS' rest and spread. Walking and
# reaching are written for one side; half of them are mirrored.
POSE_MODES: tuple[tuple[float, dict[str, tuple[float, float]]], ...] = (
    (0.45, {}),  # standing
    (
        0.25,
        {
            "r_thigh_flexion": (0.4, 0.15),
            "l_thigh_flexion": (-0.3, 0.15),
            "r_knee": (0.5, 0.25),
            "l_knee": (0.3, 0.2),
            "r_arm_flexion": (-0.3, 0.2),
            "l_arm_flexion": (0.4, 0.2),
        },
    ),  # walking
    (
        0.12,
        {
            "r_thigh_flexion": (1.45, 0.15),
            "l_thigh_flexion": (1.45, 0.15),
            "r_knee": (1.5, 0.2),
            "l_knee": (1.5, 0.2),
            "torso_pitch": (0.15, 0.1),
        },
    ),  # sitting
    (
        0.10,
        {"r_arm_abduction": (2.3, 0.5), "l_arm_abduction": (2.3, 0.5), "r_elbow": (0.4, 0.4), "l_elbow": (0.4, 0.4)},
    ),  # arms up
    (0.08, {"r_arm_flexion": (1.4, 0.3), "r_elbow": (0.3, 0.3), "r_arm_abduction": (0.3, 0.3)}),  # reaching
)
_POSE_MODE_CDF = np.cumsum([p for p, _ in POSE_MODES]) / sum(p for p, _ in POSE_MODES)
_MIRRORED_FIELDS = [
    Pose._fields.index(name.replace("r_", "l_", 1) if name.startswith("r_") else name.replace("l_", "r_", 1))
    for name in Pose._fields
]

# -- colours ------------------------------------------------------------------------------------------------
Colour = tuple[int, int, int]
SKIN_TONES: tuple[Colour, ...] = (
    (255, 224, 196),
    (241, 194, 125),
    (224, 172, 105),
    (198, 134, 66),
    (141, 85, 36),
    (92, 58, 36),
    (255, 205, 148),
    (234, 192, 134),
)
HAIR_COLOURS: tuple[Colour, ...] = (
    (20, 15, 10),
    (60, 40, 25),
    (110, 75, 40),
    (200, 170, 110),
    (150, 150, 150),
    (140, 60, 30),
)
FAR_SIDE_SHADE = 0.82  # far-side limbs are drawn darker: a depth cue the network can use
NOISE_SHIFT = 5  # per-pixel sensor noise: random bytes >> NOISE_SHIFT, i.e. 0..7 grey levels

# cv2 draws at pixel centres with SHIFT fractional bits; continuous coordinate x is cv2's x - 0.5.
SHIFT = 4
_ONE = 1 << SHIFT


@dataclass(frozen=True)
class SynthConfig:
    """The generator's knobs. Ranges are inclusive (lower, upper)."""

    width_range: tuple[int, int] = (160, 320)  # image width in pixels
    height_range: tuple[int, int] = (160, 320)  # image height in pixels; aspect ratios vary on purpose
    min_people: int = 1
    max_people: int = 4
    figure_height_range: tuple[float, float] = (0.25, 0.95)  # standing height / image height, log-uniform
    truncation_probability: float = 0.25  # chance a figure is placed partly outside the image
    facing_away_probability: float = 0.2  # body yaw near 180 degrees
    side_view_probability: float = 0.2  # body yaw uniform on the circle
    frontal_yaw_std_degrees: float = 30.0  # spread of the remaining, camera-facing figures' yaw
    tilt_probability: float = 0.05  # chance of a large in-plane roll (lying, bending, falling)
    occluder_probability: float = 0.35  # chance an image has foreground objects over its people
    max_occluders: int = 2
    clutter_range: tuple[int, int] = (6, 20)  # background shapes per image
    distractor_range: tuple[int, int] = (1, 4)  # limb-like sticks and head-like blobs per image
    foreground_distractor_probability: float = 0.3  # chance a distractor is drawn over the people
    blur_probability: float = 0.2  # chance of a slight defocus blur
    label_hidden_face: bool = False  # label nose/eyes on the back of the head (v=1) instead of (0, 0, 0)
    min_visible_pixels: int = 16  # figures showing fewer pixels are not drawn and not annotated
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        for name in ("width_range", "height_range", "clutter_range", "distractor_range"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"{name} must be 0 <= lower <= upper, got {(lo, hi)}")
        if min(self.width_range[0], self.height_range[0]) < 16:
            raise ValueError("images must be at least 16 pixels wide and high")
        if not 0 <= self.min_people <= self.max_people < ANNOTATION_ID_STRIDE:
            raise ValueError(f"need 0 <= min_people <= max_people < {ANNOTATION_ID_STRIDE}")
        lo, hi = self.figure_height_range
        if not 0 < lo <= hi:
            raise ValueError(f"figure_height_range must be 0 < lower <= upper, got {(lo, hi)}")
        if self.facing_away_probability + self.side_view_probability > 1:
            raise ValueError("facing_away_probability + side_view_probability must be <= 1")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")


@dataclass(frozen=True)
class SynthImage:
    """One rendered image.

    ``annotations[i]`` is a COCO person annotation without ``"id"`` and ``"image_id"`` (the writer adds
    them); its pixels in ``labels`` carry figure number ``i + 1`` (``labels >> FIGURE_SHIFT``).
    """

    image: np.ndarray  # (H, W, 3) uint8 RGB, as written (before JPEG)
    labels: np.ndarray  # (H, W) uint16 label map, see the module docstring
    annotations: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


# -- shapes: one drawing call each, into the colour image and (optionally) the label map ------------------


class Polygon(NamedTuple):
    points: np.ndarray  # (N, 2) int32 fixed point, convex
    colour: Colour


class Polyline(NamedTuple):
    curves: tuple[np.ndarray, ...]  # each (N, 2) int32 fixed point; one drawing call for all
    thickness: int  # pixels
    colour: Colour
    closed: bool = False


class Ellipse(NamedTuple):
    centre: tuple[int, int]  # fixed point
    axes: tuple[int, int]  # fixed point half axes
    angle: float  # degrees
    colour: Colour


class Disc(NamedTuple):
    centre: tuple[int, int]  # fixed point
    radius: int  # fixed point
    colour: Colour


Shape = Polygon | Polyline | Ellipse | Disc


def _fixed(points: np.ndarray) -> np.ndarray:
    """Continuous pixel coordinates -> cv2's fixed-point pixel-centre coordinates (int32)."""
    return ((np.asarray(points) - 0.5) * _ONE).round().astype(np.int32)


def _fixed_point(x: float, y: float) -> tuple[int, int]:
    return (round((x - 0.5) * _ONE), round((y - 0.5) * _ONE))


def _fixed_length(length: float) -> int:
    return max(_ONE, round(length * _ONE))


def polygon(points: np.ndarray, colour: Colour) -> Polygon:
    """A filled convex polygon; the hull is taken so any point set works."""
    hull = cv2.convexHull(_fixed(points)).reshape(-1, 2)
    return Polygon(hull, colour)


def polyline(points: np.ndarray, thickness: float, colour: Colour, closed: bool = False) -> Polyline:
    """A thick line through the points, with round caps and joints (cv2's thick lines)."""
    return Polyline((_fixed(points).reshape(-1, 2),), max(1, round(thickness)), colour, closed)


def segments(ends: np.ndarray, thickness: float, colour: Colour) -> Polyline:
    """Separate thick line segments ``ends`` (S, 2, 2), drawn in one call."""
    return Polyline(tuple(_fixed(ends)), max(1, round(thickness)), colour)


def ellipse(centre: Sequence[float], axes: Sequence[float], angle: float, colour: Colour) -> Ellipse:
    return Ellipse(_fixed_point(*centre), (_fixed_length(axes[0]), _fixed_length(axes[1])), angle, colour)


def disc(centre: Sequence[float], radius: float, colour: Colour) -> Disc:
    return Disc(_fixed_point(*centre), _fixed_length(radius), colour)


def draw(image: np.ndarray, shape: Shape, colour: Colour | tuple[int]) -> None:
    """Draw one shape into one buffer (colour image or label map) with 8-connected, unsmoothed edges,
    so that the colour image and the label map get exactly the same pixels."""
    if isinstance(shape, Polyline):
        cv2.polylines(image, shape.curves, shape.closed, colour, shape.thickness, cv2.LINE_8, SHIFT)
    elif isinstance(shape, Polygon):
        cv2.fillConvexPoly(image, shape.points, colour, cv2.LINE_8, SHIFT)
    elif isinstance(shape, Ellipse):
        cv2.ellipse(image, shape.centre, shape.axes, shape.angle, 0, 360, colour, -1, cv2.LINE_8, SHIFT)
    else:
        cv2.circle(image, shape.centre, shape.radius, colour, -1, cv2.LINE_8, SHIFT)


def paint(image: np.ndarray, labels: np.ndarray | None, shape: Shape, label: int) -> None:
    """Draw a shape into the colour image and, unless ``labels`` is None, with ``label`` into the map."""
    draw(image, shape, shape.colour)
    if labels is not None:
        draw(labels, shape, (label,))


# -- small sampling helpers ----------------------------------------------------------------------------------


def _random_colours(rng: np.random.Generator, count: int) -> list[Colour]:
    """``count`` uniform random colours (one generator call: per-call overhead dominates here)."""
    return [(r, g, b) for r, g, b in rng.integers(0, 256, (count, 3)).tolist()]


def _jitter(colour: Colour, shift: Iterable[float], spread: int) -> Colour:
    """``colour`` with channel i moved by ``shift[i] * spread`` (shift in [-1, 1]), within 0..255."""
    r, g, b = (min(255, max(0, c + round(spread * u))) for c, u in zip(colour, shift))
    return (r, g, b)


def _shade(colour: Colour, factor: float) -> Colour:
    r, g, b = colour
    return (int(r * factor), int(g * factor), int(b * factor))


def _clamp(value: float, lower: float, upper: float) -> float:
    return min(upper, max(lower, float(value)))


def _choose(rng: np.random.Generator, items: Sequence[Any]) -> Any:
    return items[int(rng.integers(len(items)))]


def _unit(vector: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    norm = math.sqrt(vector @ vector)
    return vector / norm if norm > 1e-6 else fallback


# -- the figure model -------------------------------------------------------------------------------------


class Clothes(NamedTuple):
    skin: Colour
    hair: Colour
    shirt: Colour
    trousers: Colour
    shoes: Colour
    long_sleeves: bool
    sleeveless: bool
    shorts: bool


# Skeleton points beyond the 17 keypoints, indices into Skeleton3D.points.
HEAD_CENTRE, NECK_BASE, L_HAND_CENTRE, R_HAND_CENTRE, L_TOE, R_TOE = range(17, 23)
# Left-right pairs are stored left first, as in COCO's order, so each pair is a slice.
SHOULDERS, ELBOWS, WRISTS, HIPS, KNEES, ANKLES = (slice(k, k + 2) for k in range(5, 17, 2))
HAND_CENTRES, TOES = slice(L_HAND_CENTRE, R_HAND_CENTRE + 1), slice(L_TOE, R_TOE + 1)
TORSO_OUTLINE = slice(23, 31)  # shoulders and hips, each +- half the chest depth
NUM_SKELETON_POINTS = 31


class Skeleton3D(NamedTuple):
    """A posed body in camera space (x right, y down, depth towards the camera), pelvis at the origin."""

    points: np.ndarray  # (NUM_SKELETON_POINTS, 3) pixels: the 17 keypoints, then the extra points
    normal_depth: np.ndarray  # (17,) camera-facing component of each keypoint's outward normal


class Figure(NamedTuple):
    """A posed, placed and dressed figure, ready to draw."""

    keypoints: np.ndarray  # (17, 2) continuous image coordinates
    self_occluded: np.ndarray  # (17,) bool: turned away by the body's own volume
    unlabelled: np.ndarray  # (17,) bool: an annotator would not label it (face seen from behind)
    shapes: tuple[tuple[Shape, int], ...]  # (shape, part), back to front
    height: float  # standing height in pixels (bigger figures are nearer)


def sample_body(rng: np.random.Generator, height: float) -> BodyShape:
    """Proportions of one figure: each length +-6 %, build (widths) 0.85..1.25, in pixels."""
    u = rng.random(len(BodyShape._fields) + 2)
    factors = 0.94 + 0.12 * u[:-2]
    factors[_WIDTH_FIELDS] *= 0.85 + 0.4 * u[-2]
    factors[0] *= 0.95 + 0.2 * u[-1]  # head size varies more
    return BodyShape(*(_MEAN_BODY_ARRAY * factors * height).tolist())


def sample_pose(rng: np.random.Generator) -> Pose:
    """Joint angles: a pose family's rest values plus normal noise, clipped to the joint limits."""
    mode = POSE_MODES[int(np.searchsorted(_POSE_MODE_CDF, rng.random(), side="right"))][1]
    rest, spread, lower, upper = _JOINT_TABLE.T.copy()
    for name, (mode_rest, mode_spread) in mode.items():
        rest[Pose._fields.index(name)] = mode_rest
        spread[Pose._fields.index(name)] = mode_spread
    if rng.random() < 0.5:  # mirror the family: left and right swap roles
        rest, spread = rest[_MIRRORED_FIELDS], spread[_MIRRORED_FIELDS]
    angles = np.clip(rest + spread * rng.standard_normal(len(rest)), lower, upper)
    return Pose(*angles.tolist())


def sample_yaw(rng: np.random.Generator, config: SynthConfig) -> float:
    """Body yaw: 0 faces the camera, pi faces away."""
    u = rng.random()
    spread = math.radians(config.frontal_yaw_std_degrees)
    if u < config.side_view_probability:
        return float(rng.uniform(-math.pi, math.pi))
    if u < config.side_view_probability + config.facing_away_probability:
        return math.pi + _clamp(rng.normal(0.0, spread), -1.3, 1.3)
    return _clamp(rng.normal(0.0, spread), -1.3, 1.3)


DENIM: Colour = (40, 50, 90)
DARK_SHOES: Colour = (40, 35, 30)


def sample_clothes(rng: np.random.Generator) -> Clothes:
    """Skin and hair from palettes (8 % bald), a random shirt, trousers random or denim, shoes mostly dark;
    sleeves long, short or none; trousers long or shorts."""
    u = rng.random(8).tolist()
    shifts = (rng.random((4, 3)) * 2 - 1).tolist()
    shirt, trousers, shoes = _random_colours(rng, 3)
    skin = _jitter(SKIN_TONES[int(u[0] * len(SKIN_TONES))], shifts[0], 12)
    return Clothes(
        skin=skin,
        hair=skin if u[1] < 0.08 else _jitter(HAIR_COLOURS[int(u[2] * len(HAIR_COLOURS))], shifts[1], 15),
        shirt=shirt,
        trousers=trousers if u[3] < 0.6 else _jitter(DENIM, shifts[2], 30),
        shoes=_jitter(DARK_SHOES, shifts[3], 30) if u[4] < 0.8 else shoes,
        long_sleeves=u[5] < 0.5,
        sleeveless=u[6] < 0.1,
        shorts=u[7] < 0.25,
    )


def _yaw_matrix(angle: float) -> np.ndarray:
    """Rotation about the vertical axis in (x, y, z) person space, x to the person's left, z forward:
    x' = x cos + z sin, z' = -x sin + z cos (so yaw 0 maps person-left to image-right)."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _pitch_matrix(angle: float) -> np.ndarray:
    """Rotation about the person's x axis; positive tips forward-pointing vectors downwards."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, s], [0.0, -s, c]])


def _roll_matrix(angle: float) -> np.ndarray:
    """Rotation in the x-y plane."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


_OUTWARD = np.array([1.0, -1.0])  # left, right: the sign of "outwards" along person x (to the left)


def _perpendicular_rows(directions: np.ndarray, towards: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Per row, the unit vector perpendicular to ``directions`` closest to ``towards`` (a bend
    direction); ``fallback`` where the two are parallel and there is no such plane."""
    perpendicular = towards - (towards * directions).sum(axis=1, keepdims=True) * directions
    norm = np.linalg.norm(perpendicular, axis=1, keepdims=True)
    return np.where(norm > 1e-6, perpendicular / np.maximum(norm, 1e-6), fallback)


def _limb_pair(
    frame: np.ndarray, abduction: np.ndarray, flexion: np.ndarray, bend: np.ndarray, towards: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Unit directions (2, 3) of the upper and lower segments of a left and a right limb.

    The upper segment hangs down, raised sideways (outwards) by ``abduction`` and forwards by ``flexion``,
    in ``frame`` (rows: the local x (left), y (down), z (forward) axes in person space). The lower
    segment is the upper one turned by ``bend`` (0: straight) towards ``towards`` (2, 3, person space):
    forwards for elbows, backwards for knees; upwards if the upper segment points right at it.
    """
    cos_flexion = np.cos(flexion)
    sideways, down = _OUTWARD * np.sin(abduction) * cos_flexion, np.cos(abduction) * cos_flexion
    upper = np.array([sideways, down, np.sin(flexion)]).T @ frame
    perpendicular = _perpendicular_rows(upper, towards, fallback=np.array([0.0, -1.0, 0.0]))
    lower = np.cos(bend)[:, None] * upper + np.sin(bend)[:, None] * perpendicular
    return upper, lower


# Face points on the head sphere, in head space (x left, y down, z forward), in head radii. All within
# 0.92 radii of the centre, so they project inside the drawn head.
_FACE_POINTS = np.array(
    [
        [0.0, 0.2, 0.88],  # nose
        [0.36, -0.12, 0.82],
        [-0.36, -0.12, 0.82],  # left, right eye
        [0.88, 0.0, -0.1],
        [-0.88, 0.0, -0.1],  # left, right ear
    ]
)
_FACE_POINT_RADII = np.linalg.norm(_FACE_POINTS, axis=1)


def build_skeleton(body: BodyShape, pose: Pose, yaw: float, rng: np.random.Generator) -> Skeleton3D:
    """Pose the body in person space (x left, y down, z forward), then turn it by ``yaw`` into camera
    space."""
    points = np.zeros((NUM_SKELETON_POINTS, 3))
    normals = np.zeros((NUM_COCO_KEYPOINTS, 3))
    x_axis, _, forward = np.eye(3)

    # Hips: no twist of their own (the body yaw turns them).
    points[L_HIP], points[R_HIP] = body.hip_half_width * x_axis, -body.hip_half_width * x_axis
    normals[L_HIP], normals[R_HIP] = x_axis, -x_axis

    # Torso: lean forward (pitch) and sideways (bend); the shoulder line twists and tilts with it.
    p, b, t = pose.torso_pitch, pose.torso_bend, pose.torso_twist
    up = np.array([math.sin(b) * math.cos(p), -math.cos(b) * math.cos(p), math.sin(p)])
    neck_base = points[NECK_BASE] = body.torso_length * up
    shoulder_axis = np.array([math.cos(b) * math.cos(t), math.sin(b), -math.cos(b) * math.sin(t)])
    shoulder_forward = np.array([math.sin(t), 0.0, math.cos(t)])
    points[L_SHO] = neck_base + body.shoulder_half_width * shoulder_axis
    points[R_SHO] = neck_base - body.shoulder_half_width * shoulder_axis
    normals[L_SHO], normals[R_SHO] = shoulder_axis, -shoulder_axis

    # Neck and head: the head turns with the shoulders plus its own yaw, pitch and roll.
    head_up = _unit(up + np.array([0.0, 0.0, 0.5 * math.sin(pose.head_pitch)]), up)
    head_centre = points[HEAD_CENTRE] = neck_base + body.neck_length * head_up
    # Row vectors: v @ M.T turns v by M; pitch first, then roll, then yaw.
    head_yaw, head_roll, head_pitch = t + pose.head_yaw, pose.head_roll, pose.head_pitch
    head_rotation = _yaw_matrix(head_yaw) @ _roll_matrix(head_roll) @ _pitch_matrix(head_pitch)
    face = _FACE_POINTS @ head_rotation.T
    points[:5] = head_centre + body.head_radius * face
    normals[:5] = face / _FACE_POINT_RADII[:, None]

    # Arms, in the shoulders' frame; elbows bend forwards and a little inwards, hands continue the forearm.
    shoulder_frame = np.array([shoulder_axis, -up, shoulder_forward])
    inward, lift = rng.random(2), rng.random(2)
    elbow_towards = np.array([-0.6 * _OUTWARD * inward, 0.5 * lift - 0.4, np.ones(2)]).T @ shoulder_frame
    upper_arm, forearm = _limb_pair(
        shoulder_frame,
        np.array([pose.l_arm_abduction, pose.r_arm_abduction]),
        np.array([pose.l_arm_flexion, pose.r_arm_flexion]),
        np.array([pose.l_elbow, pose.r_elbow]),
        elbow_towards,
    )
    points[ELBOWS] = points[SHOULDERS] + body.upper_arm * upper_arm
    points[WRISTS] = points[ELBOWS] + body.forearm * forearm
    points[HAND_CENTRES] = points[WRISTS] + 0.9 * body.hand_radius * forearm

    # Legs, in the hips' frame; knees bend backwards, feet point forwards, square to the shin.
    knee_towards = np.array([rng.random(2) * 0.4 - 0.2, np.zeros(2), -np.ones(2)]).T
    thigh, shin = _limb_pair(
        np.eye(3),
        np.array([pose.l_thigh_abduction, pose.r_thigh_abduction]),
        np.array([pose.l_thigh_flexion, pose.r_thigh_flexion]),
        np.array([pose.l_knee, pose.r_knee]),
        knee_towards,
    )
    points[KNEES] = points[HIPS] + body.thigh * thigh
    points[ANKLES] = points[KNEES] + body.shin * shin
    points[TOES] = points[ANKLES] + body.foot * _perpendicular_rows(shin, forward, fallback=shin)

    depth_offsets = np.array([shoulder_forward, shoulder_forward, forward, forward]) * body.torso_half_depth
    corners = np.concatenate([points[SHOULDERS], points[HIPS]])
    points[TORSO_OUTLINE] = np.concatenate([corners + depth_offsets, corners - depth_offsets])

    # Person z (forward) is camera depth (towards the camera) at yaw 0.
    camera = _yaw_matrix(yaw).T
    return Skeleton3D(points=points @ camera, normal_depth=(normals @ camera)[:, 2])


def _extent(skeleton: Skeleton3D, body: BodyShape, roll: np.ndarray) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) of the rolled figure's joints, hands, toes and head relative to the pelvis."""
    xy = _to_image(skeleton.points[: TORSO_OUTLINE.start], roll, np.zeros(2))
    pad = body.head_radius * 1.15
    (x0, y0), (x1, y1) = xy.min(axis=0) - pad, xy.max(axis=0) + pad
    return float(x0), float(y0), float(x1), float(y1)


def _place_axis(rng: np.random.Generator, lo: float, hi: float, size: int) -> float:
    """An offset that puts [lo, hi] inside [0, size) when it fits, else overlapping it at random."""
    a, b = -lo, size - hi
    return float(rng.uniform(min(a, b), max(a, b)))


_TRUNCATION_SIDE_CDF = np.array([0.2, 0.4, 0.6])  # left, right, top; bottom otherwise


def place_figure(
    rng: np.random.Generator,
    extent: tuple[float, float, float, float],
    width: int,
    height: int,
    truncate: bool,
) -> tuple[float, float]:
    """The pelvis position: inside the image, or (``truncate``) with 15..60 % of the figure outside one
    border (the bottom most often, as in photographs cut at the legs)."""
    x0, y0, x1, y1 = extent
    x, y = _place_axis(rng, x0, x1, width), _place_axis(rng, y0, y1, height)
    if truncate:
        outside = rng.uniform(0.15, 0.6)
        side = int(np.searchsorted(_TRUNCATION_SIDE_CDF, rng.random(), side="right"))
        if side == 0:
            x = -x0 - outside * (x1 - x0)
        elif side == 1:
            x = width - x1 + outside * (x1 - x0)
        elif side == 2:
            y = -y0 - outside * (y1 - y0)
        else:
            y = height - y1 + outside * (y1 - y0)
    return x, y


def _rotation2d(angle: float) -> np.ndarray:
    """In-plane rotation of image vectors (x right, y down): positive turns clockwise on screen."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


def _to_image(points: np.ndarray, roll: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """Camera-space points (..., 3) -> continuous image coordinates (..., 2): roll, then translate."""
    return points[..., :2] @ roll.T + origin


def _segment(fixed: np.ndarray, a: int, b: int, thickness: float, colour: Colour) -> Polyline:
    """A thick line between skeleton points ``a`` and ``b`` (fixed-point image coordinates)."""
    return Polyline((fixed[[a, b]],), max(1, round(thickness)), colour)


def figure_shapes(
    skeleton: Skeleton3D, xy: np.ndarray, body: BodyShape, clothes: Clothes
) -> tuple[tuple[Shape, int], ...]:
    """The figure's body parts as (shape, part), sorted back to front by depth (painter's algorithm).
    ``xy`` are the skeleton's points in continuous image coordinates."""
    fixed = _fixed(xy)
    depth = skeleton.points[:, 2]
    c = clothes
    forearm_colour = c.shirt if c.long_sleeves and not c.sleeveless else c.skin
    upper_arm_colour = c.skin if c.sleeveless else c.shirt
    shin_colour = c.skin if c.shorts else c.trousers
    # The far side is the one whose shoulder is clearly further from the camera; it is drawn darker.
    right_far = depth[R_SHO] < depth[L_SHO] - 0.3 * body.shoulder_half_width
    left_far = depth[L_SHO] < depth[R_SHO] - 0.3 * body.shoulder_half_width

    entries: list[tuple[float, Shape, int]] = []  # (depth key, shape, part)
    # Torso and legs are volumes: their keys sit behind their centre lines, so that an arm in the same
    # plane (hanging at the side, resting on a thigh) is drawn in front of them.
    torso_depth = float(depth[[L_SHO, R_SHO, L_HIP, R_HIP]].mean()) - 0.5 * body.torso_half_depth
    torso = Polygon(cv2.convexHull(fixed[TORSO_OUTLINE]).reshape(-1, 2), c.shirt)
    entries.append((torso_depth, torso, TORSO))
    neck_depth = torso_depth + 0.1 * body.torso_half_depth
    neck = _segment(fixed, NECK_BASE, HEAD_CENTRE, max(3.0, body.neck_thickness), c.skin)
    entries.append((neck_depth, neck, NECK))
    # The head always covers its own neck (chin over throat).
    head_depth = max(float(depth[HEAD_CENTRE]) + 0.5 * body.head_radius, neck_depth + 1e-3)
    for shape in _head_shapes(xy, skeleton.normal_depth, body.head_radius, c):
        entries.append((head_depth, shape, HEAD))
        head_depth += 1e-6  # keep the head's own layers in order

    arm_thickness = (max(3.0, body.upper_arm_thickness), max(3.0, body.forearm_thickness))
    leg_thickness = (max(3.0, body.thigh_thickness), max(3.0, body.shin_thickness))
    leg_volume = 0.25 * body.thigh_thickness
    limbs = (
        (
            (R_SHO, R_ELB, R_WRI, R_HAND_CENTRE),
            (R_UPPER_ARM, R_FOREARM, R_HAND),
            right_far,
            arm_thickness,
            0.0,
            (upper_arm_colour, forearm_colour, c.skin),
        ),
        (
            (L_SHO, L_ELB, L_WRI, L_HAND_CENTRE),
            (L_UPPER_ARM, L_FOREARM, L_HAND),
            left_far,
            arm_thickness,
            0.0,
            (upper_arm_colour, forearm_colour, c.skin),
        ),
        (
            (R_HIP, R_KNEE, R_ANK, R_TOE),
            (R_THIGH, R_SHIN, R_FOOT),
            right_far,
            leg_thickness,
            leg_volume,
            (c.trousers, shin_colour, c.shoes),
        ),
        (
            (L_HIP, L_KNEE, L_ANK, L_TOE),
            (L_THIGH, L_SHIN, L_FOOT),
            left_far,
            leg_thickness,
            leg_volume,
            (c.trousers, shin_colour, c.shoes),
        ),
    )
    for (root, joint, end, tip), (upper_part, lower_part, end_part), far, thickness, volume, colours in limbs:
        if far:
            colours = tuple(_shade(colour, FAR_SIDE_SHADE) for colour in colours)
        upper_depth = float(depth[root] + depth[joint]) / 2 - volume
        lower_depth = float(depth[joint] + depth[end]) / 2 - volume
        entries.append((upper_depth, _segment(fixed, root, joint, thickness[0], colours[0]), upper_part))
        entries.append((lower_depth, _segment(fixed, joint, end, thickness[1], colours[1]), lower_part))
        if end_part in (R_HAND, L_HAND):
            hand_radius = _fixed_length(max(1.5, body.hand_radius))
            end_shape: Shape = Disc(tuple(fixed[tip].tolist()), hand_radius, colours[2])
        else:
            end_shape = _segment(fixed, end, tip, max(2.0, body.foot_thickness), colours[2])
        entries.append((lower_depth + 1e-6, end_shape, end_part))

    entries.sort(key=lambda entry: entry[0])  # stable: equal depths keep the listing order
    return tuple((shape, part) for _, shape, part in entries)


def _head_shapes(xy: np.ndarray, normal_depth: np.ndarray, radius: float, c: Clothes) -> list[Shape]:
    """Hair-coloured head, the face (skin) when it turns towards the camera, eyes and ears.
    Every shape stays inside 1.15 radii of the centre, so the head label covers all face keypoints."""
    head = xy[HEAD_CENTRE]
    up = head - xy[NECK_BASE]
    angle = math.degrees(math.atan2(up[0], -up[1]))
    shapes: list[Shape] = [ellipse(head, (radius, 1.12 * radius), angle, c.hair)]
    if normal_depth[NOSE] > -0.3:
        face_centre = head + 0.3 * (xy[NOSE] - head)
        shapes.append(ellipse(face_centre, (0.72 * radius, 0.82 * radius), angle, c.skin))
    for ear in (L_EAR, R_EAR):
        if normal_depth[ear] > SELF_OCCLUSION_THRESHOLD[ear]:
            shapes.append(disc(xy[ear], max(1.0, 0.2 * radius), c.skin))
    if radius > 6:  # eyes on a smaller head would be a smudge
        for eye in (L_EYE, R_EYE):
            if normal_depth[eye] > SELF_OCCLUSION_THRESHOLD[eye]:
                shapes.append(disc(xy[eye], max(1.0, 0.1 * radius), (25, 20, 20)))
    return shapes


def sample_figure(rng: np.random.Generator, width: int, height: int, config: SynthConfig) -> Figure:
    """One figure: size, proportions, pose, yaw, roll, clothes and place."""
    lo, hi = config.figure_height_range
    stature = height * math.exp(rng.uniform(math.log(lo), math.log(hi)))
    body = sample_body(rng, stature)
    pose = sample_pose(rng)
    yaw = sample_yaw(rng, config)
    skeleton = build_skeleton(body, pose, yaw, rng)
    if rng.random() < config.tilt_probability:
        roll_angle = float(rng.uniform(-1.4, 1.4))
    else:
        roll_angle = _clamp(rng.normal(0.0, 0.06), -0.25, 0.25)
    roll = _rotation2d(roll_angle)
    extent = _extent(skeleton, body, roll)
    truncate = rng.random() < config.truncation_probability
    origin = np.array(place_figure(rng, extent, width, height, truncate))
    xy = _to_image(skeleton.points, roll, origin)
    clothes = sample_clothes(rng)

    self_occluded = skeleton.normal_depth < SELF_OCCLUSION_THRESHOLD
    unlabelled = np.zeros(NUM_COCO_KEYPOINTS, dtype=bool)
    if not config.label_hidden_face:
        front = [NOSE, L_EYE, R_EYE]
        unlabelled[front] = skeleton.normal_depth[front] < FACE_UNLABELLED_BELOW
    return Figure(
        keypoints=xy[:NUM_COCO_KEYPOINTS],
        self_occluded=self_occluded,
        unlabelled=unlabelled,
        shapes=figure_shapes(skeleton, xy, body, clothes),
        height=stature,
    )


# -- background, clutter, distractors and occluders --------------------------------------------------------


def render_background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A smooth random field: a two-colour gradient with low-frequency blotches, upsampled (cheap)."""
    grid = 6
    t = np.linspace(0.0, 1.0, grid)
    angle = rng.uniform(0, 2 * math.pi)
    ramp = (math.cos(angle) * t[None, :] + math.sin(angle) * t[:, None])[..., None]
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    field_ = c0 + ramp * (c1 - c0) + rng.normal(0.0, rng.uniform(5, 40), (grid, grid, 3))
    small = np.clip(field_, 0, 255).astype(np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def _random_point(rng: np.random.Generator, width: int, height: int, margin: float = 0.1) -> np.ndarray:
    """A uniform point in the image grown by ``margin`` on every side (shapes may leave the image)."""
    return (rng.random(2) * (1 + 2 * margin) - margin) * (width, height)


_UNIT_SQUARE = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])


def _rectangle(centre: np.ndarray, half: np.ndarray, angle: float) -> np.ndarray:
    """Corners (4, 2) of a rectangle with half sizes ``half`` turned by ``angle``."""
    return (_UNIT_SQUARE * half) @ _rotation2d(angle).T + centre


def clutter_shapes(rng: np.random.Generator, width: int, height: int, count: int) -> list[Shape]:
    """Background things: rectangles (filled or outlined), discs, ellipses, lines and striped patches."""
    size = min(width, height)
    # Every shape's random numbers are drawn at once: per-call overhead dominates at this scale.
    kinds = rng.integers(6, size=count).tolist()
    centres = (rng.random((count, 2)) * 1.2 - 0.1) * (width, height)
    ends = (rng.random((count, 2)) * 1.2 - 0.1) * (width, height)
    params = rng.random((count, 4))  # sizes, angle, thickness in [0, 1)
    colours = _random_colours(rng, count)
    shapes: list[Shape] = []
    for kind, centre, end, u, colour in zip(kinds, centres, ends, params, colours):
        if kind == 0:
            shapes.append(polygon(_rectangle(centre, (0.03 + 0.27 * u[:2]) * size, math.pi * u[2]), colour))
        elif kind == 1:
            outline = _rectangle(centre, (0.03 + 0.27 * u[:2]) * size, math.pi * u[2])
            shapes.append(polyline(outline, 1 + 3 * u[3], colour, closed=True))
        elif kind == 2:
            shapes.append(disc(centre, (0.02 + 0.18 * u[0]) * size, colour))
        elif kind == 3:
            shapes.append(ellipse(centre, (0.02 + 0.23 * u[:2]) * size, 180 * u[2], colour))
        elif kind == 4:
            shapes.append(polyline(np.array([centre, end]), 1 + 4 * u[0], colour))
        else:
            shapes.extend(_stripes(rng, centre, (0.05 + 0.2 * u[:2]) * size, colour))
    return shapes


def _stripes(rng: np.random.Generator, centre: np.ndarray, half: np.ndarray, colour: Colour) -> list[Shape]:
    """A textured patch: a rectangle with up to 12 parallel stripes (a fence, a shelf, a striped wall)."""
    (x0, y0), (x1, y1) = centre - half, centre + half
    period, fill, direction = 3 + 7 * rng.random(), 0.2 + 0.3 * rng.random(), rng.random()
    offsets = np.arange(0.0, 2 * half[0] if direction < 0.5 else 2 * half[1], period)[:12]
    ends = np.empty((len(offsets), 2, 2))
    if direction < 0.5:  # vertical stripes
        ends[:, :, 0] = x0 + offsets[:, None]
        ends[:, 0, 1], ends[:, 1, 1] = y0, y1
    else:
        ends[:, :, 1] = y0 + offsets[:, None]
        ends[:, 0, 0], ends[:, 1, 0] = x0, x1
    stripe_colour = _random_colours(rng, 1)[0]
    return [polygon(_rectangle(centre, half, 0.0), colour), segments(ends, period * fill, stripe_colour)]


def distractor_shapes(rng: np.random.Generator, width: int, height: int, scale: float) -> list[Shape]:
    """One thing that is not a person but looks like part of one: a jointed stick of 1 to 3 segments in
    skin or clothing colours (a limb), or a skin-coloured blob (a head)."""
    u = rng.random(10)  # all of the distractor's random numbers at once
    skin = _jitter(SKIN_TONES[int(u[0] * len(SKIN_TONES))], (2 * u[1:4] - 1).tolist(), 15)
    colour = skin if u[4] < 0.5 else _random_colours(rng, 1)[0]
    start = u[5:7] * (width, height)
    if u[7] < 0.7:
        segments = 1 + int(u[8] * 3)
        angles = 2 * math.pi * u[9] + np.cumsum(rng.normal(0.0, 0.8, segments))
        lengths = (0.12 + 0.18 * rng.random(segments)) * scale
        steps = np.array([np.cos(angles), np.sin(angles)]).T * lengths[:, None]
        points = np.concatenate([start[None], start + np.cumsum(steps, axis=0)])
        return [polyline(points, max(2.0, (0.03 + 0.05 * u[8]) * scale), colour)]
    radius = (0.04 + 0.05 * u[8]) * scale
    return [ellipse(start, (radius, radius * (0.9 + 0.5 * u[9])), 180 * u[1], colour)]


def occluder_shapes(rng: np.random.Generator, figures: Sequence[Figure]) -> list[Shape]:
    """A foreground object over a random figure: a box, a pole, a ball or a bag, sized to the figure and
    placed on one of its keypoints so that it really hides something."""
    figure = _choose(rng, figures)
    keypoint = figure.keypoints[int(rng.integers(NUM_COCO_KEYPOINTS))]
    anchor = keypoint + rng.normal(0.0, 0.05 * figure.height, 2)
    size = figure.height * rng.uniform(0.08, 0.3)
    colour = _random_colours(rng, 1)[0]
    kind = int(rng.integers(4))
    if kind == 0:  # box
        return [polygon(_rectangle(anchor, np.array([size, size * rng.uniform(0.5, 1.5)]) / 2, 0.0), colour)]
    if kind == 1:  # pole (near vertical)
        direction = np.array([rng.normal(0.0, 0.15), 1.0])
        ends = np.array([anchor - 3 * size * direction, anchor + 3 * size * direction])
        return [polyline(ends, max(3.0, 0.3 * size), colour)]
    if kind == 2:  # ball
        return [disc(anchor, size / 2, colour)]
    return [ellipse(anchor, (size / 2, size * rng.uniform(0.3, 0.8)), float(rng.uniform(0, 180)), colour)]


class Scene(NamedTuple):
    """Everything sampled for one image; drawing it is deterministic, so it can be redrawn."""

    background: np.ndarray  # (H, W, 3) uint8 RGB with the clutter and background distractors
    figures: tuple[Figure, ...]  # far to near
    foreground: tuple[Shape, ...]  # occluders and foreground distractors, drawn over the figures
    noise: np.ndarray  # (H, W) uint8 sensor noise added last
    blur: bool


def sample_scene(rng: np.random.Generator, config: SynthConfig) -> Scene:
    """Sample the image size, background, figures (sorted far to near) and foreground objects."""
    width = int(rng.integers(config.width_range[0], config.width_range[1] + 1))
    height = int(rng.integers(config.height_range[0], config.height_range[1] + 1))
    background = render_background(rng, width, height)
    clutter = int(rng.integers(config.clutter_range[0], config.clutter_range[1] + 1))
    for shape in clutter_shapes(rng, width, height, clutter):
        draw(background, shape, shape.colour)

    people = int(rng.integers(config.min_people, config.max_people + 1))
    figures = [sample_figure(rng, width, height, config) for _ in range(people)]
    # Bigger figures are nearer, mostly: sort by height with some noise.
    depth_keys = [f.height * rng.uniform(0.8, 1.25) for f in figures]
    figures = [f for _, f in sorted(zip(depth_keys, figures), key=lambda pair: pair[0])]

    foreground: list[Shape] = []
    scale = height * 0.6
    for _ in range(int(rng.integers(config.distractor_range[0], config.distractor_range[1] + 1))):
        shapes = distractor_shapes(rng, width, height, scale)
        if rng.random() < config.foreground_distractor_probability:
            foreground.extend(shapes)
        else:
            for shape in shapes:
                draw(background, shape, shape.colour)
    if figures and rng.random() < config.occluder_probability:
        for _ in range(int(rng.integers(1, config.max_occluders + 1))):
            foreground.extend(occluder_shapes(rng, figures))

    noise = np.frombuffer(rng.bytes(height * width), dtype=np.uint8).reshape(height, width) >> NOISE_SHIFT
    blur = bool(rng.random() < config.blur_probability)
    return Scene(background, tuple(figures), tuple(foreground), noise, blur)


# -- rendering and annotation ---------------------------------------------------------------------------


def draw_scene(scene: Scene, figures: Sequence[Figure]) -> tuple[np.ndarray, np.ndarray]:
    """Colour image (before noise) and label map of the background, ``figures`` (figure numbers 1, 2, ...
    in this order) and the foreground objects."""
    image = scene.background.copy()
    labels = np.zeros(image.shape[:2], dtype=np.uint16)
    for number, figure in enumerate(figures, start=1):
        for shape, part in figure.shapes:
            paint(image, labels, shape, (number << FIGURE_SHIFT) | part)
    for shape in scene.foreground:
        paint(image, labels, shape, LABEL_OBJECT)
    return image, labels


def figure_map(labels: np.ndarray) -> np.ndarray:
    """Figure number per pixel (0: no person), Fortran-ordered: masks compared from it are
    Fortran-ordered without a copy, as pycocotools wants them."""
    return np.asfortranarray(labels >> FIGURE_SHIFT)


def visible_pixel_counts(figures: np.ndarray, count: int) -> list[int]:
    """Visible pixels of figure numbers 1..count in a figure map."""
    return [int(np.count_nonzero(figures == number)) for number in range(1, count + 1)]


def keypoint_annotation(figure: Figure, number: int, labels: np.ndarray) -> np.ndarray:
    """(17, 3) COCO keypoints of figure ``number`` with flags read from the label map.

    Coordinates are rounded to 2 decimals first, so the flags describe the numbers written to json.
    """
    height, width = labels.shape
    xy = np.round(figure.keypoints, 2) + 0.0  # + 0.0 turns -0.0 into 0.0
    inside = (xy[:, 0] >= 0) & (xy[:, 0] < width) & (xy[:, 1] >= 0) & (xy[:, 1] < height)
    columns = np.clip(np.floor(xy[:, 0]).astype(np.int64), 0, width - 1)
    rows = np.clip(np.floor(xy[:, 1]).astype(np.int64), 0, height - 1)
    label = labels[rows, columns]
    on_adjacent_part = KEYPOINT_ON_PART[np.arange(NUM_COCO_KEYPOINTS), label & PART_MASK]
    own = ((label >> FIGURE_SHIFT) == number) & on_adjacent_part
    flags = np.where(own & ~figure.self_occluded, 2, 1)
    flags = np.where(inside & ~figure.unlabelled, flags, 0)
    keypoints = np.zeros((NUM_COCO_KEYPOINTS, 3))
    keypoints[:, :2] = np.where(flags[:, None] > 0, xy, 0.0)
    keypoints[:, 2] = flags
    return keypoints


def person_annotation(figure: Figure, number: int, figures: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """The COCO annotation (without ids) of figure ``number``; ``figures`` is ``figure_map(labels)``."""
    mask = (figures == number).view(np.uint8)
    rle = mask_utils.encode(mask)
    keypoints = keypoint_annotation(figure, number, labels)
    flat: list[float | int] = []
    for x, y, v in keypoints.tolist():
        flat.extend((x, y, int(v)) if v > 0 else (0, 0, 0))
    return {
        "category_id": 1,
        "keypoints": flat,
        "num_keypoints": int((keypoints[:, 2] > 0).sum()),
        "bbox": [float(v) for v in mask_utils.toBbox(rle)],
        "area": int(mask_utils.area(rle)),
        "iscrowd": 0,
        "segmentation": {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")},
    }


def finish_image(image: np.ndarray, scene: Scene) -> np.ndarray:
    """Sensor noise (saturating add) and, sometimes, a slight defocus; labels are not affected."""
    noisy = cv2.add(image, cv2.cvtColor(scene.noise, cv2.COLOR_GRAY2RGB))
    return cv2.GaussianBlur(noisy, (3, 3), 0) if scene.blur else noisy


def render_image(seed: int, split: str, index: int, config: SynthConfig = SynthConfig()) -> SynthImage:
    """Render image ``index`` of ``split`` ("train" or "val"); a pure function of its arguments."""
    if split not in SPLIT_CODES:
        raise ValueError(f"split must be one of {sorted(SPLIT_CODES)}, got {split!r}")
    if seed < 0 or index < 0:
        raise ValueError("seed and index must be non-negative")
    rng = np.random.default_rng([seed, SPLIT_CODES[split], index])
    scene = sample_scene(rng, config)

    figures: Sequence[Figure] = scene.figures
    image, labels = draw_scene(scene, figures)
    numbers = figure_map(labels)
    counts = visible_pixel_counts(numbers, len(figures))
    if min(counts, default=config.min_visible_pixels) < config.min_visible_pixels:
        # Barely visible figures are removed and the rest redrawn (removal only uncovers pixels), so no
        # unannotated person remains in the picture.
        figures = [f for f, n in zip(figures, counts) if n >= config.min_visible_pixels]
        image, labels = draw_scene(scene, figures)
        numbers = figure_map(labels)

    annotations = tuple(
        person_annotation(figure, number, numbers, labels) for number, figure in enumerate(figures, start=1)
    )
    return SynthImage(image=finish_image(image, scene), labels=labels, annotations=annotations)


# -- the COCO root --------------------------------------------------------------------------------------


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """RGB uint8 -> JPEG bytes (cv2 wants BGR)."""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return data.tobytes()


def coco_categories() -> list[dict[str, Any]]:
    return [
        {
            "id": 1,
            "name": "person",
            "supercategory": "person",
            "keypoints": list(COCO_KEYPOINTS),
            "skeleton": [list(pair) for pair in COCO_SKELETON],
        }
    ]


def _write_json_atomically(path: Path, content: dict[str, Any]) -> None:
    """Write to a temporary file beside ``path``, then rename: readers never see half a file."""
    atomic_write_text(path, json.dumps(content, separators=(",", ":")))


def write_split(
    out: Path, split: str, count: int, seed: int, config: SynthConfig, progress: Callable[[int], None] | None
) -> tuple[int, int]:
    """Write one split's images and json; returns (images, annotations)."""
    image_dir = out / f"{split}2017"
    image_dir.mkdir(parents=True, exist_ok=True)
    json_path = out / "annotations" / f"person_keypoints_{split}2017.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    # A stale json must never describe the new images should this run stop half way.
    json_path.unlink(missing_ok=True)

    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for index in range(count):
        item = render_image(seed, split, index, config)
        image_id = IMAGE_ID_BASE[split] + index
        file_name = f"{image_id:012d}.jpg"
        (image_dir / file_name).write_bytes(encode_jpeg(item.image, config.jpeg_quality))
        images.append({"id": image_id, "file_name": file_name, "width": item.width, "height": item.height})
        for number, annotation in enumerate(item.annotations):
            annotation_id = image_id * ANNOTATION_ID_STRIDE + number
            annotations.append({"id": annotation_id, "image_id": image_id, **annotation})
        if progress is not None:
            progress(1)

    info = {
        "description": "posenas synthetic people (posenet.synth)",
        "version": SYNTH_VERSION,
        "year": 2025,
        "seed": seed,
        "split": split,
        "config": dataclasses.asdict(config),
    }
    content = {
        "info": info,
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": coco_categories(),
    }
    _write_json_atomically(json_path, content)
    return len(images), len(annotations)


def write_coco_root(
    out: str | os.PathLike[str],
    train: int,
    val: int,
    seed: int = 0,
    config: SynthConfig = SynthConfig(),
    progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Write a COCO 2017 person-keypoints root at ``out``:
    ``annotations/person_keypoints_{train,val}2017.json`` and ``{train,val}2017/<12-digit id>.jpg``.

    ``progress`` is called with the number of images just written (1 per image). Returns the counts:
    ``train_images``, ``train_annotations``, ``val_images``, ``val_annotations``. Images of an earlier,
    larger run stay on disk but are not listed in the json.
    """
    for split, count in (("train", train), ("val", val)):
        if not 0 <= count < MAX_IMAGES_PER_SPLIT:
            raise ValueError(f"{split}: image count must be in 0..{MAX_IMAGES_PER_SPLIT - 1}, got {count}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    root = Path(out)
    counts: dict[str, int] = {}
    for split, count in (("train", train), ("val", val)):
        images, annotations = write_split(root, split, count, seed, config, progress)
        counts[f"{split}_images"], counts[f"{split}_annotations"] = images, annotations
    return counts
