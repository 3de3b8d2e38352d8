#!/usr/bin/env bash
# The prepared GPU run (issue 25): on a machine with one CUDA GPU, after the README's install, from the
# project root. Within 8 minutes: throughput (fp32 against bf16), peak GPU memory, AP of tiny-hw and
# student-hw-mixed at the 10x schedule, and the integer simulation's bit-exactness after GPU training.
# Writes benchmarks/results/gpu.json; exit 1 if a trained network's simulation is not bit-exact.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 benchmarks/bench_gpu.py --results benchmarks/results/gpu.json "$@"
