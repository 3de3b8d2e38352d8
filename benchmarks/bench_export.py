"""Exported C against posenas' Python integer simulation, per image, on this host.

    python benchmarks/bench_export.py [--arch tiny-hw ... | --checkpoint RUN/best.pt ...] [--budget max78000]
                                      [--repeat 20] [--threads 1]

For each architecture (random QAT weights: the CNN's time does not depend on the values) or trained
checkpoint (realistic maps for the decoders, whose time does), one export, then:
- Python: ``posenet.export.sample.simulate`` (the SIMULATE model: float64 convolutions through torch,
  ``--threads`` intra-op threads) on the sample input, the median of ``--repeat`` runs;
- C: the exported host program (gcc -O3, one thread) timing ``--repeat`` inferences of the same input;
- the pose decoders on the same maps: ``posenet.decode.decode`` (NumPy + cv2) against the C decoder.
Ratios are C time / Python time (below 1: C is faster). Both sides compute bit-identical outputs (the
host program checks this before timing).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from posenas.budgets.device import load_budget
from posenas.posenet.export.bundle import export_run
from posenas.posenet.export.host import build_host, pose_difference, run_host
from posenas.posenet.export.integer import integer_layers, simulation_model
from posenas.posenet.export.sample import sample_input, simulate
from posenas.posenet.nets.checkpoint import RunCheckpoint, load_checkpoint
from posenas.posenet.nets.layers import QuantMode
from posenas.posenet.nets.model import build_model
from posenas.posenet.pose.decode import DecodeConfig, decode
from posenas.space.baselines import get_arch
from posenas.space.graph import count_macs


def median_seconds(run, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def random_checkpoint(arch: str) -> RunCheckpoint:
    spec = get_arch(arch)
    torch.manual_seed(0)
    model = build_model(spec)
    model.start_qat()
    return RunCheckpoint(spec=spec, mode=QuantMode.QAT, epoch=0, state_dict=model.state_dict())


def bench(checkpoint: RunCheckpoint, budget: str, repeat: int, folder: Path) -> dict[str, float]:
    spec = checkpoint.spec
    result = export_run(checkpoint, load_budget(budget), folder, build_c=False)
    simulated, _ = simulation_model(checkpoint)
    x = sample_input(spec)
    heatmaps, pafs = simulate(simulated, x)
    python_cnn = median_seconds(lambda: simulate(simulated, x), repeat)
    heat_scale, paf_scale = (layer.wide_scale for layer in integer_layers(simulated) if layer.node.is_output)
    config = DecodeConfig.for_input(spec.input_size)
    python_decode = median_seconds(lambda: decode(heatmaps / heat_scale, pafs / paf_scale, config), repeat)
    host = run_host(build_host(result.files["c"], "gcc"), repeat=repeat)
    if not host.bit_exact:
        raise SystemExit(f"{spec.name}: the C outputs differ from the simulation ({host.mismatches} values)")
    same = pose_difference(host.poses, decode(heatmaps / heat_scale, pafs / paf_scale, config)) <= 0.5
    return {
        "people": len(host.poses),
        "same_people": same,
        "python_cnn_ms": 1e3 * python_cnn,
        "c_cnn_ms": host.cnn_ms,
        "python_decode_ms": 1e3 * python_decode,
        "c_decode_ms": host.decode_ms,
        "macs": float(count_macs(spec)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", action="append", help="baseline(s) with random weights, default tiny-hw")
    parser.add_argument("--checkpoint", action="append", help="trained run checkpoint(s)")
    parser.add_argument("--budget", default="max78000")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads for the Python side")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    table = Table(
        "network",
        "MACs",
        "Python sim ms",
        "C ms",
        "C / Python",
        "Python decode ms",
        "C decode ms",
        "C / Python",
        "people",
        title=f"per image, {args.repeat} repeats, torch threads {args.threads}",
    )
    runs = [(f"{a} (random)", random_checkpoint(a)) for a in args.arch or ([] if args.checkpoint else ["tiny-hw"])]
    runs += [(f"{c.spec.name} (trained)", c) for path in args.checkpoint or [] for c in [load_checkpoint(path)]]
    for label, checkpoint in runs:
        with tempfile.TemporaryDirectory() as tmp:
            r = bench(checkpoint, args.budget, args.repeat, Path(tmp))
        # Untrained networks can make noise maps with hundreds of peaks per keypoint, past the C decoder's
        # static limits: the decoders then do different work and their times are not compared.
        decoders = (
            (
                f"{r['python_decode_ms']:.2f}",
                f"{r['c_decode_ms']:.3f}",
                f"{r['c_decode_ms'] / r['python_decode_ms']:.3f}x",
                str(r["people"]),
            )
            if r["same_people"]
            else ("-", "-", "-", "past the C limits")
        )
        table.add_row(
            label,
            f"{r['macs'] / 1e6:.1f}M",
            f"{r['python_cnn_ms']:.2f}",
            f"{r['c_cnn_ms']:.2f}",
            f"{r['c_cnn_ms'] / r['python_cnn_ms']:.2f}x",
            *decoders,
        )
    Console(width=150).print(table)


if __name__ == "__main__":
    main()
