"""Does the default search keep its time budget on a busy machine? (issue 24)

    python benchmarks/bench_time_budget.py --busy 4 --out /tmp/budget-busy \
        --results benchmarks/results/search_budget.json
    python benchmarks/bench_time_budget.py --busy 0 --out /tmp/budget-idle \
        --results benchmarks/results/search_budget.json

Runs the README's main job (``posenas search``, the built-in default study: 19 minutes) in a fresh
folder beside ``--busy`` CPU-bound processes (each a Python busy loop, started before the search and
stopped after it), and records: the command's wall time against the budget (goal: within the budget plus
5 %), the 1-minute load average sampled every 10 s, what the budget cut (the search's summary.json), the
recommendation, and when each phase printed its first line (goal: progress within 5 s of a phase's start;
here the gap from the previous phase's last line, as the output is piped and the live bars are not).
Each run adds (or replaces) its row, keyed by ``--busy``, in ``--results``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

# The first line each phase prints (the search's own wording), in order.
PHASE_STARTS = {
    "data": "making the built-in synthetic people",
    "teacher": "preparing the teacher",
    "supernet": "the study's supernet ->",
    "search": "scoring trials for up to",
    "retrain": "retraining trial",
    "verdict": "Pareto front of",
}


def _busy_loop() -> None:
    while True:
        pass


def _load_sampler(samples: list[float], stop: threading.Event) -> None:
    while not stop.wait(10.0):
        samples.append(os.getloadavg()[0])


def run(busy: int, out: Path, minutes: float | None) -> dict:
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} is not empty: the benchmark measures a fresh search")
    workers = [multiprocessing.Process(target=_busy_loop, daemon=True) for _ in range(busy)]
    for w in workers:
        w.start()
    samples: list[float] = []
    stop = threading.Event()
    sampler = threading.Thread(target=_load_sampler, args=(samples, stop), daemon=True)
    sampler.start()
    command = [sys.executable, "-m", "posenas.search.cli", "search", "--out", str(out)]
    if minutes is not None:
        command += ["--timeout-minutes", str(minutes)]
    lines: list[tuple[float, str]] = []
    started = time.monotonic()
    try:
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
            assert process.stdout is not None
            for line in process.stdout:
                lines.append((time.monotonic() - started, line.rstrip("\n")))
                print(f"[{lines[-1][0]:7.1f} s] {line}", end="", flush=True)
            code = process.wait()
    finally:
        wall = time.monotonic() - started
        stop.set()
        for w in workers:
            w.terminate()
    (out / "bench_output.txt").write_text("".join(f"[{t:7.1f}] {text}\n" for t, text in lines))
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").is_file() else {}
    budget_min = summary.get("budget_minutes") or minutes or 19.0
    return {
        "busy_processes": busy,
        "exit_code": code,
        "wall_s": round(wall, 1),
        "budget_s": budget_min * 60,
        "within_budget_plus_5pct": wall <= budget_min * 60 * 1.05,
        "ratio_to_budget": round(wall / (budget_min * 60), 3),
        "load_average_1min": {
            "mean": round(sum(samples) / len(samples), 2) if samples else None,
            "max": max(samples) if samples else None,
        },
        "phases": _phases(lines),
        "cuts": summary.get("cuts", []),
        "counts": summary.get("counts"),
        "recommended": summary.get("recommended"),
        "reason": summary.get("reason"),
        "machine": f"{platform.node()}: {os.cpu_count()} cores, {platform.processor() or platform.machine()}",
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def _phases(lines: list[tuple[float, str]]) -> dict[str, dict[str, float]]:
    """Per phase: when its first line came, and the silence before it (since the line before)."""
    found = {}
    for phase, marker in PHASE_STARTS.items():
        for i, (t, text) in enumerate(lines):
            if marker in text:
                previous = lines[i - 1][0] if i else 0.0
                found[phase] = {"first_line_s": round(t, 1), "silence_before_s": round(t - previous, 1)}
                break
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", type=int, default=4, help="CPU-bound processes beside the search (default 4)")
    parser.add_argument("--out", type=Path, required=True, help="a fresh folder for the search")
    parser.add_argument("--minutes", type=float, help="--timeout-minutes (default: the study's, 19)")
    parser.add_argument("--results", type=Path, help="a JSON file to add this run's row to")
    args = parser.parse_args()
    row = run(args.busy, args.out, args.minutes)
    print(json.dumps(row, indent=2))
    if args.results:
        rows = json.loads(args.results.read_text())["runs"] if args.results.is_file() else []
        rows = [r for r in rows if r.get("busy_processes") != args.busy] + [row]
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps({"benchmark": "bench_time_budget.py", "runs": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
