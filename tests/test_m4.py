"""The pose decoders cross-compiled for the MAX78000's Cortex-M4 (arm-none-eabi-gcc, hard float) and run under
qemu-system-arm on a Cortex-M4 board (mps2-an386) with -icount: sizes from arm-none-eabi-size, people equal
to the host build's, instruction counts. Skips where the ARM toolchain or QEMU is missing."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from test_c_decode import PEOPLE, target_maps

from posenas.posenet.export import m4
from posenas.posenet.pose.decode import DecodeConfig, decode

CSRC = Path(__file__).resolve().parents[1] / "posenet" / "export" / "csrc"
needs_arm = pytest.mark.skipif(m4.missing_tools() is not None, reason=m4.missing_tools() or "")
HOST_FLAGS = ["-std=c99", "-O2", "-ffp-contract=off"]


def host_people(tmp_path: Path, decoder: str, heatmaps: np.ndarray, pafs: np.ndarray) -> list:
    """The same decoder built for this machine (gcc) and run on the same maps."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not on PATH")
    tool = tmp_path / "pose_tool"
    sources = [str(CSRC / name) for name in ("pose_decode.c", "pose_grid.c", "pose_tool.c")]
    subprocess.run([gcc, *HOST_FLAGS, *sources, "-lm", "-o", str(tool)], check=True)
    maps = tmp_path / "maps.bin"
    np.concatenate([heatmaps, pafs]).astype(np.float32).tofile(maps)
    done = subprocess.run(
        [str(tool), "-d", decoder, "-n", str(m4.MAX_POSES), "16", "16", str(maps)],
        capture_output=True,
        text=True,
        check=True,
    )
    return m4.parse_poses(done.stdout)


@needs_arm
def test_grid_decoder_buffers_fit_24_kb_on_the_m4(tmp_path):
    """arm-none-eabi-size of pose_grid.o: data + bss (all its RAM) within 24 KB, and exactly the header's sum."""
    sizes = m4.decoder_sizes(tmp_path, "grid")
    documented = int(re.search(r"(\d+) bytes \(", (CSRC / "pose_grid.h").read_text())[1])
    assert sizes.ram == documented <= 24 * 1024
    assert 1000 < sizes.text < 16 * 1024
    upsampled = m4.decoder_sizes(tmp_path, "upsampled")  # the reference: 8x more RAM than the goal allows
    assert upsampled.ram > 100 * 1024


@needs_arm
@pytest.mark.parametrize("decoder", ["grid", "upsampled"])
def test_qemu_run_gives_the_host_builds_people(tmp_path, decoder):
    """Three noisy people: the Cortex-M4 build under QEMU finds the host build's people (the grid decoder
    bit for bit: it needs no libm; the upsampling one within 0.5 px: newlib's logf/expf are not glibc's), and
    the Python decoder's; and it reports a plausible instruction count."""
    heatmaps, pafs = target_maps(PEOPLE["three"], noise=0.03, seed=4)
    run = m4.run(m4.build(tmp_path / "m4", decoder, heatmaps, pafs))
    host = host_people(tmp_path, decoder, heatmaps, pafs)
    python = decode(heatmaps, pafs, DecodeConfig.for_input(128, decoder=decoder))
    assert len(run.poses) == len(host) == len(python) == 3
    tolerance = 0.0 if decoder == "grid" else 0.5
    for ours, theirs, py in zip(run.poses, host, python):
        assert ours.count == theirs.count == py.count
        assert np.abs(ours.keypoints - theirs.keypoints).max() <= tolerance
        assert np.abs(ours.keypoints[:, :2] - py.keypoints[:, :2]).max() <= 0.5
    assert run.instructions_per_tick == pytest.approx(40.0, rel=0.01)  # 25 MHz SysTick, 1 ns per instruction
    limits = {"grid": (20_000, 1_000_000), "upsampled": (5_000_000, 50_000_000)}[decoder]
    assert limits[0] < run.instructions < limits[1]


def test_missing_tools_are_named(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert "arm-none-eabi-gcc" in (m4.missing_tools() or "")
