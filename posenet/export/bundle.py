"""One export: a trained run checkpoint -> everything needed to put the network on the chip.

Folder layout (``out``)::

    <arch>-q.pth.tar          integer checkpoint for ai8xize.py --checkpoint-file
    <arch>.yaml               network description for ai8xize.py --config-file (from the placement plan)
    sample_input.npy          int64 (C, H, W) in [-128, 127], for ai8xize.py --sample-input
    expected_heatmaps.npy     int64 32-bit accumulators of posenas' integer simulation for that input
    expected_pafs.npy
    budget.json               the budget report and placement plan the export was checked with
    spec.yaml                 the architecture
    c/                        standalone C99: kernels, pose decoders, weights, host check program, Makefile
    m4/                       the grid decoder on a Cortex-M4 (MAX78000 exports, ARM toolchain and QEMU present):
                              src/ the firmware's MSDK-free sources, qemu/ this sample's head outputs and the
                              QEMU program that timed the decoder
    export.json               what was written and checked (C bit-exactness, poses, ai8xize outcome)

The network is checked against the budget first; one that does not fit is refused with its violations.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from posenas.budgets.checker import BudgetReport, check
from posenas.budgets.device import Budget
from posenas.errors import DoesNotFit, OutputError
from posenas.events import Events
from posenas.files import atomic_write_stream, atomic_write_text, inside, output_folder
from posenas.posenet.export import m4
from posenas.posenet.export.c_source import host_decoder_limits, write_c_project
from posenas.posenet.export.host import (
    CheckFailed,
    HostRun,
    build_host,
    decoder_limits_exceeded,
    find_compiler,
    pose_difference,
    run_host,
)
from posenas.posenet.export.integer import integer_layers, simulation_model, synthesis_checkpoint
from posenas.posenet.export.izer import IzerRun, run_izer, synthesis_figures
from posenas.posenet.export.network_yaml import network_yaml
from posenas.posenet.export.performance import Performance
from posenas.posenet.export.sample import sample_input, simulate
from posenas.posenet.export.target import decoder_performance, firmware_project
from posenas.posenet.nets.checkpoint import RunCheckpoint
from posenas.posenet.pose.decode import DecodeConfig, Pose, decode
from posenas.space.graph import layer_graph

# Keypoints may differ by half an upsampled pixel: an ulp of cv2's float arithmetic can move a tie.
POSE_TOLERANCE_PX = 0.5
DATASET_NAME = "posenas_pose"  # the YAML's dataset: only names izer's default sample file, which we override


class DoesNotFitError(DoesNotFit):
    """The network violates the budget; ``report`` holds the violations (exit 1: the input was fine)."""

    def __init__(self, report: BudgetReport) -> None:
        super().__init__(
            f"{report.arch} does not fit {report.device}: " + "; ".join(v.message for v in report.violations)
        )
        self.report = report


@dataclass
class ExportResult:
    folder: Path
    arch: str
    device: str  # the budget's device, e.g. MAX78000 (ai8xize.py --device)
    files: dict[str, Path] = field(default_factory=dict)
    post_training: bool = False  # a float checkpoint was quantized without QAT
    python_poses: list[Pose] = field(default_factory=list)  # the upsampled decoder's (the C in c/ is checked to it)
    grid_poses: list[Pose] = field(default_factory=list)  # the grid decoder's: the M4's, which the decoder time is for
    decode_config: DecodeConfig | None = None  # the upsampled decoder's; both keep every person past its filters
    host: HostRun | None = None
    host_skipped: str | None = None  # why the C was not built and run
    pose_difference_px: float | None = None
    decoder_limit: str | None = None  # set when the maps are past the C decoder's static limits
    izer: IzerRun | None = None
    izer_agrees: dict[str, bool] | None = None  # per head: izer's own simulation == posenas' expected output
    latency_cycles: int | None = None  # the budget checker's estimate, to set beside izer's
    performance: Performance | None = None  # CNN latency, decoder time, frames per second, energy estimate
    firmware: Path | None = None  # the MSDK project (izer-backed exports only)
    firmware_check: str | None = None  # how posenas' firmware sources were checked, or why not

    @property
    def passed(self) -> bool:
        """Every check that ran passed: the C bit-exact and its poses as Python's (or the difference explained
        by the C decoder's static limits), ai8xize.py succeeded and simulated both heads as posenas."""
        host_ok = self.host is None or (
            self.host.bit_exact
            and (
                self.decoder_limit is not None
                or (self.pose_difference_px is not None and self.pose_difference_px <= POSE_TOLERANCE_PX)
            )
        )
        izer_ok = self.izer is None or (self.izer.ok and all((self.izer_agrees or {}).values()))
        return host_ok and izer_ok

    def to_dict(self) -> dict[str, Any]:
        host = self.host
        return {
            "arch": self.arch,
            "device": self.device,
            "files": {k: str(v) for k, v in self.files.items()},
            "post_training_quantization": self.post_training,
            "python_poses": len(self.python_poses),
            "grid_poses": len(self.grid_poses),
            "person_filters": None
            if self.decode_config is None
            else {
                "min_keypoints": self.decode_config.min_keypoints,
                "min_mean_score": self.decode_config.min_mean_score,
                "min_person_score": None,
            },
            "c": None
            if host is None
            else {
                "bit_exact": host.bit_exact,
                "outputs": host.outputs,
                "mismatches": host.mismatches,
                "poses": len(host.poses),
                "max_keypoint_difference_px": self.pose_difference_px,
                "decoder_limit": self.decoder_limit,
            },
            "c_skipped": self.host_skipped,
            "ai8xize": None
            if self.izer is None
            else {
                "returncode": self.izer.returncode,
                "seconds": round(self.izer.seconds, 2),
                "log": str(self.izer.log),
                "output": str(self.izer.output),
                "summary": self.izer.summary,
                "simulation_equals_posenas": self.izer_agrees,
                "figures": synthesis_figures(self.izer.output / "log.txt"),
                "posenas_latency_cycles": self.latency_cycles,
            },
            "performance": None if self.performance is None else self.performance.to_dict(),
            "firmware": None if self.firmware is None else {"folder": str(self.firmware), "check": self.firmware_check},
        }


