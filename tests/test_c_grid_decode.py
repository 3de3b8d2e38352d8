"""The microcontroller's grid decoder: pose_grid.c against its Python twin (posenet.pose.grid_decode, i.e.
``decode`` with ``DecodeConfig(decoder="grid")``), and the twin against the truth and the upsampling decoder.

The C decoder makes the same float32 operations in the same order as the Python one, and computes its
logs and exps with the same polynomials (no libm beyond sqrtf, which is correctly rounded like NumPy's
float32 sqrt): keypoints and keypoint scores come out bit for bit equal. Only the person scores differ
in rounding (float sums in C, float64 in Python's ``assemble``).

Compiled with gcc and strict flags (-Werror): the host tool pose_tool.c (-d grid) with the default limits (the
microcontroller's), with sanitizers, and with raised limits for maps that exceed them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from test_c_decode import ACC_SCALE, PEOPLE, SANITIZER_ENV, SANITIZERS, random_maps, target_maps

from posenas.posenet.export.m4 import parse_poses
from posenas.posenet.pose.decode import DecodeConfig, Pose, decode
from posenas.posenet.pose.grid_decode import fast_exp, floored_log, grid_peaks, sample_order
from posenas.posenet.pose.keypoints import GROUPING_ORDER, LIMBS, REDUNDANT_LIMBS

CSRC = Path(__file__).resolve().parents[1] / "posenet" / "export" / "csrc"
CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic", "-ffp-contract=off"]
RAISED_LIMITS = ["-DPG_MAX_CANDIDATES=256", "-DPG_MAX_PEAKS_PER_KEYPOINT=256", "-DPG_MAX_PEOPLE=2048"]
GRID = DecodeConfig.for_input(128, decoder="grid")
RAM_GOAL = 24 * 1024  # bytes: the budget for all the decoder's buffers on the MAX78000
PG_ERR_ARGUMENT, PG_ERR_SIZE, PG_ERR_CONFIG = -1, -2, -3


@dataclass
class Built:
    tool: Path  # default (microcontroller) limits, no instrumentation
    checked: Path  # default limits, sanitizers
    raised: Path  # raised limits, sanitizers
    workdir: Path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not on PATH: the C decoder cannot be compiled")
    out = tmp_path_factory.mktemp("c_grid")
    sources = [str(CSRC / "pose_decode.c"), str(CSRC / "pose_grid.c"), str(CSRC / "pose_tool.c")]
    builds = {"tool": [], "checked": SANITIZERS, "raised": SANITIZERS + RAISED_LIMITS}
    for name, extra in builds.items():
        done = subprocess.run(
            [gcc, *CFLAGS, *extra, *sources, "-lm", "-o", str(out / name)], capture_output=True, text=True
        )
        if done.returncode != 0 and extra[:1] == SANITIZERS[:1]:  # no sanitizer runtime: build plainly
            plain = [e for e in extra if e not in SANITIZERS]
            done = subprocess.run(
                [gcc, *CFLAGS, *plain, *sources, "-lm", "-o", str(out / name)], capture_output=True, text=True
            )
        assert done.returncode == 0, f"compiling {name} failed (warnings are errors):\n{done.stderr}"
    return Built(out / "tool", out / "checked", out / "raised", out)


def run_c(
    built: Built,
    heatmaps: np.ndarray,
    pafs: np.ndarray,
    *,
    build: str = "checked",
    max_poses: int = 1000,
    scales: tuple[float, float] | None = None,
    shape: tuple[int, int] | None = None,
) -> list[Pose] | int:
    """Decode with the host tool: the people, or the negative error code it reports."""
    h, w = shape if shape is not None else heatmaps.shape[1:]
    path = built.workdir / "maps.bin"
    np.concatenate([heatmaps, pafs]).astype(np.int32 if scales else np.float32).tofile(path)
    args = [str(getattr(built, build)), "-d", "grid", "-n", str(max_poses)]
    if scales:
        args += ["-q", repr(float(scales[0])), repr(float(scales[1]))]
    done = subprocess.run(
        [*args, str(h), str(w), str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**SANITIZER_ENV, "PATH": "/usr/bin:/bin"},
    )
    assert "Sanitizer" not in done.stderr and "runtime error" not in done.stderr, done.stderr
    if done.stdout.startswith("error"):
        assert done.returncode == 1
        return int(done.stdout.split()[1])
    assert done.returncode == 0, done.stderr
    return parse_poses(done.stdout)


def assert_same_people(c_poses: list[Pose] | int, py_poses: list[Pose]) -> None:
    """Same people in the same order, keypoints and their scores bit for bit, person scores to float32."""
    assert not isinstance(c_poses, int), f"the C decoder failed with {c_poses}"
    assert len(c_poses) == len(py_poses)
    for c, py in zip(c_poses, py_poses):
        assert c.count == py.count
        np.testing.assert_array_equal(c.keypoints, py.keypoints)
        assert c.score == pytest.approx(py.score, rel=1e-5)


# --- the C decoder against the Python twin ------------------------------------------------------------------


def test_tables_and_static_memory(built: Built):
    """Limb tables as Python's; the static bytes as documented in the header, and within the 24 KB goal."""
    lines = dict(
        line.split(" ", 1)
        for line in subprocess.run(
            [str(built.tool), "-d", "grid", "--tables"], capture_output=True, text=True, check=True
        ).stdout.splitlines()
    )
    assert [tuple(int(v) for v in pair.split(",")) for pair in lines["limbs"].split()] == list(LIMBS)
    assert [int(v) for v in lines["grouping_order"].split()] == list(GROUPING_ORDER)
    assert [int(v) for v in lines["redundant_limbs"].split()] == sorted(REDUNDANT_LIMBS)
    documented = re.search(r"(\d+) bytes \([\d.]+ KiB\) in all", (CSRC / "pose_grid.h").read_text())
    assert documented is not None and int(lines["static_bytes"]) == int(documented[1])
    assert int(lines["static_bytes"]) <= RAM_GOAL


