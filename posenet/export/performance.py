"""Frames per second and energy of an exported network on the MAX78000: CNN latency from ai8x-synthesis' cycle
estimate (or posenas' own), decoder time from the grid decoder's instruction counts on a Cortex-M4, and an
energy estimate labelled with its source and assumptions.

Decoder instructions: the firmware's path (pg_decode_int32 on the heads' accumulators) measured under
qemu-system-arm -icount (benchmarks/bench_m4.py, "int32" rows) for maps with 0, 1, 4 and 10 people; between and
beyond those, linear in the number of people (the cost grows faster than that with many people: pairs of
candidates per limb grow with its square, so 10+ people is an underestimate). Milliseconds = instructions x
M4_CPI / 100 MHz.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from posenas.posenet.export.m4 import M4_CLOCK_HZ, M4_CPI

CNN_CLOCK_HZ = 50_000_000  # MAX78000: cnn_enable() with PCLK/1 (docs/max78000.md section 6.3)
# people in the maps -> grid decoder instructions (int32 accumulators), benchmarks/bench_m4.py
DECODER_INSTRUCTIONS = ((0, 20_240), (1, 54_560), (4, 183_680), (10, 809_600))
# The one published MAX78000 energy figure the project's notes hold (not verified here): 251 uJ per inference of
# a keyword-spotting network (arXiv 2111.04988), whose izer estimate is 71,782 cycles (KWS20 v3, 1.44 ms measured).
REFERENCE_ENERGY_UJ, REFERENCE_CYCLES = 251.0, 71_782
ENERGY_SOURCE = (
    "estimate: 251 uJ per inference for keyword spotting on the MAX78000 (arXiv 2111.04988, not "
    "verified here) scaled by CNN cycles against that network's 71,782 (KWS20 v3); assumes energy "
    "proportional to CNN time at the same power; the Cortex-M4's decoding energy is not included "
    "(no source for its active power in the project's notes); measure on a board with the EV kit's "
    "power monitor (ai8xize.py --energy)"
)


def decoder_instructions(people: int) -> int:
    """Grid decoder instructions on the M4 for maps holding ``people`` people (piecewise linear, see above)."""
    counts, instructions = zip(*DECODER_INSTRUCTIONS)
    if people <= counts[-1]:
        return int(round(np.interp(people, counts, instructions)))
    slope = (instructions[-1] - instructions[-2]) / (counts[-1] - counts[-2])
    return int(round(instructions[-1] + slope * (people - counts[-1])))


@dataclass(frozen=True)
class Performance:
    cnn_cycles: int
    cnn_cycles_source: str  # "ai8x-synthesis" or "posenas estimate"
    people: int  # people decoded from the sample's maps
    decoder_instructions: int
    decoder_instructions_source: str  # "qemu" (this export's sample, measured) or "model" (DECODER_INSTRUCTIONS)

    @property
    def cnn_ms(self) -> float:
        return self.cnn_cycles / CNN_CLOCK_HZ * 1e3

    @property
    def decoder_ms(self) -> float:
        return self.decoder_instructions * M4_CPI / M4_CLOCK_HZ * 1e3

    @property
    def fps(self) -> float:
        """Frames per second with the CNN and the decoder one after the other (camera capture not included)."""
        return 1e3 / (self.cnn_ms + self.decoder_ms)

    @property
    def cnn_energy_uj(self) -> float:
        return REFERENCE_ENERGY_UJ * self.cnn_cycles / REFERENCE_CYCLES

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "cnn_clock_hz": CNN_CLOCK_HZ,
            "cnn_ms": round(self.cnn_ms, 3),
            "decoder_cpi_assumed": M4_CPI,
            "decoder_clock_hz": M4_CLOCK_HZ,
            "decoder_ms": round(self.decoder_ms, 3),
            "frames_per_second": round(self.fps, 1),
            "energy_per_inference_uj_estimate": round(self.cnn_energy_uj, 1),
            "energy_source": ENERGY_SOURCE,
        }

    def summary(self) -> str:
        return (
            f"CNN {self.cnn_ms:.2f} ms ({self.cnn_cycles:,} cycles at 50 MHz, {self.cnn_cycles_source}) + decoder "
            f"{self.decoder_ms:.2f} ms ({self.people} people, {self.decoder_instructions:,} M4 instructions, "
            f"{self.decoder_instructions_source}, CPI {M4_CPI}) = {self.fps:.1f} frames/s; energy about "
            f"{self.cnn_energy_uj:.0f} uJ per inference (an estimate: see export.json)"
        )
