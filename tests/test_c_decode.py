"""The C99 decoder (posenet/export/csrc/pose_decode.c) against posenet.decode.decode.

The C sources are compiled once per module with gcc and the strict flags below (-Werror), into
* the host tool pose_tool.c (-d upsampled) (maps from a binary file in, poses as text out): as a plain
  product build, and with address/undefined-behaviour sanitizers, with the default static limits
  and with raised ones (-D overrides);
* a driver written here (sanitized too), which #includes pose_decode.c to run its stages on their
  own: upsampling, peak extraction from given upsampled heatmaps, limb scoring of given peaks.
Whole decodes are compared with posenet.decode.decode, the stages with upsample_maps,
extract_peaks and score_limbs.

Tolerances: the C decoder makes the same float32/float64 operations in the same order as NumPy and
cv2, so on every input below its upsampled PAFs, and its upsampled heatmaps away from the border,
are bit-identical to Python's. Only the border extension of the heatmaps differs, by an ulp or two:
it takes logs and exps, and NumPy's SIMD log/exp are not correctly rounded (nor always equal to the
C library's). Where such an ulp breaks or makes an exact tie between two upsampled pixels, a peak
moves by half an upsampled pixel (0.5 px at upsample = stride) and the limbs through it are sampled
at other pixels. Hence: same people, same filled slots and counts, keypoints within 0.5 px, keypoint
scores within 1e-6, person scores within 1e-3 relative; keypoints more than two cells from the
border must be identical. (On these inputs all keypoints come out identical and the person scores
differ only by the C output's float32 rounding.) The stage tests, whose inputs avoid the border
extension's logs, demand bit-identical peak tables and connections.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from posenas.posenet.pose.decode import DecodeConfig, Pose, decode, extract_peaks, score_limbs, upsample_maps
from posenas.posenet.pose.keypoints import GROUPING_ORDER, LIMBS, REDUNDANT_LIMBS
from posenas.posenet.pose.targets import render_targets

CSRC = Path(__file__).resolve().parents[1] / "posenet" / "export" / "csrc"
CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic"]
RAISED_LIMITS = ["-DPD_MAX_CANDIDATES=1024", "-DPD_MAX_PEAKS_PER_KEYPOINT=256", "-DPD_MAX_PEOPLE=4096"]
INPUT_SIZE = 128
ACC_SCALE = 16384  # 128 * 2^(8 - 1): 8-bit weights

PD_ERR_ARGUMENT, PD_ERR_SIZE, PD_ERR_CONFIG = -1, -2, -3

# A driver that #includes pose_decode.c to run its stages on their own:
#   up H W U MAPS OUT: the 18 upsampled heatmaps (whole-channel path) and the 38 upsampled PAFs
#     (evaluated pixel by pixel, the path limb scoring takes) as float32 (56, H * U, W * U);
#   peaks H W UPSAMPLE STRIDE RADIUS THRESHOLD UPSAMPLED: peaks of given upsampled (18, H, W) heatmaps;
#   limbs h w UPSAMPLE STRIDE MAPS PEAKS: connections of given peaks, float32 rows (k, x, y, score).
INTERNALS_DRIVER = r"""
#include "pose_decode.c"
#include <stdio.h>
#include <stdlib.h>

static float *read_floats(const char *path, size_t *count)
{
    FILE *file = fopen(path, "rb");
    float *data;
    long size;
    if (file == NULL || fseek(file, 0, SEEK_END) != 0 || (size = ftell(file)) < 0) {
        exit(2);
    }
    rewind(file);
    *count = (size_t)size / 4;
    data = malloc(*count * 4 + 4);
    if (data == NULL || fread(data, 4, *count, file) != *count) {
        exit(2);
    }
    fclose(file);
    return data;
}

static void print_peaks(void)
{
    int k, i;
    for (k = 0; k < PD_NUM_KEYPOINTS; k++) {
        for (i = 0; i < s_npeaks[k]; i++) {
            printf("peak %d %.9g %.9g %.9g\n", k, s_peaks[k][i].x, s_peaks[k][i].y, s_peaks[k][i].score);
        }
    }
}