def export_run(
    checkpoint: RunCheckpoint,
    budget: Budget,
    out: Path,
    *,
    image: str | None = None,
    build_c: bool = True,
    izer_root: Path | None = None,
    events: Events | None = None,
) -> ExportResult:
    """Check, convert and write ``checkpoint`` into ``out``; build and run the C and ai8xize.py when asked.
    Each step is reported to ``events`` as it starts.

    Raises DoesNotFitError before writing anything when the network violates ``budget``.
    """
    events = events or Events()
    spec = checkpoint.spec
    report = check(spec, budget)
    if not report.fits:
        raise DoesNotFitError(report)
    out = output_folder(out)
    arch = spec.name.lower()
    if inside(out, f"{arch}-q.pth.tar").parent != out.resolve():  # names are validated in ArchSpec; prove it here too
        raise OutputError(f"architecture name {spec.name!r} would write outside {out}")
    result = ExportResult(folder=out, arch=arch, device=budget.device.name, latency_cycles=report.latency_cycles)
    files = result.files
    # export.json is written last: until then a folder killed half-way (or a rerun's) is not taken as an export
    (out / "export.json").unlink(missing_ok=True)

    model, result.post_training = simulation_model(checkpoint)
    layers = integer_layers(model)
    files["checkpoint"] = _save_torch(synthesis_checkpoint(checkpoint, model), out / f"{arch}-q.pth.tar")
    files["yaml"] = _write(out / f"{arch}.yaml", network_yaml(arch, DATASET_NAME, layer_graph(spec), report.plan))
    files["spec"] = _write(out / "spec.yaml", spec.to_yaml())
    files["budget"] = _write(out / "budget.json", json.dumps(report.to_dict(with_plan=True), indent=2) + "\n")
    events.message(
        f"integer checkpoint and network YAML written ({len(layers)} layers, budget {budget.device.name} fits)"
    )

    x = sample_input(spec, image)
    heatmaps, pafs = simulate(model, x)
    files["sample"] = _save_npy(out / "sample_input.npy", x)
    files["expected_heatmaps"] = _save_npy(out / "expected_heatmaps.npy", heatmaps)
    files["expected_pafs"] = _save_npy(out / "expected_pafs.npy", pafs)
    heat_layer, paf_layer = (layer for layer in layers if layer.node.is_output)
    config = DecodeConfig.for_input(spec.input_size)
    heat_maps, paf_maps = heatmaps / heat_layer.wide_scale, pafs / paf_layer.wide_scale
    result.python_poses = decode(heat_maps, paf_maps, config)
    result.decode_config = config
    # The M4 runs the grid decoder, not the upsampled one checked against c/: a separate count, never mixed up.
    result.grid_poses = decode(heat_maps, paf_maps, DecodeConfig.for_input(spec.input_size, decoder="grid"))

    c_folder = out / "c"
    write_c_project(c_folder, spec.name, layers, spec.input_size, x, (heatmaps, pafs))
    files["c"] = c_folder
    compiler = find_compiler()
    if not build_c:
        result.host_skipped = "not asked"
    elif compiler is None:
        result.host_skipped = "no C compiler on PATH (set CC)"
    else:
        events.message(f"building the C export with {compiler}")
        result.host = run_host(build_host(c_folder, compiler))
        result.pose_difference_px = pose_difference(result.host.poses, result.python_poses)
        if (
            result.pose_difference_px > POSE_TOLERANCE_PX
        ):  # explain a disagreement by the C decoder's static limits, if so
            limits = host_decoder_limits(heat_layer)
            result.decoder_limit = decoder_limits_exceeded(heat_maps, paf_maps, config, limits)
            if result.decoder_limit is None and len(result.python_poses) >= limits["PD_MAX_PEOPLE"]:
                result.decoder_limit = (
                    f"{len(result.python_poses)} people, past the C decoder's {limits['PD_MAX_PEOPLE']}"
                )

    if izer_root is not None:
        events.message(f"running ai8xize.py from {izer_root} ({budget.device.name})")
        result.izer = run_izer(
            izer_root,
            files["checkpoint"],
            files["yaml"],
            files["sample"],
            out / "izer",
            arch,
            device=budget.device.name,
        )
        if result.izer.ok:
            result.izer_agrees = _izer_agreement(
                result.izer, izer_root, files, out, arch, budget, layers, heatmaps, pafs, events
            )
    izer_cycles = synthesis_figures(result.izer.output / "log.txt").get("latency_cycles") if result.izer else None
    scales = (heat_layer.wide_scale, paf_layer.wide_scale)
    cnn_cycles = izer_cycles or report.latency_cycles
    if budget.device.name == "MAX78000" and cnn_cycles:  # the clocks and the energy reference are the MAX78000's
        result.performance = decoder_performance(
            out / "m4",
            spec.name,
            spec.input_size,
            heatmaps,
            pafs,
            scales,
            len(result.grid_poses),
            izer_cycles,
            cnn_cycles,
            measure=build_c,
        )
        if build_c and m4.missing_tools() is None and (out / "m4" / "src").is_dir():  # written by this export
            files["m4"] = out / "m4"
    if result.izer is not None and result.izer.ok:
        result.firmware, result.firmware_check = firmware_project(
            out / "firmware", result.izer.output, spec.name, spec.input_size, heatmaps.shape[1:], scales
        )
        files["firmware"] = result.firmware
        events.message(f"firmware project written to {result.firmware} ({result.firmware_check})")
    _write(out / "export.json", json.dumps(result.to_dict(), indent=2, default=_json_number) + "\n")
    return result


