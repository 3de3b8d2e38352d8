"""benchmarks/bench_gpu.py, the prepared GPU run (issue 25), checked on the CPU with its tiny setting: the
script must work the first time a GPU is lent, with no time to debug it there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=600)


def test_the_gpu_run_measures_trains_and_checks_bit_exactness_on_a_cpu(tmp_path: Path) -> None:
    done = _run(
        "--device", "cpu", "--tiny", "--out", str(tmp_path / "scratch"), "--results", str(tmp_path / "gpu.json")
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "gpu.json").read_text())
    assert result["tiny"] is True and result["device"].startswith("CPU")
    rates = {(r["net"], r["amp"]): r for r in result["throughput"]}
    assert set(rates) == {(n, a) for n in ("tiny-hw", "student-hw-mixed") for a in (False, True)}
    assert all(r["float_images_per_s"] > 0 and r["qat_images_per_s"] > 0 for r in rates.values())
    assert all(r["peak_memory_bytes"] is None for r in rates.values())  # no GPU memory on a CPU run
    trained = {r["net"]: r for r in result["trained"]}
    assert set(trained) == {"tiny-hw", "student-hw-mixed"}
    for row in trained.values():
        assert row["bit_exact"] is True and row["outputs_nonzero"] is True and row["images"] == 8
        assert row["epochs"] == 2 and row["whole_schedule"] is True  # 32 images x 2 epochs fit in 8 minutes
        assert 0 <= row["qat_ap"] <= 1
    assert "simulate bit-exact: True" in done.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_a_gpu_the_gpu_run_says_so(tmp_path: Path) -> None:
    done = _run("--out", str(tmp_path / "scratch"))
    assert done.returncode == 2 and "no CUDA GPU here" in done.stderr and "--device cpu --tiny" in done.stderr
    assert not (tmp_path / "scratch").exists()