int main(int argc, char **argv)
{
    pd_config cfg;
    pd_source heatmaps = {0}, pafs = {0};
    size_t count, plane, up;
    float *maps, *out;
    int h, w, u, k, i, j;
    if (argc < 6) {
        return 2;
    }
    h = atoi(argv[2]);
    w = atoi(argv[3]);
    pd_default_config(&cfg, 128);
    cfg.upsample = u = atoi(argv[4]);
    plane = (size_t)h * (size_t)w;
    if (strcmp(argv[1], "up") == 0 && argc == 6) {
        up = plane * (size_t)u * (size_t)u;
        maps = read_floats(argv[5], &count);
        out = malloc(56 * up * sizeof *out);
        if (count != 57 * plane || out == NULL) {
            return 2;
        }
        heatmaps.values = maps;
        pafs.values = maps + 19 * plane;
        build_taps(s_xtaps, w, u);
        build_taps(s_ytaps, h, u);
        for (k = 0; k < 18; k++) {
            upsample_heatmap(&heatmaps, k, h, w, u);
            memcpy(out + (size_t)k * up, s_up, up * sizeof *out);
        }
        for (k = 0; k < 38; k++) {
            extend_channel(&pafs, k, h, w, 0, s_ext[0]);
            for (i = 0; i < h * u; i++) {
                for (j = 0; j < w * u; j++) {
                    out[(size_t)(18 + k) * up + (size_t)(i * w * u + j)] = upsampled_value(s_ext[0], w, i, j);
                }
            }
        }
        fwrite(out, 4, 56 * up, stdout);
        return 0;
    }
    if (strcmp(argv[1], "peaks") == 0 && argc == 9) {
        cfg.stride = atoi(argv[5]);
        cfg.nms_radius = atof(argv[6]);
        cfg.peak_threshold = (float)atof(argv[7]);
        maps = read_floats(argv[8], &count);
        if (count != 18 * plane || h > PD_UP_H || w > PD_UP_W) {
            return 2;
        }
        for (k = 0; k < 18; k++) {
            memcpy(s_up, maps + (size_t)k * plane, plane * sizeof *maps);
            find_peaks(k, h, w, &cfg);
        }
        print_peaks();
        return 0;
    }
    if (strcmp(argv[1], "limbs") == 0 && argc == 8) {
        int first_id[PD_NUM_KEYPOINTS], total = 0;
        float *peaks;
        cfg.stride = atoi(argv[5]);
        maps = read_floats(argv[6], &count);
        if (count != 57 * plane) {
            return 2;
        }
        pafs.values = maps + 19 * plane;
        peaks = read_floats(argv[7], &count);
        for (i = 0; i + 3 < (int)count; i += 4) {
            k = (int)peaks[i];
            s_peaks[k][s_npeaks[k]].x = peaks[i + 1];
            s_peaks[k][s_npeaks[k]].y = peaks[i + 2];
            s_peaks[k][s_npeaks[k]].score = peaks[i + 3];
            s_npeaks[k]++;
        }
        for (k = 0; k < PD_NUM_KEYPOINTS; k++) {
            first_id[k] = total;
            total += s_npeaks[k];
        }
        build_taps(s_xtaps, w, u);
        build_taps(s_ytaps, h, u);
        for (k = 0; k < PD_NUM_LIMBS; k++) {
            score_limb(k, &pafs, h, w, &cfg, first_id);
            for (i = 0; i < s_nconn[k]; i++) {
                printf("conn %d %d %d %.9g\n", k, s_conn[k][i].from, s_conn[k][i].to, s_conn[k][i].affinity);
            }
        }
        return 0;
    }
    return 2;
}
"""


@dataclass
class Built:
    tool: Path  # the host tool as a product build: default limits, no instrumentation
    tool_checked: Path  # the same, with sanitizers (where gcc has them)
    tool_raised: Path  # raised limits (-D), with sanitizers
    internals: Path  # the stage driver, default limits, with sanitizers
    workdir: Path


SANITIZERS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g"]
SANITIZER_ENV = {"ASAN_OPTIONS": "detect_leaks=0", "UBSAN_OPTIONS": "print_stacktrace=1"}


def _compile(commands: dict[str, list[str]]) -> dict[str, str]:
    """Run the compile commands in parallel: {name: compiler output} of those that failed."""
    jobs = {
        name: subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for name, cmd in commands.items()
    }
    failed = {}
    for name, job in jobs.items():
        output, _ = job.communicate()
        if job.returncode != 0:
            failed[name] = output
    return failed


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """Compile once per module: -Werror with the strict flags for every build. The instrumented
    builds catch out-of-bounds accesses and undefined behaviour; without the sanitizer runtime
    (gcc built without libasan) they are compiled plainly."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not on PATH: the C decoder cannot be compiled")
    out = tmp_path_factory.mktemp("c_decode")
    (out / "internals.c").write_text(INTERNALS_DRIVER)
    sources = [str(CSRC / "pose_decode.c"), str(CSRC / "pose_grid.c"), str(CSRC / "pose_tool.c")]
    plain = {"tool": [gcc, *CFLAGS, *sources, "-lm", "-o", str(out / "tool")]}
    checked = {
        "tool_checked": [gcc, *CFLAGS, *sources, "-lm", "-o", str(out / "tool_checked")],
        "tool_raised": [gcc, *CFLAGS, *RAISED_LIMITS, *sources, "-lm", "-o", str(out / "tool_raised")],
        "internals": [gcc, *CFLAGS, f"-I{CSRC}", str(out / "internals.c"), "-lm", "-o", str(out / "internals")],
    }
    failed = _compile({**plain, **{name: cmd[:2] + SANITIZERS + cmd[2:] for name, cmd in checked.items()}})
    if failed and "tool" not in failed:  # the instrumented builds alone failed: no sanitizer runtime?
        failed = _compile(checked)
    assert not failed, "compiling failed (warnings are errors):\n" + "\n".join(
        f"--- {name}\n{output}" for name, output in failed.items()
    )
    return Built(out / "tool", out / "tool_checked", out / "tool_raised", out / "internals", out)