def _izer_agreement(
    run: IzerRun,
    root: Path,
    files: dict[str, Path],
    out: Path,
    arch: str,
    budget: Budget,
    layers: tuple,
    heatmaps: np.ndarray,
    pafs: np.ndarray,
    events: Events,
) -> dict[str, bool]:
    """Compare izer's own simulation of both heads with posenas' expected accumulators.

    izer saves only its checked output layer: the last one (the PAF head) from the main run, and the
    heatmap head from a second run stopped after that layer."""
    agrees = {"pafs": _same(run.result, pafs)}
    heat_index = next(i for i, layer in enumerate(layers) if layer.node.is_output)
    events.message(f"running ai8xize.py again, stopped after layer {heat_index} (the heatmap head), for its simulation")
    heat_run = run_izer(
        root,
        files["checkpoint"],
        files["yaml"],
        files["sample"],
        out / "izer-heatmaps",
        arch,
        device=budget.device.name,
        stop_after=heat_index,
    )
    agrees["heatmaps"] = heat_run.ok and _same(heat_run.result, heatmaps)
    return agrees


def _same(path: Path | None, expected: np.ndarray) -> bool:
    if path is None:
        return False
    got = np.load(path)
    return got.shape == expected.shape and bool(np.array_equal(got.astype(np.int64), expected))


def _json_number(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON: {type(value)}")


def _write(path: Path, text: str) -> Path:
    return atomic_write_text(path, text)


def _save_npy(path: Path, array: np.ndarray) -> Path:
    atomic_write_stream(path, lambda stream: np.save(stream, np.asarray(array, dtype=np.int64)))
    return path


def _save_torch(obj: dict[str, Any], path: Path) -> Path:
    atomic_write_stream(path, lambda stream: torch.save(obj, stream))
    return path


__all__ = ["DoesNotFitError", "ExportResult", "CheckFailed", "export_run"]