def test_header_arithmetic_within_24_kb():
    """The header's table for 16 peaks per keypoint and 20 people, summed here: under 24 KB (the check
    that needs no compiler; test_m4.py checks the Cortex-M4 object itself)."""
    header = (CSRC / "pose_grid.h").read_text()
    limits = {name: int(value) for name, value in re.findall(r"#define (PG_MAX_\w+) (\d+)", header)}
    assert limits["PG_MAX_PEAKS_PER_KEYPOINT"] == 16 and limits["PG_MAX_PEOPLE"] == 20
    rows = [int(v) for v in re.findall(r"^ \* .*\[\s*(\d+)\]$", header, re.M)]  # the table's [bytes] column
    candidates, peaks = limits["PG_MAX_CANDIDATES"] * 20, 18 * 16 * 12 + 18 * 4
    assert rows[:2] == [candidates, peaks]
    assert sum(rows) == int(re.search(r"(\d+) bytes \(", header)[1]) <= RAM_GOAL


@pytest.mark.parametrize("name", list(PEOPLE))
@pytest.mark.parametrize("noise", [0.0, 0.05])
def test_planted_and_noisy_people(built: Built, name: str, noise: float):
    heatmaps, pafs = target_maps(PEOPLE[name], noise=noise, seed=2)
    expected = decode(heatmaps, pafs, GRID)
    assert len(expected) == len(PEOPLE[name])  # the twin finds them all: the comparison is not vacuous
    assert_same_people(run_c(built, heatmaps, pafs), expected)


@pytest.mark.parametrize("seed", range(3))
def test_heavy_noise_with_raised_limits(built: Built, seed: int):
    """Noise 0.2 puts dozens of spurious peaks in every channel: past the microcontroller's limits, so
    the raised build is compared; the default build keeps at most its 20 people."""
    heatmaps, pafs = target_maps(PEOPLE["three"], noise=0.2, seed=seed)
    expected = decode(heatmaps, pafs, GRID)
    assert len(expected) > 20
    assert_same_people(run_c(built, heatmaps, pafs, build="raised"), expected)
    limited = run_c(built, heatmaps, pafs)
    assert isinstance(limited, list) and 0 < len(limited) <= 20


@pytest.mark.parametrize("h, w, seed", [(16, 16, 0), (12, 9, 1), (5, 14, 2), (2, 3, 3), (1, 1, 4)])
def test_random_maps_of_other_sizes(built: Built, h: int, w: int, seed: int):
    """Borders, 1- and 2-cell axes (no refinement), clamped limb samples: every path of the decoder."""
    heatmaps, pafs = random_maps(h, w, seed)
    expected = decode(heatmaps, pafs, GRID)
    if h * w > 6:
        assert len(expected) >= 3
    assert_same_people(run_c(built, heatmaps, pafs, build="raised"), expected)