def _run(args: list[str], text: bool) -> subprocess.CompletedProcess:
    env = {**os.environ, **SANITIZER_ENV}
    result = subprocess.run(args, check=False, capture_output=True, text=text, timeout=30, env=env)
    stderr = result.stderr if text else result.stderr.decode(errors="replace")
    assert "Sanitizer" not in stderr and "runtime error" not in stderr, stderr
    return result


@dataclass
class CPose:
    keypoints: np.ndarray  # (18, 3) float32
    score: float
    count: int


def run_c(
    built: Built,
    heatmaps: np.ndarray,
    pafs: np.ndarray,
    *,
    upsample: int | None = None,
    input_size: int = INPUT_SIZE,
    scales: tuple[float, float] | None = None,
    max_poses: int = 1000,
    build: str = "tool",
    shape: tuple[int, int] | None = None,
) -> list[CPose] | int:
    """Decode with the host tool: the poses, or the negative error code it reports. With ``scales``
    the maps are int32 accumulators (pd_decode_int32)."""
    h, w = shape if shape is not None else heatmaps.shape[1:]
    path = built.workdir / "maps.bin"
    dtype = np.int32 if scales is not None else np.float32
    np.concatenate([heatmaps, pafs]).astype(dtype).tofile(path)
    args = [str(getattr(built, build)), "-d", "upsampled", "-i", str(input_size), "-n", str(max_poses)]
    if upsample is not None:
        args += ["-u", str(upsample)]
    if scales is not None:
        args += ["-q", repr(float(scales[0])), repr(float(scales[1]))]
    result = _run([*args, str(h), str(w), str(path)], text=True)
    lines = result.stdout.splitlines()
    if lines and lines[0].startswith("error"):
        assert result.returncode == 1
        return int(lines[0].split()[1])
    assert result.returncode == 0, result.stderr
    count = int(lines[0].split()[1])
    poses = []
    for i in range(count):
        head = lines[1 + 19 * i].split()
        assert head[:2] == ["pose", str(i)]
        rows = [lines[2 + 19 * i + k].split() for k in range(18)]
        assert [row[:2] for row in rows] == [["kp", str(k)] for k in range(18)]
        keypoints = np.array([[np.float32(v) for v in row[2:]] for row in rows], dtype=np.float32)
        poses.append(CPose(keypoints, float(head[3]), int(head[5])))
    assert len(lines) == 1 + 19 * count
    return poses


def run_internals(built: Built, *args: object, text: bool = True) -> str | bytes:
    result = _run([str(built.internals), *map(str, args)], text=text)
    assert result.returncode == 0, result.stderr
    return result.stdout


