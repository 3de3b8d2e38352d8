"""``posenas export``: a trained network (a run checkpoint, or a study's trial) -> the chip's files.

Exit codes: 0 exported (and, where run, the C is bit-exact and ai8xize.py succeeded); 1 the network does
not fit the budget (violations listed, nothing written) or a check failed; 2 bad input.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from posenas.errors import CheckpointError, DoesNotFit, ExitCode, StudyError

if TYPE_CHECKING:
    from rich.console import Console

    from posenas.posenet.nets.export.bundle import ExportResult


def register(sub: argparse._SubParsersAction) -> None:
    export = sub.add_parser("export", help="integer checkpoint + ai8x-synthesis YAML + standalone C of a trained network")
    source = export.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a run checkpoint (RUN/best.pt; QAT, or float for post-training quantization)")
    source.add_argument("--trial", type=int, help="a trial number of --study")
    export.add_argument("--study", help="the study name, as posenas search printed it (with --trial)")
    export.add_argument("--storage", help="the study's storage URL (default: sqlite file in posenas-runs/<study>)")
    export.add_argument("--out", required=True, help="the export folder")
    export.add_argument("--budget", default="max78000", help="max78000 (default), max78002 or a budget file")
    export.add_argument("--image", help="an image file for the sample input (default: a built-in synthetic image)")
    export.add_argument("--izer", help="an ai8x-synthesis checkout: run ai8xize.py on the export "
                        "(default: $AI8X_SYNTHESIS; not run when neither is set)")  # fmt: skip
    export.add_argument("--no-build", action="store_true", help="write the C but do not compile and run it")
    export.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace, console: "Console") -> int:
    from posenas.budgets.device import load_budget
    from posenas.errors import CheckFailed
    from posenas.posenet.nets.checkpoint import load_checkpoint
    from posenas.posenet.nets.export.bundle import DoesNotFitError, export_run
    from posenas.posenet.nets.export.izer import find_izer

    izer_root = find_izer(args.izer)
    checkpoint_path = args.checkpoint or trial_checkpoint(args.trial, args.study, args.storage)
    checkpoint = load_checkpoint(checkpoint_path)
    budget = load_budget(args.budget)
    out = Path(args.out)
    console.print(f"exporting {checkpoint.spec.name} ({checkpoint.mode.value} checkpoint {checkpoint_path}) -> {out}")
    try:
        result = export_run(checkpoint, budget, out, image=args.image, build_c=not args.no_build,
                            izer_root=izer_root, say=lambda line: console.print(line, highlight=False))  # fmt: skip
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
    """The best checkpoint of trial ``number`` of a study; refuses trials that were never trained."""
    import optuna

    from posenas.search.records import ATTR_FEASIBLE, ATTR_METRICS, ATTR_VIOLATIONS
    from posenas.search.storage import open_storage

    if study_name is None:
        raise StudyError("--trial needs --study (the study name posenas search printed)")
    url = storage_url or f"sqlite:///{(Path('posenas-runs') / study_name / 'study.db').resolve()}"
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).is_file():
        raise StudyError(f"no study database {url[len('sqlite:///'):]}; pass --storage")
    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(url))
    except KeyError:
        raise StudyError(f"no study {study_name!r} in {url}") from None
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if number not in trials:
        raise StudyError(f"study {study_name} has no trial {number} (it has {len(trials)})")
    attrs = trials[number].user_attrs
    if not attrs.get(ATTR_FEASIBLE, False):
        reasons = "; ".join(attrs.get(ATTR_VIOLATIONS, [])) or "not checked"
        raise DoesNotFit(f"trial {number} of {study_name} does not fit its budget and was not trained: {reasons}")
    checkpoint = (attrs.get(ATTR_METRICS) or {}).get("checkpoint")
    if not checkpoint:
        raise StudyError(f"trial {number} of {study_name} has no trained checkpoint (state {trials[number].state.name})")
    found = _existing(Path(checkpoint), url)
    if found is None:
        raise CheckpointError(f"{checkpoint}: trial {number}'s checkpoint is missing")
    return str(found)


def _existing(path: Path, storage_url: str) -> Path | None:
    """``path``, or for a relative one (studies before absolute paths were stored) the same path under
    one of the SQLite file's ancestors: the folder the search ran in."""
    if path.is_file():
        return path
    if path.is_absolute() or not storage_url.startswith("sqlite:///"):
        return None
    for folder in Path(storage_url[len("sqlite:///"):]).resolve().parents:
        if (folder / path).is_file():
            return folder / path
    return None


