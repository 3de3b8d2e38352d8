"""Exported C against posenas' Python integer simulation, per image, on this host.

    python benchmarks/bench_export.py [--arch tiny-hw] [--budget max78000] [--repeat 20] [--threads 1]

For each architecture (random QAT weights: time does not depend on the values), one export, then:
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

from budgets.device import load_budget
from posenet.checkpoint import RunCheckpoint
from posenet.decode import DecodeConfig, decode
from posenet.export.bundle import export_run
from posenet.export.host import build_host, run_host
from posenet.export.integer import integer_layers, simulation_model
from posenet.export.sample import sample_input, simulate
from posenet.layers import QuantMode
from posenet.model import build_model
from space.baselines import get_arch
from space.graph import count_macs


def median_seconds(run, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench(arch: str, budget: str, repeat: int, folder: Path) -> dict[str, float]:
    spec = get_arch(arch)
    torch.manual_seed(0)
    model = build_model(spec)
    model.start_qat()
    checkpoint = RunCheckpoint(spec=spec, mode=QuantMode.QAT, epoch=0, state_dict=model.state_dict())
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
        raise SystemExit(f"{arch}: the C outputs differ from the simulation ({host.mismatches} values)")
    return {"python_cnn_ms": 1e3 * python_cnn, "c_cnn_ms": host.cnn_ms, "python_decode_ms": 1e3 * python_decode,
            "c_decode_ms": host.decode_ms, "macs": float(count_macs(spec))}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", action="append", help="baseline(s), default tiny-hw")
    parser.add_argument("--budget", default="max78000")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads for the Python side")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    table = Table("arch", "MACs", "Python sim ms", "C ms", "C / Python", "Python decode ms", "C decode ms",
                  "C / Python", title=f"per image, {args.repeat} repeats, torch threads {args.threads}")  # fmt: skip
    for arch in args.arch or ["tiny-hw"]:
        with tempfile.TemporaryDirectory() as tmp:
            r = bench(arch, args.budget, args.repeat, Path(tmp))
        table.add_row(arch, f"{r['macs'] / 1e6:.1f}M", f"{r['python_cnn_ms']:.2f}", f"{r['c_cnn_ms']:.2f}",
                      f"{r['c_cnn_ms'] / r['python_cnn_ms']:.2f}x", f"{r['python_decode_ms']:.2f}",
                      f"{r['c_decode_ms']:.3f}", f"{r['c_decode_ms'] / r['python_decode_ms']:.2f}x")  # fmt: skip
    Console(width=150).print(table)


if __name__ == "__main__":
    main()