def assert_same_poses(
    c_poses: list[CPose] | int, py_poses: list[Pose], image: tuple[float, float] = (INPUT_SIZE, INPUT_SIZE)
) -> None:
    """Same people in the same order, within the module's tolerances; keypoints farther than two
    cells from the image border (``image`` = (width, height) in px), where no upsampled value
    depends on the border extension, must be identical."""
    assert not isinstance(c_poses, int), f"the C decoder failed with {c_poses}"
    assert len(c_poses) == len(py_poses)
    margin = 2 * 8
    for c, py in zip(c_poses, py_poses):
        assert c.count == py.count
        np.testing.assert_array_equal(c.keypoints[:, 2] > 0, py.keypoints[:, 2] > 0)
        np.testing.assert_array_equal(c.keypoints[:, 2] == 0, np.all(c.keypoints == 0, axis=1))
        assert np.abs(c.keypoints[:, :2] - py.keypoints[:, :2]).max() <= 0.5
        np.testing.assert_allclose(c.keypoints[:, 2], py.keypoints[:, 2], rtol=0, atol=1e-6)
        x, y = py.keypoints[:, 0], py.keypoints[:, 1]
        inside = (x >= margin) & (x <= image[0] - margin) & (y >= margin) & (y <= image[1] - margin)
        np.testing.assert_array_equal(c.keypoints[inside], py.keypoints[inside])
        assert c.score == pytest.approx(py.score, rel=1e-3)


# --- maps ------------------------------------------------------------------------------------------

# A standing person facing the camera, in input pixels relative to the neck (body-18 order).
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


def person(neck: tuple[float, float], scale: float, seed: int, missing: tuple[int, ...] = ()) -> np.ndarray:
    """(18, 3) keypoints of the template at ``neck``, each jittered by up to 1 px per axis."""
    keypoints = np.zeros((18, 3))
    jitter = np.random.default_rng(seed).uniform(-1.0, 1.0, size=(18, 2))
    keypoints[:, :2] = np.asarray(neck) + scale * TEMPLATE + jitter
    keypoints[:, 2] = 2
    keypoints[list(missing)] = 0
    return keypoints


PEOPLE = {
    "one": [person((64, 28), 1.0, seed=0)],
    "two": [person((36, 30), 0.8, seed=1), person((92, 34), 0.8, seed=2, missing=(4, 16))],
    "three": [person((24, 30), 0.6, seed=3), person((64, 40), 0.7, seed=4), person((104, 26), 0.6, seed=5)],
    "touching the border": [person((10, 20), 1.0, seed=6)],  # right arm, ear and eye out of the image
}


