"""The export's Cortex-M4 side: the grid decoder's time on this export's sample (measured under QEMU when the
ARM toolchain is present, else from the instruction model), and the izer-backed firmware project, whose
posenas sources are compiled for the Cortex-M4 here (the MSDK-dependent main.c only where the MSDK is)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from posenas.errors import ToolError
from posenas.posenet.export import m4
from posenas.posenet.export.firmware import write_firmware, write_posenas_sources
from posenas.posenet.export.performance import Performance, decoder_instructions

MSDK_ENV = "MAXIM_PATH"  # the MSDK's root, as its Makefiles name it


def decoder_performance(
    folder: Path,
    name: str,
    input_size: int,
    heatmaps: np.ndarray,
    pafs: np.ndarray,
    scales: tuple[float, float],
    people: int,
    izer_cycles: int | None,
    posenas_cycles: int,
    measure: bool = True,
) -> Performance:
    """CNN cycles (izer's when it ran, else posenas' estimate) and the decoder's instructions on the sample."""
    cnn = (izer_cycles, "ai8x-synthesis") if izer_cycles else (posenas_cycles, "posenas estimate")
    instructions, source = decoder_instructions(people), "model"
    if measure and m4.missing_tools() is None:
        try:
            sources = folder / "src"
            write_posenas_sources(sources, name, input_size, tuple(heatmaps.shape[1:]), *scales)
            run = m4.run(m4.build_app(folder / "qemu", sources, heatmaps, pafs))
            instructions, source = run.instructions, "qemu"
        except ToolError:
            pass  # the model stands; the firmware check reports tool failures
    return Performance(int(cnn[0]), cnn[1], people, instructions, source)


def firmware_project(
    folder: Path, izer_project: Path, name: str, input_size: int, map_size: tuple[int, int], scales: tuple[float, float]
) -> tuple[Path, str]:
    """Write the firmware project; compile what can be compiled here. Returns (folder, what was checked)."""
    write_firmware(folder, izer_project, name, input_size, tuple(map_size), *scales)
    if shutil.which("arm-none-eabi-gcc") is None:
        return folder, "not compiled: arm-none-eabi-gcc not on PATH"
    for source in ("posenas_app.c", "pose_grid.c"):
        done = subprocess.run(
            ["arm-none-eabi-gcc", *m4.M4_CFLAGS, "-c", source, "-o", os.devnull],
            cwd=folder,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            return folder, f"posenas' {source} failed to compile for the Cortex-M4: {done.stderr.strip()[-300:]}"
    msdk = os.environ.get(MSDK_ENV)
    if not msdk or not Path(msdk).is_dir():
        return folder, (
            "posenas_app.c and pose_grid.c compile for the Cortex-M4; main.c and izer's files need the "
            f"MSDK (${MSDK_ENV} not set): not built"
        )
    done = subprocess.run(["make", "-s"], cwd=folder, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        return folder, f"make with the MSDK failed: {(done.stderr or done.stdout).strip()[-300:]}"
    return folder, "built with the MSDK (make)"
