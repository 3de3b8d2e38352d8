"""``posenas export``: a trained network (a run checkpoint, or a study's trial) -> the chip's files.

Exit codes: 0 exported (and, where run, the C is bit-exact and ai8xize.py succeeded); 1 the network does
not fit the budget (violations listed, nothing written) or a check failed; 2 bad input.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from posenas.errors import ExitCode, UsageError
from posenas.search.cli import arguments, options

if TYPE_CHECKING:
    from rich.console import Console

    from posenas.posenet.export.bundle import ExportResult


def register(sub: argparse._SubParsersAction) -> None:
    export = sub.add_parser(
        "export", help="integer checkpoint + ai8x-synthesis YAML + standalone C of a trained network"
    )
    source = export.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--checkpoint",
        type=options.InputPath(),
        help="a run checkpoint (RUN/best.pt; QAT, or float for post-training quantization)",
    )
    source.add_argument("--trial", type=options.TRIAL, help="a trial number of --study")
    export.add_argument(
        "--study", type=options.InputPath(), help="the study name, as posenas search printed it (with --trial)"
    )
    export.add_argument(
        "--storage",
        type=options.Storage(),
        help="the study's storage URL (default: sqlite file in posenas-runs/<study>)",
    )
    export.add_argument("--out", type=options.OutputFolder(), required=True, help="the export folder")
    export.add_argument(
        "--budget", type=options.InputPath(), default="max78000", help="max78000 (default), max78002 or a budget file"
    )
    export.add_argument(
        "--image",
        type=options.InputPath(),
        help="an image file for the sample input (default: a built-in synthetic image)",
    )
    export.add_argument(
        "--izer",
        type=options.InputPath(),
        help="an ai8x-synthesis checkout: run ai8xize.py on the export "
        "(default: $AI8X_SYNTHESIS; not run when neither is set)",
    )
    export.add_argument("--no-build", action="store_true", help="write the C but do not compile and run it")
    export.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace, console: Console) -> int:
    from posenas.budgets.device import load_budget
    from posenas.errors import CheckFailed
    from posenas.posenet.export.bundle import DoesNotFitError, export_run
    from posenas.posenet.export.izer import find_izer
    from posenas.posenet.nets.checkpoint import load_checkpoint
    from posenas.search.cli.rendering import ConsoleEvents

    if args.checkpoint and (args.study or args.storage):
        raise UsageError("--study and --storage go with --trial, not with --checkpoint")
    izer_root = find_izer(args.izer)
    checkpoint_path = args.checkpoint or trial_checkpoint(args.trial, args.study, args.storage)
    checkpoint = load_checkpoint(checkpoint_path)
    budget = load_budget(args.budget)
    out = Path(args.out)
    console.print(f"exporting {checkpoint.spec.name} ({checkpoint.mode.value} checkpoint {checkpoint_path}) -> {out}")
    try:
        result = export_run(
            checkpoint,
            budget,
            out,
            image=args.image,
            build_c=not args.no_build,
            izer_root=izer_root,
            events=ConsoleEvents(console),
        )
    except DoesNotFitError as exc:
        console.print(f"[bold red]{exc.report.arch} does not fit {exc.report.device}: nothing exported[/]")
        for v in exc.report.violations:
            console.print(f"  [red]{v.resource}[/]: {v.message}", highlight=False)
        return ExitCode.FAILED
    except CheckFailed as exc:
        console.print(f"[bold red]C build failed:[/] {exc}", highlight=False)
        return ExitCode.FAILED
    _print_result(result, console)
    _print_performance(result, console)
    return ExitCode.OK if result.passed else ExitCode.FAILED


def trial_checkpoint(number: int | None, study_name: str | None, storage_url: str | None) -> str:
    """The stand-alone checkpoint of trial ``number`` of a study, whatever trained it (``search.trials``)."""
    from posenas.search.trials import trial_weights

    study, url = arguments.trial_study(study_name, storage_url)
    return str(trial_weights(study, number, url if storage_url else None))


def _print_performance(result: ExportResult, console: Console) -> None:
    """Frames per second, the times they come from and the energy estimate; the firmware project."""
    if result.performance is not None:
        console.print(f"on the MAX78000: {result.performance.summary()}", highlight=False)
    if result.firmware is not None:
        console.print(f"firmware project (MSDK): {result.firmware} ({result.firmware_check})", highlight=False)


def _print_result(result: ExportResult, console: Console) -> None:
    from rich.table import Table

    from posenas.posenet.export.izer import izer_command

    table = Table("file", "what", title=f"export of {result.arch}", title_justify="left")
    described = {
        "checkpoint": "integer checkpoint (ai8xize.py --checkpoint-file)",
        "yaml": "network description (--config-file)",
        "sample": "sample input, int64 CHW (--sample-input)",
        "expected_heatmaps": "expected heatmap accumulators (integer simulation)",
        "expected_pafs": "expected PAF accumulators (integer simulation)",
        "c": "standalone C99: make check",
        "m4": "Cortex-M4 grid decoder: src/ the firmware's MSDK-free C, qemu/ this sample's outputs and app.elf "
        "(timed under qemu-system-arm; rebuild: README)",
    }
    for key, what in described.items():
        if key in result.files:  # m4/ only where the ARM toolchain and QEMU ran
            table.add_row(str(result.files[key]), what)
    console.print(table)
    if result.post_training:
        console.print("[yellow]a float checkpoint: quantized post-training (no QAT); accuracy may drop[/]")
    host = result.host
    if host is None:
        console.print(f"C: not built ({result.host_skipped})")
    else:
        exact = (
            "[green]bit-exact[/]" if host.bit_exact else f"[red]{host.mismatches} of {host.outputs} values differ[/]"
        )
        console.print(
            f"C inference: {host.outputs:,} output values vs the integer simulation: {exact}", highlight=False
        )
        diff = result.pose_difference_px
        if result.decoder_limit is not None:
            agree = f"[yellow]not compared: {result.decoder_limit} (noise maps, e.g. an untrained network)[/]"
        elif diff is None or diff == float("inf"):
            agree = "[red]different people[/]"
        else:
            agree = f"same keypoints within {diff:.3f} px"
    # Two decoders count people here, and their counts differ on the same maps: the upsampled one (checked against
    # its C port in c/) and the grid one (the M4's, which the decoder time is for). Say which is which, and that
    # neither has a person-score threshold, so that "49 people" and "1 people" do not read as a contradiction.
    from posenas.search.cli.arguments import DEFAULT_MIN_SCORE

    up, grid = result.python_poses, result.grid_poses
    c_count = "" if host is None else f", C {len(host.poses)}; {agree}"
    console.print(
        f"upsampled decoder (peaks on the maps upsampled x8; posenet/pose/decode.py and its C port "
        f"c/pose_decode.c): Python {len(up)} people{c_count}",
        highlight=False,
    )
    strong = [sum(p.coco_score >= DEFAULT_MIN_SCORE for p in poses) for poses in (up, grid)]
    reason = (
        f"{len(up)} vs {len(grid)} because these are two decoders, not two thresholds"
        if len(up) != len(grid)
        else "the same count"
    )
    config = result.decode_config
    timed = "; the decoder time below is for it" if result.performance is not None else ""
    console.print(
        f"grid decoder (the M4's pose_grid.c, peaks on the stride-8 cells{timed}): "
        f"{len(grid)} people; {reason}: both keep every person with {config.min_keypoints}+ keypoints "
        f"and mean keypoint score >= {config.min_mean_score:g}, no person-score threshold "
        f"({strong[0]} and {strong[1]} at score >= {DEFAULT_MIN_SCORE:g}, predict's default)",
        highlight=False,
    )
    izer = result.izer
    if izer is None:
        # Absolute paths: the command runs from the ai8x-synthesis checkout, not from here. Quoted, so that
        # it can be pasted into a shell as printed whatever the folder is called.
        folder = result.folder.resolve()
        command = izer_command(
            Path("ai8x-synthesis"),
            folder / f"{result.arch}-q.pth.tar",
            folder / f"{result.arch}.yaml",
            folder / "sample_input.npy",
            folder / "izer",
            result.arch,
            result.device,
        )
        console.print(
            "ai8xize.py not run (no --izer or AI8X_SYNTHESIS); from your ai8x-synthesis checkout run:\n  "
            + shlex.join(["python"] + command[1:]),
            highlight=False,
            markup=False,
        )
    else:
        verdict = "[green]succeeded[/]" if izer.ok else f"[red]failed (exit {izer.returncode})[/]"
        console.print(f"ai8xize.py {verdict} in {izer.seconds:.1f} s: {izer.summary}; log {izer.log}", highlight=False)
        if izer.ok and result.latency_cycles is not None:
            console.print(f"posenas' latency estimate for the same network: {result.latency_cycles:,} cycles")
        if result.izer_agrees is not None:
            same = ", ".join(
                f"{head} {'identical' if ok else '[red]DIFFERENT[/]'}" for head, ok in result.izer_agrees.items()
            )
            console.print(f"ai8x-synthesis' own simulation vs posenas' expected outputs: {same}")


__all__ = ["register", "run_export", "trial_checkpoint"]
