"""Start-up time of the commands a user runs most often, against a bare interpreter in the same run.

Goals (issue 12): ``posenas --help`` and ``posenas space show`` within 0.3 s, ``posenas budget`` within
0.5 s. Each command runs as a fresh process (``python -m posenas.search.cli``, as the console script
does) ``--repeats`` times; the table gives the median wall time and its ratio to ``python -c pass``, the
floor any Python command pays on this machine.

    python benchmarks/bench_startup.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "posenas --help": [sys.executable, "-m", "posenas.search.cli", "--help"],
    "posenas space show tiny-hw": [sys.executable, "-m", "posenas.search.cli", "space", "show", "tiny-hw"],
    "posenas budget --arch tiny-hw": [sys.executable, "-m", "posenas.search.cli", "budget", "--arch", "tiny-hw"],
}
GOALS_S = {"posenas --help": 0.3, "posenas space show tiny-hw": 0.3, "posenas budget --arch tiny-hw": 0.5}


def wall_seconds(command: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    # Interleave one warm-up of each so the file cache is equally warm for all.
    for command in COMMANDS.values():
        wall_seconds(command, 1)
    medians = {name: wall_seconds(command, args.repeats) for name, command in COMMANDS.items()}
    floor = medians["python -c pass"]
    print(f"{'command':<32} {'median s':>9} {'x bare':>7} {'goal s':>7}  verdict")
    for name, seconds in medians.items():
        goal = GOALS_S.get(name)
        verdict = "" if goal is None else ("meets" if seconds <= goal else "MISSES")
        print(f"{name:<32} {seconds:9.3f} {seconds / floor:7.2f} {'-' if goal is None else goal:>7}  {verdict}")


if __name__ == "__main__":
    main()
