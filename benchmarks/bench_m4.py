"""Both pose decoders on a Cortex-M4: sizes from arm-none-eabi-size, instructions under qemu-system-arm -icount.

    python benchmarks/bench_m4.py [--noise 0.03] [--json] [--phases]

Maps: the training targets of 1, 4 and 10 synthetic people (the test template, jittered) plus Gaussian noise,
16 x 16 at stride 8 (a 128-px input). Each decoder is compiled with M4_CFLAGS (-mcpu=cortex-m4
-mfpu=fpv4-sp-d16 -mfloat-abi=hard -O2), run once per map set on QEMU's mps2-an386, and its people are
checked against the Python decoder's. ``--phases``: the int32 runs are built with -DPG_PROFILE and also report the
instructions of the grid decoder's peak search and limb scoring (grouping and the rest: the remainder).
Milliseconds at 100 MHz assume a cycles-per-instruction figure
(posenas.posenet.export.m4.M4_CPI; 1.0 is the floor).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_c_decode import person, target_maps

from posenas.posenet.export import m4
from posenas.posenet.export.firmware import write_posenas_sources
from posenas.posenet.pose.decode import DecodeConfig, decode

SCENES = {
    0: [],
    1: [((64, 28), 1.0)],
    4: [((24, 24), 0.55), ((72, 24), 0.55), ((40, 76), 0.55), ((100, 70), 0.55)],
    10: [((14 + 25 * i, 16 + 60 * row), 0.45) for row in range(2) for i in range(5)],
}


def scene_maps(count: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    people = [person(neck, scale, seed=40 + i) for i, (neck, scale) in enumerate(SCENES[count])]
    if not people:
        rng = np.random.default_rng(0)
        heatmaps, pafs = rng.normal(0, noise, (19, 16, 16)), rng.normal(0, noise, (38, 16, 16))
        return heatmaps.astype(np.float32), pafs.astype(np.float32)
    return target_maps(people, noise=noise, seed=count)


SCALE = 16384.0  # the accumulators' scale for 8-bit weights


def _row(name: str, count: int, run: m4.M4Run, same: bool, sizes: m4.SectionSizes) -> dict:
    return {
        "decoder": name,
        "people_planted": count,
        "people_found": len(run.poses),
        "same_as_python": same,
        "instructions": run.instructions,
        "ms_cpi_1": round(run.milliseconds(cpi=1.0), 3),
        f"ms_cpi_{m4.M4_CPI}": round(run.milliseconds(), 3),
        "text": sizes.text,
        "data": sizes.data,
        "bss": sizes.bss,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noise", type=float, default=0.03)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--phases", action="store_true", help="int32 runs: instructions per decoder phase")
    args = parser.parse_args()
    if reason := m4.missing_tools():
        print(f"skipped: {reason}")
        return 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sizes = {name: m4.decoder_sizes(folder / "obj", name) for name in m4.DECODER_SOURCES}
        for count in SCENES:
            heatmaps, pafs = scene_maps(count, args.noise)
            for name in m4.DECODER_SOURCES:
                expected = decode(heatmaps, pafs, DecodeConfig.for_input(128, decoder=name))
                run = m4.run(m4.build(folder / f"{name}-{count}", name, heatmaps, pafs))
                same = len(run.poses) == len(expected) and all(
                    np.abs(a.keypoints - b.keypoints).max() <= 0.5 for a, b in zip(run.poses, expected)
                )
                rows.append(_row(name, count, run, same, sizes[name]))
            # The firmware's path: the grid decoder on the heads' int32 accumulators (pg_decode_int32).
            heat, paf = (np.rint(m * SCALE).astype(np.int64) for m in (heatmaps, pafs))
            write_posenas_sources(folder / "app", "bench", 128, (16, 16), SCALE, SCALE)
            defines = ("-DPG_PROFILE",) if args.phases else ()
            run = m4.run(m4.build_app(folder / f"app-{count}", folder / "app", heat, paf, defines=defines))
            expected = decode(heat / SCALE, paf / SCALE, DecodeConfig.for_input(128, decoder="grid"))
            same = len(run.poses) == len(expected) and all(
                np.array_equal(a.keypoints, b.keypoints) for a, b in zip(run.poses, expected)
            )
            rows.append({**_row("grid-int32", count, run, same, sizes["grid"]), **m4.phase_instructions(run)})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(
        f"Cortex-M4 (qemu-system-arm -M mps2-an386 -icount shift=0), maps with noise {args.noise}; "
        f"ms at 100 MHz for CPI 1.0 and {m4.M4_CPI}"
    )
    print(
        f"{'decoder':11} {'people':>6} {'found':>5} {'=py':>4} {'instructions':>13} {'ms@1.0':>8} "
        f"{'ms@' + str(m4.M4_CPI):>8} {'text':>6} {'data':>5} {'bss':>7}"
    )
    for r in rows:
        same = "yes" if r["same_as_python"] else "NO"
        print(
            f"{r['decoder']:11} {r['people_planted']:>6} {r['people_found']:>5} {same:>4} "
            f"{r['instructions']:>13,} {r['ms_cpi_1']:>8.2f} {r[f'ms_cpi_{m4.M4_CPI}']:>8.2f} {r['text']:>6} "
            f"{r['data']:>5} {r['bss']:>7}" + (f"  peaks {r['peaks']:,} limbs {r['limbs']:,}" if "peaks" in r else "")
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