def target_maps(people: list[np.ndarray], noise: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Training targets (19, 16, 16) and (38, 16, 16) of the people, plus seeded Gaussian noise."""
    heatmaps, pafs, _ = render_targets(np.stack(people), INPUT_SIZE)
    if noise:
        rng = np.random.default_rng(seed)
        heatmaps = heatmaps + rng.normal(0.0, noise, heatmaps.shape)
        pafs = pafs + rng.normal(0.0, noise, pafs.shape)
    return heatmaps.astype(np.float32), pafs.astype(np.float32)


def random_maps(h: int, w: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Maps with many peaks and random fields: every decoding path is exercised."""
    rng = np.random.default_rng(seed)
    heatmaps = (rng.random((19, h, w)) ** 3).astype(np.float32)
    pafs = rng.uniform(-1.0, 1.0, (38, h, w)).astype(np.float32)
    return heatmaps, pafs


# --- tests -----------------------------------------------------------------------------------------


def test_tables_and_static_memory_match_python_and_the_header(built: Built):
    lines = dict(
        line.split(" ", 1)
        for line in subprocess.run(
            [str(built.tool), "-d", "upsampled", "--tables"], capture_output=True, text=True, check=True
        ).stdout.splitlines()
    )
    assert [tuple(int(v) for v in pair.split(",")) for pair in lines["limbs"].split()] == list(LIMBS)
    assert [int(v) for v in lines["grouping_order"].split()] == list(GROUPING_ORDER)
    assert [int(v) for v in lines["redundant_limbs"].split()] == sorted(REDUNDANT_LIMBS)
    documented = re.search(r"(\d+) bytes \([\d.]+ KiB\) in all", (CSRC / "pose_decode.h").read_text())
    assert documented is not None
    assert int(lines["static_bytes"]) == int(documented.group(1))


@pytest.mark.parametrize(
    "maps, upsample",
    [(target_maps(PEOPLE["three"], noise=0.03, seed=1), 8), (random_maps(7, 5, seed=2), 3)],
    ids=["three people x8", "random 7x5 x3"],
)
def test_upsampled_maps_are_cv2s(built: Built, maps, upsample):
    """PAFs bit-identical everywhere; heatmaps bit-identical wherever the cubic taps stay off the
    two extension cells, and within a few ulps (logf/expf against NumPy's log/exp) elsewhere."""
    heatmaps, pafs = maps
    h, w = heatmaps.shape[1:]
    np.concatenate([heatmaps, pafs]).tofile(built.workdir / "up_in.bin")
    dumped = run_internals(built, "up", h, w, upsample, built.workdir / "up_in.bin", text=False)
    c_maps = np.frombuffer(dumped, dtype=np.float32).reshape(56, h * upsample, w * upsample)
    config = DecodeConfig(upsample=upsample)
    py_maps = upsample_maps(np.concatenate([heatmaps[:18], pafs]), config, heatmap_channels=18)

    np.testing.assert_array_equal(c_maps[18:], py_maps[18:])

    def off_border(n: int) -> np.ndarray:
        """Destination pixels whose four source taps (in the extended map) are all original cells."""
        j = np.arange(n * upsample) + 2 * upsample
        source = ((j + 0.5) * (1.0 / upsample) - 0.5).astype(np.float32)  # as cv2 computes it
        first_tap = np.floor(source).astype(int) - 1
        return (first_tap >= 2) & (first_tap + 3 <= n + 1)

    interior = np.ix_(off_border(h), off_border(w))
    assert c_maps[0][interior].size > 0
    np.testing.assert_array_equal(c_maps[:18][(slice(None), *interior)], py_maps[:18][(slice(None), *interior)])
    np.testing.assert_allclose(c_maps[:18], py_maps[:18], rtol=0, atol=1e-6)


def plateau_maps(size: int, seed: int) -> np.ndarray:
    """Upsampled (18, size, size) heatmaps of isolated pixels and 2-pixel and 2x2 plateaus with few
    distinct values (at the threshold too): ties between neighbours and between scores everywhere."""
    rng = np.random.default_rng(seed)
    maps = np.zeros((18, size, size), np.float32)
    levels = np.array([0.1, 0.3, 0.5, 0.5, 1.0], np.float32)
    shapes = [(1, 1), (1, 2), (2, 1), (2, 2)]
    for k in range(18):
        for _ in range(12):
            rows, cols = shapes[rng.integers(len(shapes))]
            r, c = rng.integers(0, size - 1, size=2)
            maps[k, r : r + rows, c : c + cols] = levels[rng.integers(len(levels))]
    maps[0, 40, 40], maps[0, 40, 43] = 0.9, 0.5  # a pair 3 pixels apart
    return maps


@pytest.mark.parametrize("upsample, stride, radius", [(8, 8, 3.0), (4, 8, 6.0)])
def test_peaks_equal_extract_peaks(built: Built, upsample, stride, radius):
    """Local maxima (with their tie moves), their order (ties in raster order) and the suppression
    radius (a pair exactly at it is kept) on hand-made upsampled maps: the same table, bit for bit."""
    maps = plateau_maps(128, seed=upsample)
    config = DecodeConfig(upsample=upsample, stride=stride, nms_radius=radius)
    expected = np.concatenate(
        [np.column_stack([np.full(len(p), k), p[:, :3]]) for k, p in enumerate(extract_peaks(maps, config))]
    ).astype(np.float32)
    pixel = stride / upsample
    assert 20 < len(expected) < 32 * 18
    assert np.any(expected[:, 1] % pixel == 0) and np.any(expected[:, 2] % pixel == 0)  # tie moves
    at_radius = {(40.5 * pixel, 40.5 * pixel), (43.5 * pixel, 40.5 * pixel)}  # 3 pixels apart
    assert 3 * pixel == radius and {(x, y) for k, x, y, _ in expected if k == 0} >= at_radius
    maps.tofile(built.workdir / "upsampled.bin")
    output = run_internals(built, "peaks", 128, 128, upsample, stride, radius, 0.1, built.workdir / "upsampled.bin")
    found = [line.split() for line in output.splitlines()]
    assert all(line[0] == "peak" for line in found)
    np.testing.assert_array_equal(np.array([[np.float32(v) for v in line[1:]] for line in found]), expected)


def test_peak_limits_keep_the_highest_peaks(built: Built):
    """Over PD_MAX_CANDIDATES (128) local maxima and PD_MAX_PEAKS_PER_KEYPOINT (32) peaks of a
    keypoint, the default build keeps Python's first 32 peaks: the highest-scoring ones."""
    rng = np.random.default_rng(21)
    maps = np.zeros((18, 128, 128), np.float32)
    grid = np.arange(4, 128, 8)
    maps[3][np.ix_(grid, grid)] = rng.uniform(0.1, 1.0, (16, 16))  # 256 isolated maxima, 8 px apart
    maps[5][np.ix_(grid[::2], grid)] = rng.uniform(0.1, 1.0, (8, 16))  # 128 maxima
    maps[7, 20, 20:60:3] = np.linspace(0.9, 0.2, 14)  # 14 maxima in a row, 3 px apart: 7 kept
    maps[7, 60, 20:60:3] = np.linspace(0.95, 0.15, 14)
    config = DecodeConfig(nms_radius=3.5)
    expected = [p[:32, :3] for p in extract_peaks(maps, config)]
    assert [len(p) for p in extract_peaks(maps, config)][3:8] == [256, 0, 128, 0, 14]
    maps.tofile(built.workdir / "crowded.bin")
    found = [
        line.split()
        for line in run_internals(built, "peaks", 128, 128, 8, 8, 3.5, 0.1, built.workdir / "crowded.bin").splitlines()
    ]
    table = np.array([[np.float32(v) for v in line[1:]] for line in found], dtype=np.float32)
    for k in range(18):
        np.testing.assert_array_equal(table[table[:, 0] == k, 1:], expected[k])


def peak_tables(rows: np.ndarray) -> list[np.ndarray]:
    """(n, 4) rows (keypoint, x, y, score), grouped by keypoint -> extract_peaks' tables with ids."""
    tables, first = [], 0
    for k in range(18):
        points = rows[rows[:, 0] == k, 1:]
        tables.append(np.column_stack([points, np.arange(first, first + len(points))]).astype(np.float32))
        first += len(points)
    return tables


def limb_cases() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(heatmaps, pafs, peak rows) of limb-scoring cases."""
    cases = {}
    heatmaps, pafs = target_maps(PEOPLE["three"], noise=0.05, seed=9)
    config = DecodeConfig.for_input(INPUT_SIZE)
    upsampled = upsample_maps(heatmaps[:18], config, heatmap_channels=18)
    rows = [np.column_stack([np.full(len(p), k), p[:, :3]]) for k, p in enumerate(extract_peaks(upsampled, config))]
    cases["peaks of noisy targets"] = (heatmaps, pafs, np.concatenate(rows))
    # Peaks on integer coordinates: samples fall on pixel edges, where np.rint rounds half to even;
    # fields pointing right with noise: many pairs, accepted and not.
    rng = np.random.default_rng(11)
    fields = np.zeros((38, 16, 16), np.float32)
    fields[0::2] = 1.0
    fields += rng.normal(0.0, 0.4, fields.shape).astype(np.float32)
    rows = [(k, *rng.integers(0, 128, size=2), rng.uniform(0.1, 1.0)) for k in range(18) for _ in range(5)]
    cases["integer peaks, noisy fields"] = (heatmaps, fields, np.array(rows, np.float32))
    # A uniform field pointing right and peaks in rows: several pairs of affinity exactly 1, which
    # the matching takes in row-major order. The odd limbs' field is 0.05 = paf_min_score, which
    # most of its upsampled pixels hold exactly: "exceeds" must be strict.
    uniform = np.zeros((38, 16, 16), np.float32)
    uniform[0::4] = 1.0
    uniform[2::4] = 0.05
    rows = [(k, x, y, 0.5) for k in range(18) for x, y in [(10.5 + 30 * (k % 3), y) for y in (20.5, 60.5, 100.5)]]
    cases["uniform field, tied affinities"] = (heatmaps, uniform, np.array(rows, np.float32))
    return cases


@pytest.mark.parametrize("name", list(limb_cases()))
def test_connections_equal_score_limbs(built: Built, name: str):
    """Given the same peaks, every limb's connections (ids, order, float32 affinity) are identical."""
    heatmaps, pafs, rows = limb_cases()[name]
    config = DecodeConfig.for_input(INPUT_SIZE)
    tables = peak_tables(rows)
    upsampled = upsample_maps(np.concatenate([heatmaps[:18], pafs]), config, heatmap_channels=18)
    connections = score_limbs(tables, upsampled[18:], config)
    expected = np.concatenate(
        [np.column_stack([np.full(len(c), limb), c]) for limb, c in enumerate(connections)]
    ).astype(np.float32)
    assert len(expected) >= 10
    np.concatenate([heatmaps, pafs]).astype(np.float32).tofile(built.workdir / "limb_maps.bin")
    ordered = np.concatenate([np.column_stack([np.full(len(t), k), t[:, :3]]) for k, t in enumerate(tables)])
    ordered.astype(np.float32).tofile(built.workdir / "limb_peaks.bin")
    found = [
        line.split()
        for line in run_internals(
            built,
            "limbs",
            16,
            16,
            config.upsample,
            config.stride,
            built.workdir / "limb_maps.bin",
            built.workdir / "limb_peaks.bin",
        ).splitlines()
    ]
    assert all(line[0] == "conn" for line in found)
    np.testing.assert_array_equal(np.array([[np.float32(v) for v in line[1:]] for line in found]), expected)


@pytest.mark.parametrize("name", list(PEOPLE))
def test_people_from_targets(built: Built, name: str):
    people = PEOPLE[name]
    heatmaps, pafs = target_maps(people)
    expected = decode(heatmaps, pafs, DecodeConfig.for_input(INPUT_SIZE))
    assert len(expected) == len(people)  # the reference finds them all: the comparison is not vacuous
    assert_same_poses(run_c(built, heatmaps, pafs), expected)


def test_hot_cells_make_tied_peaks(built: Built):
    """One hot cell per keypoint: cubic x8 upsampling makes 2x2 plateaus of equal pixels, and the
    tie rule puts each peak on its cell centre."""
    people = PEOPLE["two"]
    _, pafs = target_maps(people)
    heatmaps = np.zeros((19, 16, 16), np.float32)
    for keypoints in people:
        for k in np.flatnonzero(keypoints[:, 2] > 0):
            col, row = (keypoints[k, :2] // 8).astype(int)
            heatmaps[k, row, col] = 1.0
    expected = decode(heatmaps, pafs, DecodeConfig.for_input(INPUT_SIZE))
    assert len(expected) == 2
    found = np.concatenate([pose.keypoints[pose.keypoints[:, 2] > 0, :2] for pose in expected])
    np.testing.assert_array_equal(found % 8, 4.0)  # cell centres: both ties taken
    assert_same_poses(run_c(built, heatmaps, pafs), expected)


def test_weak_people_are_dropped(built: Built):
    """A faint second person (heatmaps x 0.12, PAFs x 0.06) scores under 0.2 per keypoint."""
    strong, faint = person((40, 30), 0.7, seed=12), person((96, 30), 0.7, seed=13)
    heatmaps, pafs = target_maps([strong])
    faint_heatmaps, faint_pafs = target_maps([faint])
    heatmaps = (heatmaps + np.float32(0.12) * faint_heatmaps).astype(np.float32)
    pafs = (pafs + np.float32(0.06) * faint_pafs).astype(np.float32)
    assert len(decode(heatmaps, pafs, DecodeConfig.for_input(INPUT_SIZE, min_mean_score=0.0))) == 2
    expected = decode(heatmaps, pafs, DecodeConfig.for_input(INPUT_SIZE))
    assert len(expected) == 1
    assert_same_poses(run_c(built, heatmaps, pafs), expected)


def test_equal_scores_keep_pythons_order(built: Built):
    """A person and its copy 8 cells to the right (the maps' cells copied) score exactly the same:
    the output order is then the order in which people were started, as Python's stable sort."""
    heatmaps, pafs = target_maps([person((32, 40), 0.5, seed=14)])
    assert not heatmaps[:18, :, 8:].any() and not pafs[:, :, 8:].any()
    heatmaps[:18] += np.roll(heatmaps[:18], 8, axis=2)
    pafs += np.roll(pafs, 8, axis=2)
    expected = decode(heatmaps, pafs, DecodeConfig.for_input(INPUT_SIZE))
    assert len(expected) == 2 and expected[0].score == expected[1].score
    assert_same_poses(run_c(built, heatmaps, pafs), expected)


def test_empty_maps_give_no_poses(built: Built):
    heatmaps, pafs = np.zeros((19, 16, 16), np.float32), np.zeros((38, 16, 16), np.float32)
    assert decode(heatmaps, pafs) == []
    assert run_c(built, heatmaps, pafs) == []


@pytest.mark.parametrize("name", ["two", "touching the border"])
@pytest.mark.parametrize("paf_scale", [ACC_SCALE, ACC_SCALE // 2])
def test_int32_accumulators(built: Built, name: str, paf_scale: int):
    """pd_decode_int32 on round(value * scale) equals Python decoding acc / scale."""
    heatmaps, pafs = target_maps(PEOPLE[name], noise=0.02, seed=3)
    heatmap_acc = np.rint(heatmaps * ACC_SCALE).astype(np.int32)
    paf_acc = np.rint(pafs * paf_scale).astype(np.int32)
    expected = decode(heatmap_acc / ACC_SCALE, paf_acc / paf_scale, DecodeConfig.for_input(INPUT_SIZE))
    assert len(expected) == len(PEOPLE[name])
    assert_same_poses(run_c(built, heatmap_acc, paf_acc, scales=(ACC_SCALE, paf_scale)), expected)


@pytest.mark.parametrize("seed", range(4))
def test_noisy_targets(built: Built, seed: int):
    """Model-like maps: three people plus noise, with spurious peaks and weak limbs."""
    heatmaps, pafs = target_maps(PEOPLE["three"], noise=0.05, seed=seed)
    expected = decode(heatmaps, pafs, DecodeConfig.for_input(INPUT_SIZE))
    assert len(expected) >= 3
    assert_same_poses(run_c(built, heatmaps, pafs), expected)


@pytest.mark.parametrize(
    "h, w, upsample, input_size, seed",
    [(16, 16, 4, 128, 0), (12, 9, 3, 96, 1), (5, 14, 1, 368, 2), (2, 3, 8, 128, 3), (1, 1, 5, 128, 4)],
)
def test_random_maps_other_sizes_and_upsampling(built: Built, h, w, upsample, input_size, seed):
    """Any map size up to the limits, any upsampling (odd factors round their source positions) and
    suppression radius. Random maps hold more than 32 peaks per keypoint: raised limits."""
    heatmaps, pafs = random_maps(h, w, seed)
    expected = decode(heatmaps, pafs, DecodeConfig.for_input(input_size, upsample=upsample))
    if h * w > 6:
        assert len(expected) >= 3
    found = run_c(built, heatmaps, pafs, upsample=upsample, input_size=input_size, build="tool_raised")
    assert_same_poses(found, expected, image=(8 * w, 8 * h))


def test_crowded_maps_need_the_raised_limits(built: Built):
    """Six people under heavy noise: over 32 peaks of a keypoint and over 32 people. With raised
    limits (-D) the C decoder still equals Python; with the defaults it keeps at most 32 people."""
    people = [
        person((x, y), 0.5, seed=10 + i)
        for i, (x, y) in enumerate([(20, 20), (64, 20), (108, 20), (20, 80), (64, 80), (108, 80)])
    ]
    heatmaps, pafs = target_maps(people, noise=0.2, seed=5)
    expected = decode(heatmaps, pafs, DecodeConfig.for_input(INPUT_SIZE))
    assert len(expected) > 32
    assert_same_poses(run_c(built, heatmaps, pafs, build="tool_raised"), expected)
    limited = run_c(built, heatmaps, pafs, build="tool_checked")
    assert isinstance(limited, list) and 0 < len(limited) <= 32


def test_max_poses_keeps_the_best(built: Built):
    heatmaps, pafs = target_maps(PEOPLE["three"])
    expected = decode(heatmaps, pafs, DecodeConfig.for_input(INPUT_SIZE))
    assert len(expected) == 3
    assert_same_poses(run_c(built, heatmaps, pafs, max_poses=2), expected[:2])
    assert run_c(built, heatmaps, pafs, max_poses=0) == []


@pytest.mark.parametrize(
    "shape, options, code",
    [
        ((0, 16), {}, PD_ERR_SIZE),
        ((16, 0), {}, PD_ERR_SIZE),
        ((17, 16), {}, PD_ERR_SIZE),
        ((16, 17), {}, PD_ERR_SIZE),
        ((16, 16), {"upsample": 9}, PD_ERR_CONFIG),
        ((16, 16), {"upsample": -1}, PD_ERR_CONFIG),
        ((16, 16), {"max_poses": -1}, PD_ERR_ARGUMENT),
        ((16, 16), {"scales": (0.0, ACC_SCALE)}, PD_ERR_ARGUMENT),
        ((16, 16), {"scales": (ACC_SCALE, float("inf"))}, PD_ERR_ARGUMENT),
    ],
)
def test_bad_sizes_and_arguments_give_error_codes(built: Built, shape, options, code):
    h, w = shape
    rows, cols = max(h, 1), max(w, 1)
    heatmaps, pafs = np.zeros((19, rows, cols), np.float32), np.zeros((38, rows, cols), np.float32)
    assert run_c(built, heatmaps, pafs, shape=shape, **options) == code
