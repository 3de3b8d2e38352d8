"""The pose decoders on a Cortex-M4: cross-compiled with arm-none-eabi-gcc, sized with arm-none-eabi-size, run
under qemu-system-arm (``-M mps2-an386``, a Cortex-M4 board) with ``-icount``, and their instructions counted.

With ``-icount shift=0`` QEMU advances its virtual clock by the same amount for every instruction, and the
board's SysTick counts that clock; ``csrc/m4/bench_main.c`` reads SysTick around one decode and around a loop
of known length (2 instructions per turn), so instructions = decode ticks x loop instructions / loop ticks,
to the resolution of one tick (40 instructions on this board). Instructions are not cycles: milliseconds on
the MAX78000's 100 MHz M4 need a cycles-per-instruction assumption (``M4_CPI``).

The programs start with ``csrc/m4/startup.c`` and ``mps2_an386.ld`` and print through newlib's semihosting
(``--specs=rdimon.specs``); the maps are compiled in as a float array.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from posenas.errors import ToolError
from posenas.posenet.pose.decode import Pose

M4_CFLAGS = (
    "-mcpu=cortex-m4",
    "-mthumb",
    "-mfpu=fpv4-sp-d16",
    "-mfloat-abi=hard",
    "-O2",
    "-std=c99",
    "-ffp-contract=off",
    "-Wall",
    "-Wextra",
    "-Werror",
)
QEMU_ARGS = (
    "-M",
    "mps2-an386",
    "-cpu",
    "cortex-m4",
    "-nographic",
    "-monitor",
    "none",
    "-serial",
    "none",
    "-semihosting-config",
    "enable=on,target=native",
    "-icount",
    "shift=0",
)
# The decoders: their sources and the bench program's define.
DECODER_SOURCES = {"grid": ("pose_grid.c", "-DM4_GRID"), "upsampled": ("pose_decode.c", "-DM4_UPSAMPLED")}
# Milliseconds = instructions x M4_CPI / M4_CLOCK_HZ. An assumption, not a measurement: the Cortex-M4 runs most
# integer and single-precision FPU instructions in 1 cycle, loads in 2 (1 when pipelined), taken branches in
# 2-4, VDIV and VSQRT in 14, and the MAX78000 runs code from flash through a 16 KB instruction cache.
M4_CPI = 1.5
M4_CLOCK_HZ = 100_000_000
MAX_POSES = 20
TOOLS = ("arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm")


@dataclass(frozen=True)
class SectionSizes:
    """Berkeley sizes (bytes) from arm-none-eabi-size: RAM = data + bss."""

    text: int
    data: int
    bss: int

    @property
    def ram(self) -> int:
        return self.data + self.bss


@dataclass(frozen=True)
class M4Run:
    """One decode under QEMU: the people it printed and its instruction count."""

    poses: list[Pose]
    ticks: int
    instructions_per_tick: float
    output: str

    @property
    def instructions(self) -> int:
        return round(self.ticks * self.instructions_per_tick)

    def milliseconds(self, cpi: float = M4_CPI, clock_hz: int = M4_CLOCK_HZ) -> float:
        return self.instructions * cpi / clock_hz * 1e3


def missing_tools() -> str | None:
    """Why the M4 build or run cannot happen here, or None."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not on PATH (Debian: gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm)"
    return None


def _csrc() -> Path:
    with resources.as_file(resources.files("posenas.posenet.export") / "csrc") as path:
        return Path(path)


def _run(command: list[str], cwd: Path | None = None, timeout: float = 300.0) -> str:
    done = subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=timeout)
    if done.returncode != 0:
        raise ToolError(f"{command[0]} failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()[-400:]}")
    return done.stdout


def decoder_sizes(folder: Path, decoder: str, defines: tuple[str, ...] = ()) -> SectionSizes:
    """text, data and bss of the decoder alone (its object file), compiled with M4_CFLAGS."""
    source, _ = DECODER_SOURCES[decoder]
    folder.mkdir(parents=True, exist_ok=True)
    obj = folder / f"{decoder}.o"
    _run(["arm-none-eabi-gcc", *M4_CFLAGS, *defines, "-c", str(_csrc() / source), "-o", str(obj)])
    return parse_size(_run(["arm-none-eabi-size", str(obj)]))


def parse_size(output: str) -> SectionSizes:
    """arm-none-eabi-size's Berkeley table (header, then text data bss dec hex filename)."""
    rows = [line.split() for line in output.strip().splitlines()]
    if len(rows) < 2 or rows[0][:3] != ["text", "data", "bss"]:
        raise ToolError(f"unexpected arm-none-eabi-size output: {output.strip()[:200]}")
    return SectionSizes(int(rows[1][0]), int(rows[1][1]), int(rows[1][2]))


def maps_source(heatmaps: np.ndarray, pafs: np.ndarray, input_size: int) -> tuple[str, str]:
    """m4_maps.h and m4_maps.c: the maps as one float array, (19 + 38, h, w), channel-major."""
    maps = np.concatenate([np.asarray(heatmaps, np.float32), np.asarray(pafs, np.float32)])
    if maps.shape[0] != 57:
        raise ValueError(f"expected 19 heatmaps and 38 PAFs, got {maps.shape[0]} channels")
    h, w = maps.shape[1:]
    header = (
        f"/* Generated by posenas.posenet.export.m4. */\n#define M4_H {h}\n#define M4_W {w}\n"
        f"#define M4_INPUT_SIZE {input_size}\n#define M4_MAX_POSES {MAX_POSES}\n"
        "extern const float m4_maps[];\n"
    )
    values = ",\n".join(",".join(f"{float(v)!r}f" for v in row) for row in maps.reshape(-1, w))
    return header, f'#include "m4_maps.h"\nconst float m4_maps[{maps.size}] = {{\n{values}}};\n'


