"""Build and run the exported C on this machine, and compare its poses with the Python decoder's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from posenas.errors import CheckFailed
from posenas.posenet.pose.decode import DecodeConfig, Pose, candidate_counts, extract_peaks, upsample_maps
from posenas.posenet.pose.keypoints import NUM_BODY_KEYPOINTS


def find_compiler() -> str | None:
    """$CC when set, else the first of cc, gcc, clang on PATH; None when there is none."""
    if os.environ.get("CC"):
        return os.environ["CC"]
    for name in ("cc", "gcc", "clang"):
        if shutil.which(name):
            return name
    return None


@dataclass(frozen=True)
class HostRun:
    """What ``posenas_host`` printed: outputs compared, mismatches, decoded poses, timings."""

    returncode: int
    outputs: int
    mismatches: int
    poses: list[Pose]
    cnn_ms: float | None = None
    decode_ms: float | None = None

    @property
    def bit_exact(self) -> bool:
        return self.returncode == 0 and self.mismatches == 0 and self.outputs > 0


def build_host(folder: Path, compiler: str, timeout: float = 300.0) -> Path:
    """``make`` in ``folder`` with ``compiler``; returns the program's path."""
    if not shutil.which("make"):
        raise CheckFailed("make is not on PATH")
    done = subprocess.run(
        ["make", "-s", f"CC={compiler}", "posenas_host"], cwd=folder, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise CheckFailed(f"building the C export in {folder} failed: " + " | ".join(tail))
    return folder / "posenas_host"


def run_host(program: Path, repeat: int = 0, timeout: float = 600.0) -> HostRun:
    """Run the host check program; ``repeat`` > 0 also times that many inferences."""
    program = program.resolve()  # it runs in its own folder: a relative path would point elsewhere
    argv = [str(program)] + (["--repeat", str(repeat)] if repeat else [])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=program.parent)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise CheckFailed(
            f"{program} printed no report (exit {done.returncode}): {done.stderr.strip()[:300]}"
        ) from None
    poses = [_pose(p) for p in report.get("poses", [])]
    return HostRun(
        returncode=done.returncode,
        outputs=int(report["outputs"]),
        mismatches=int(report["mismatches"]),
        poses=poses,
        cnn_ms=report.get("cnn_ms"),
        decode_ms=report.get("decode_ms"),
    )


def _pose(entry: dict) -> Pose:
    keypoints = np.asarray(entry["keypoints"], dtype=np.float32).reshape(-1, 3)
    keypoints.setflags(write=False)
    return Pose(keypoints=keypoints, score=float(entry["score"]), count=int(entry["count"]))


def decoder_limits_exceeded(
    heatmaps: np.ndarray, pafs: np.ndarray, config: DecodeConfig, limits: dict[str, int]
) -> str | None:
    """Why a decoder with these static ``limits`` cannot decode the maps as posenet.decode does, or None.

    Maps of an untrained network can hold hundreds of peaks per keypoint; the C decoder then keeps the
    strongest ones (documented in pose_decode.h) and finds fewer people."""
    upsampled = upsample_maps(np.concatenate([heatmaps[:NUM_BODY_KEYPOINTS], pafs]), config, NUM_BODY_KEYPOINTS)
    candidates = int(candidate_counts(upsampled[:NUM_BODY_KEYPOINTS], config).max())
    if candidates > limits["PD_MAX_CANDIDATES"]:
        return f"{candidates} candidate peaks for one keypoint, past the C decoder's {limits['PD_MAX_CANDIDATES']}"
    peaks = max(len(p) for p in extract_peaks(upsampled[:NUM_BODY_KEYPOINTS], config))
    if peaks > limits["PD_MAX_PEAKS_PER_KEYPOINT"]:
        return f"{peaks} peaks for one keypoint, past the C decoder's {limits['PD_MAX_PEAKS_PER_KEYPOINT']}"
    return None


def pose_difference(c_poses: Sequence[Pose], python_poses: Sequence[Pose]) -> float:
    """The largest keypoint distance (input pixels) between the two decoders' people, matched in order;
    infinite when they find different numbers of people or fill different keypoint slots."""
    if len(c_poses) != len(python_poses):
        return float("inf")
    worst = 0.0
    for a, b in zip(c_poses, python_poses):
        filled_a, filled_b = a.keypoints[:, 2] > 0, b.keypoints[:, 2] > 0
        if not np.array_equal(filled_a, filled_b) or a.count != b.count:
            return float("inf")
        if filled_a.any():
            worst = max(worst, float(np.abs(a.keypoints[filled_a, :2] - b.keypoints[filled_b, :2]).max()))
    return worst