@pytest.mark.parametrize("paf_scale", [ACC_SCALE, ACC_SCALE // 2])
def test_int32_accumulators(built: Built, paf_scale: int):
    """pg_decode_int32 (acc x 1 / scale) on round(value x scale) equals Python decoding acc / scale."""
    heatmaps, pafs = target_maps(PEOPLE["two"], noise=0.02, seed=3)
    heat_acc, paf_acc = np.rint(heatmaps * ACC_SCALE).astype(np.int32), np.rint(pafs * paf_scale).astype(np.int32)
    expected = decode(heat_acc / ACC_SCALE, paf_acc / paf_scale, GRID)
    assert len(expected) == 2
    assert_same_people(run_c(built, heat_acc, paf_acc, scales=(ACC_SCALE, paf_scale)), expected)


def test_model_produced_maps(built: Built):
    """A tiny-hw network's integer outputs (posenas' simulation of the chip, random weights, seed 1: 29 peaks
    over 18 keypoints) on the built-in sample image, decoded from the 32-bit accumulators as on the chip.
    (Random networks make no people; BENCHMARKS.md compares the two decoders on trained networks' maps.)"""
    seed = 1
    from networks import random_checkpoint

    from posenas.posenet.export.integer import integer_layers, simulation_model
    from posenas.posenet.export.sample import sample_input, simulate
    from posenas.space.baselines import get_arch

    spec = get_arch("tiny-hw")
    model, _ = simulation_model(random_checkpoint(spec, seed))
    heat_layer, paf_layer = (layer for layer in integer_layers(model) if layer.node.is_output)
    heat_acc, paf_acc = simulate(model, sample_input(spec))
    scales = (heat_layer.wide_scale, paf_layer.wide_scale)
    expected = decode(heat_acc / scales[0], paf_acc / scales[1], GRID)
    peaks = grid_peaks(heat_acc / scales[0], 8, GRID.peak_threshold, GRID.nms_radius)
    assert sum(len(p) for p in peaks) > 18  # the network's maps hold peaks: not a vacuous comparison
    found = run_c(built, heat_acc.astype(np.int32), paf_acc.astype(np.int32), build="raised", scales=scales)
    assert_same_people(found, expected)


def test_max_poses_and_empty_maps(built: Built):
    heatmaps, pafs = target_maps(PEOPLE["three"])
    expected = decode(heatmaps, pafs, GRID)
    assert_same_people(run_c(built, heatmaps, pafs, max_poses=2), expected[:2])
    empty = np.zeros((19, 16, 16), np.float32), np.zeros((38, 16, 16), np.float32)
    assert decode(*empty, GRID) == [] and run_c(built, *empty) == []


@pytest.mark.parametrize(
    "shape, options, code",
    [
        ((0, 16), {}, PG_ERR_SIZE),
        ((16, 0), {}, PG_ERR_SIZE),
        ((256, 1), {}, PG_ERR_SIZE),
        ((16, 16), {"max_poses": -1}, PG_ERR_ARGUMENT),
        ((16, 16), {"scales": (0.0, ACC_SCALE)}, PG_ERR_ARGUMENT),
        ((16, 16), {"scales": (ACC_SCALE, float("inf"))}, PG_ERR_ARGUMENT),
    ],
)
def test_bad_sizes_and_arguments_give_error_codes(built: Built, shape, options, code):
    """256 rows exceed PG_MAX_MAP_SIDE (255: cell indices are stored in a byte)."""
    rows, cols = max(shape[0], 1), max(shape[1], 1)
    maps = np.zeros((19, rows, cols), np.float32), np.zeros((38, rows, cols), np.float32)
    assert run_c(built, *maps, shape=shape, **options) == code


# --- the Python twin on its own -------------------------------------------------------------------------------


def test_polynomial_log_and_exp_are_accurate():
    values = np.logspace(-4, 4, 200_001).astype(np.float32)
    exact = np.log(np.maximum(values.astype(np.float64), 1e-3))
    assert np.abs(floored_log(values) - exact).max() < 1.5e-6  # 3e-7 of fit, plus float32 rounding near 9
    assert floored_log(np.array([np.nan, -1.0, 0.0], np.float32)).tolist() == [floored_log(np.float32(1e-3))] * 3
    x = np.linspace(-80, 80, 200_001).astype(np.float32)
    assert np.abs(fast_exp(x) / np.exp(x.astype(np.float64)) - 1).max() < 5e-6
    assert fast_exp(np.array([np.nan, -100.0, 100.0], np.float32)).tolist() == [0.0, 0.0, np.inf]


def test_samples_are_visited_from_the_middle():
    assert sample_order(10) == [4, 5, 3, 6, 2, 7, 1, 8, 0, 9]
    assert sample_order(5) == [2, 1, 3, 0, 4]


@pytest.mark.parametrize("name", ["one", "three"])
def test_grid_keypoints_are_near_the_truth(name: str):
    """On the training targets the log-parabola fit is exact for a Gaussian: every keypoint within 0.05 px
    of the truth, where the upsampling decoder is off by up to half an upsampled pixel and more."""
    people = PEOPLE[name]
    heatmaps, pafs = target_maps(people)
    for config, tolerance in [(GRID, 0.05), (DecodeConfig.for_input(128), 1.0)]:
        poses = decode(heatmaps, pafs, config)
        assert len(poses) == len(people)
        for truth in people:
            pose = min(poses, key=lambda p: np.abs(p.keypoints[1, :2] - truth[1, :2]).sum())
            visible = (truth[:, 2] > 0) & (pose.keypoints[:, 2] > 0)
            assert visible.sum() >= 16
            assert np.abs(pose.keypoints[visible, :2] - truth[visible, :2]).max() < tolerance


def test_bad_decoder_name_is_refused():
    with pytest.raises(ValueError, match="decoder"):
        DecodeConfig(decoder="bilinear")