def build(folder: Path, decoder: str, heatmaps: np.ndarray, pafs: np.ndarray, input_size: int = 128) -> Path:
    """The bench program for ``decoder`` on these maps, as an ELF for mps2-an386."""
    source, define = DECODER_SOURCES[decoder]
    folder.mkdir(parents=True, exist_ok=True)
    header, maps_c = maps_source(heatmaps, pafs, input_size)
    (folder / "m4_maps.h").write_text(header)
    (folder / "m4_maps.c").write_text(maps_c)
    csrc = _csrc()
    elf = folder / f"{decoder}.elf"
    _run(
        [
            "arm-none-eabi-gcc",
            *M4_CFLAGS,
            define,
            f"-I{csrc}",
            f"-I{folder}",
            str(csrc / "m4" / "startup.c"),
            str(csrc / "m4" / "bench_main.c"),
            str(csrc / source),
            str(folder / "m4_maps.c"),
            "--specs=rdimon.specs",
            "-nostartfiles",
            "-T",
            str(csrc / "m4" / "mps2_an386.ld"),
            "-lm",
            "-o",
            str(elf),
        ]
    )
    return elf


def build_app(
    folder: Path, sources: Path, heatmap_acc: np.ndarray, paf_acc: np.ndarray, defines: tuple[str, ...] = ()
) -> Path:
    """The firmware's MSDK-free part (``sources``: what ``firmware.write_posenas_sources`` wrote) as an ELF for
    mps2-an386, fed with these 32-bit head outputs laid out as cnn_unload() writes them (heatmaps, then PAFs).
    ``defines``: extra -D flags (``-DPG_PROFILE``: the program also prints each decoder phase's ticks)."""
    folder.mkdir(parents=True, exist_ok=True)
    words = np.concatenate([np.asarray(heatmap_acc).reshape(-1), np.asarray(paf_acc).reshape(-1)]).astype(np.int64)
    if words.min() < -(2**31) or words.max() >= 2**31:
        raise ValueError("the head outputs do not fit 32 bits")
    lines = ",\n".join(",".join(str(int(v)) for v in words[i : i + 16]) for i in range(0, words.size, 16))
    source = f"#include <stdint.h>\nconst int32_t m4_output[{words.size}] = {{\n{lines}}};\n"
    (folder / "m4_output.c").write_text(source)
    csrc = _csrc()
    elf = folder / "app.elf"
    _run(
        [
            "arm-none-eabi-gcc",
            *M4_CFLAGS,
            *defines,
            f"-I{sources}",
            str(csrc / "m4" / "startup.c"),
            str(csrc / "m4" / "app_main.c"),
            str(sources / "posenas_app.c"),
            str(sources / "pose_grid.c"),
            str(folder / "m4_output.c"),
            "--specs=rdimon.specs",
            "-nostartfiles",
            "-T",
            str(csrc / "m4" / "mps2_an386.ld"),
            "-lm",
            "-o",
            str(elf),
        ]
    )
    return elf


_CALIBRATION = re.compile(r"^calibration (\d+) instructions (\d+) ticks$", re.M)
_DECODE = re.compile(r"^decode (\d+) ticks$", re.M)
_PHASE = re.compile(r"^phase (\w+) (\d+) ticks$", re.M)


def run(elf: Path, timeout: float = 300.0) -> M4Run:
    """Run the bench program under qemu-system-arm -icount; its people and instruction count."""
    output = _run(["qemu-system-arm", *QEMU_ARGS, "-kernel", str(elf)], timeout=timeout)
    calibration, decode = _CALIBRATION.search(output), _DECODE.search(output)
    if calibration is None or decode is None:
        raise ToolError(f"{elf.name} under QEMU printed no timing: {output.strip()[:300]}")
    per_tick = int(calibration[1]) / int(calibration[2])
    return M4Run(parse_poses(output), int(decode[1]), per_tick, output)


def phase_instructions(run: M4Run) -> dict[str, int]:
    """Instructions per decoder phase ("peaks", "limbs") of a run built with -DPG_PROFILE (empty otherwise)."""
    return {name: round(int(ticks) * run.instructions_per_tick) for name, ticks in _PHASE.findall(run.output)}


def parse_poses(output: str) -> list[Pose]:
    """People in the decoders' text format (``poses N``, ``pose I score S count C``, 18 ``kp K X Y SCORE``)."""
    lines = [line.split() for line in output.splitlines()]
    start = next((i for i, line in enumerate(lines) if line[:1] == ["poses"]), None)
    if start is None:
        error = next((line for line in lines if line[:1] == ["error"]), None)
        raise ToolError(f"the decoder printed no people{f' (error {error[1]})' if error else ''}")
    count, poses = int(lines[start][1]), []
    for i in range(count):
        head = lines[start + 1 + 19 * i]
        rows = lines[start + 2 + 19 * i : start + 20 + 19 * i]
        keypoints = np.array([[float(v) for v in row[2:5]] for row in rows], dtype=np.float32)
        keypoints.setflags(write=False)
        poses.append(Pose(keypoints=keypoints, score=float(head[3]), count=int(head[5])))
    return poses