def _print_performance(result: "ExportResult", console: "Console") -> None:
    """Frames per second, the times they come from and the energy estimate; the firmware project."""
    if result.performance is not None:
        console.print(f"on the MAX78000: {result.performance.summary()}", highlight=False)
    if result.firmware is not None:
        console.print(f"firmware project (MSDK): {result.firmware} ({result.firmware_check})", highlight=False)


def _print_result(result: "ExportResult", console: "Console") -> None:
    from rich.table import Table

    from posenas.posenet.nets.export.izer import izer_command

    table = Table("file", "what", title=f"export of {result.arch}", title_justify="left")
    described = {
        "checkpoint": "integer checkpoint (ai8xize.py --checkpoint-file)",
        "yaml": "network description (--config-file)",
        "sample": "sample input, int64 CHW (--sample-input)",
        "expected_heatmaps": "expected heatmap accumulators (integer simulation)",
        "expected_pafs": "expected PAF accumulators (integer simulation)",
        "c": "standalone C99: make check",
    }
    for key, what in described.items():
        table.add_row(str(result.files[key]), what)
    console.print(table)
    if result.post_training:
        console.print("[yellow]a float checkpoint: quantized post-training (no QAT); accuracy may drop[/]")
    host = result.host
    if host is None:
        console.print(f"C: not built ({result.host_skipped})")
    else:
        exact = "[green]bit-exact[/]" if host.bit_exact else f"[red]{host.mismatches} of {host.outputs} values differ[/]"
        console.print(f"C inference: {host.outputs:,} output values vs the integer simulation: {exact}", highlight=False)
        diff = result.pose_difference_px
        if result.decoder_limit is not None:
            agree = f"[yellow]not compared: {result.decoder_limit} (noise maps, e.g. an untrained network)[/]"
        elif diff is None or diff == float("inf"):
            agree = "[red]different people[/]"
        else:
            agree = f"same keypoints within {diff:.3f} px"
        console.print(f"C pose decoder: {len(host.poses)} people, Python decoder {len(result.python_poses)}; {agree}",
                      highlight=False)  # fmt: skip
    izer = result.izer
    if izer is None:
        # Absolute paths: the command runs from the ai8x-synthesis checkout, not from here. Quoted, so that
        # it can be pasted into a shell as printed whatever the folder is called.
        folder = result.folder.resolve()
        command = izer_command(Path("ai8x-synthesis"), folder / f"{result.arch}-q.pth.tar", folder / f"{result.arch}.yaml",
                               folder / "sample_input.npy", folder / "izer", result.arch, result.device)  # fmt: skip
        console.print("ai8xize.py not run (no --izer or AI8X_SYNTHESIS); from your ai8x-synthesis checkout run:\n  "
                      + shlex.join(["python"] + command[1:]), highlight=False, markup=False)  # fmt: skip
    else:
        verdict = "[green]succeeded[/]" if izer.ok else f"[red]failed (exit {izer.returncode})[/]"
        console.print(f"ai8xize.py {verdict} in {izer.seconds:.1f} s: {izer.summary}; log {izer.log}", highlight=False)
        if izer.ok and result.latency_cycles is not None:
            console.print(f"posenas' latency estimate for the same network: {result.latency_cycles:,} cycles")
        if result.izer_agrees is not None:
            same = ", ".join(f"{head} {'identical' if ok else '[red]DIFFERENT[/]'}" for head, ok in result.izer_agrees.items())
            console.print(f"ai8x-synthesis' own simulation vs posenas' expected outputs: {same}")


__all__ = ["register", "run_export", "trial_checkpoint"]
