"""Run ai8x-synthesis (``ai8xize.py``) on an export, from a checkout the user points to.

posenas never ships or vendors ai8x-synthesis: ``--izer DIR`` or the ``AI8X_SYNTHESIS`` variable names a
checkout, and the synthesizer runs there (it needs its ``assets/``) in its own Python: ``DIR/venv`` when
present, else ``AI8X_SYNTHESIS_PYTHON``, else this interpreter.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from posenas.errors import ToolError

IZER_ENV = "AI8X_SYNTHESIS"
IZER_PYTHON_ENV = "AI8X_SYNTHESIS_PYTHON"


@dataclass(frozen=True)
class IzerRun:
    returncode: int
    seconds: float
    command: list[str]
    log: Path  # stdout and stderr of ai8xize.py
    output: Path  # the generated project folder
    summary: str  # the last meaningful line of its output
    result: Path | None = None  # izer's own simulation of the checked output layer, int64 (C, H, W)

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def find_izer(explicit: str | os.PathLike | None) -> Path | None:
    """The ai8x-synthesis root from ``explicit`` or $AI8X_SYNTHESIS; None when neither is set."""
    root = explicit or os.environ.get(IZER_ENV)
    if not root:
        return None
    path = Path(root).expanduser()
    if not (path / "ai8xize.py").is_file():
        raise ToolError(f"{path}: not an ai8x-synthesis checkout (no ai8xize.py)")
    return path.resolve()


def izer_python(root: Path) -> str:
    venv = root / "venv" / "bin" / "python"
    if venv.is_file():
        return str(venv)
    return os.environ.get(IZER_PYTHON_ENV) or sys.executable


RESULT_FILE = "izer_output.npy"


def izer_command(
    root: Path,
    checkpoint: Path,
    config: Path,
    sample: Path,
    out: Path,
    prefix: str,
    device: str = "MAX78000",
    stop_after: int | None = None,
) -> list[str]:
    """The ai8xize.py command line for an export (docs/max78000.md section 8.1). ``--sample-numpy-filename``
    saves izer's own simulation of the last (or ``stop_after``) layer, to compare with posenas'."""
    command = [
        izer_python(root),
        "ai8xize.py",
        "--test-dir",
        str(out),
        "--prefix",
        prefix,
        "--checkpoint-file",
        str(checkpoint),
        "--config-file",
        str(config),
        "--sample-input",
        str(sample),
        "--device",
        device,
        "--timer",
        "0",
        "--verbose",
        "--overwrite",
        "--no-version-check",
        "--yamllint",
        "none",
        "--sample-numpy-filename",
        RESULT_FILE,
    ]
    return command + (["--stop-after", str(stop_after)] if stop_after is not None else [])


def run_izer(
    root: Path,
    checkpoint: Path,
    config: Path,
    sample: Path,
    out: Path,
    prefix: str,
    device: str = "MAX78000",
    stop_after: int | None = None,
    timeout: float = 600.0,
) -> IzerRun:
    """Run ai8xize.py from ``root``; its project goes to ``out / prefix``, its output to ``out / 'ai8xize.log'``.

    ``stop_after`` N truncates the network after layer N, which makes that layer the checked output (how
    izer's simulation of a head other than the last one is obtained)."""
    out.mkdir(parents=True, exist_ok=True)
    command = izer_command(
        root, checkpoint.resolve(), config.resolve(), sample.resolve(), out.resolve(), prefix, device, stop_after
    )
    started = time.perf_counter()
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - started
    log = out / "ai8xize.log"
    log.write_text(f"$ {' '.join(command)}\n{done.stdout}\n{done.stderr}")
    lines = [line.strip() for line in (done.stderr + "\n" + done.stdout).splitlines() if line.strip()]
    summary = _summary(lines, done.returncode)
    if done.returncode == 0:
        summary = synthesis_summary(out / prefix / "log.txt") or summary
    result = out / prefix / RESULT_FILE
    return IzerRun(
        done.returncode,
        seconds,
        command,
        log,
        out / prefix,
        summary,
        result if done.returncode == 0 and result.is_file() else None,
    )


_TOTAL_CYCLES = re.compile(r"^Total\s+([\d,]+) cycles")
_MEMORY = re.compile(r"^(Weight|Bias) memory:\s+([\d,]+) bytes out of ([\d,]+) bytes")


def synthesis_figures(log_txt: Path) -> dict[str, int]:
    """izer's estimated latency (cycles) and weight/bias memory use (bytes) from its ``log.txt``."""
    figures: dict[str, int] = {}
    if not log_txt.is_file():
        return figures
    for line in log_txt.read_text(errors="replace").splitlines():
        if match := _TOTAL_CYCLES.match(line):
            figures["latency_cycles"] = int(match[1].replace(",", ""))
        elif match := _MEMORY.match(line):
            figures[f"{match[1].lower()}_bytes"] = int(match[2].replace(",", ""))
            figures[f"{match[1].lower()}_capacity"] = int(match[3].replace(",", ""))
    return figures


def synthesis_summary(log_txt: Path) -> str:
    f = synthesis_figures(log_txt)
    parts = []
    if "latency_cycles" in f:  # izer has no latency model for every device (none for MAX78002)
        parts.append(f"estimated latency {f['latency_cycles']:,} cycles")
    if "weight_bytes" in f:
        parts.append(f"weight memory {f['weight_bytes']:,} of {f['weight_capacity']:,} bytes")
    if "bias_bytes" in f:
        parts.append(f"bias memory {f['bias_bytes']:,} bytes")
    return ", ".join(parts)


def _summary(lines: list[str], returncode: int) -> str:
    if returncode != 0:
        errors = [line for line in lines if "ERROR" in line or "Error" in line]
        return (errors or lines or ["(no output)"])[-1]
    return next(
        (line for line in reversed(lines) if "Weight memory" in line or "latency" in line.lower()),
        lines[-1] if lines else "",
    )
