"""``posenas search`` and ``posenas plot``: run a study (one worker of it) and draw its fronts."""

from __future__ import annotations

import argparse
import math
import time
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from posenas.errors import StudyError, UsageError
from posenas.space.baselines import baseline_names

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from posenas.search.records import TrialRecord
    from posenas.search.settings import StudySettings


def register(sub: argparse._SubParsersAction) -> None:
    search = sub.add_parser("search", help="multi-objective architecture search under hard device budgets")
    search.add_argument("--budget", help="max78000 (default), max78002 or a budget file; picks studies/<budget>.yaml "
                        "when there is one and no --study")  # fmt: skip
    search.add_argument("--study", help="a study file (default: studies/<budget>.yaml)")
    search.add_argument("--out", help="artifacts, data and the local study file (default posenas-runs/<study>)")
    search.add_argument("--storage", help="an RDB URL shared by workers, e.g. postgresql://user@host/db "
                        "(default: sqlite file in --out)")  # fmt: skip
    search.add_argument("--trials", type=int, help="completed trials in all, rejected ones included")
    search.add_argument("--timeout-minutes", type=float, help="this worker stops starting trials after this")
    search.add_argument("--sampler", choices=("nsga2", "tpe"))
    search.add_argument("--seed", type=int)
    search.add_argument("--objectives", help="comma-separated, from ap,params,latency (ap first)")
    search.add_argument("--data", help="a COCO root (default: the study's; built-in synthetic people)")
    search.add_argument("--teacher", help="a teacher folder from posenas teacher, or 'none'")
    search.add_argument("--epochs", type=int, help="per-trial epochs")
    search.add_argument("--qat-epochs", type=int, help="per-trial QAT epochs (the last ones)")
    search.add_argument("--train-images", type=int, help="per-trial training images")
    search.add_argument("--batch-size", type=int, help="per-trial batch size")
    search.add_argument("--val-images", type=int, help="per-trial validation images")
    search.add_argument("--device", help="cpu or cuda (default: cuda if present)")
    search.add_argument("--scorer", choices=("train", "supernet"), default="train",
                        help="train: each trial trains stand-alone; supernet: trials are subnets of a weight-sharing "
                             "supernet trained once per study, scored in seconds (default train)")  # fmt: skip
    search.add_argument("--supernet", help="with --scorer supernet: a folder from posenas supernet for this study")
    search.add_argument("--no-baselines", action="store_true", help="do not enqueue the baselines")
    search.add_argument("--fixed", choices=baseline_names(),
                        help="run this baseline alone as a fixed trial (trained even if over budget)")  # fmt: skip
    search.set_defaults(handler=run_search)

    plot = sub.add_parser("plot", help="Plotly HTML of a study: AP vs parameters and latency, hypervolume")
    plot.add_argument("--study", required=True, help="the study name (as printed by posenas search)")
    plot.add_argument("--storage", required=True, help="the study's storage URL (sqlite:///... or postgresql://...)")
    plot.add_argument("--out", required=True, help="the folder for the HTML files")
    plot.set_defaults(handler=run_plot)


def _settings(args: argparse.Namespace) -> "StudySettings":
    from posenas.budgets.device import load_budget
    from posenas.search.settings import load_settings

    study = args.study or _default_study(args.budget or "max78000")
    settings = load_settings(study)
    objectives = tuple(o.strip() for o in args.objectives.split(",")) if args.objectives else None
    settings = settings.with_overrides(
        budget=args.budget,
        trials=args.trials, timeout_minutes=args.timeout_minutes, sampler=args.sampler, seed=args.seed,
        objectives=objectives, train_epochs=args.epochs, train_train_images=args.train_images,
        train_val_images=args.val_images, train_seed=args.seed,
        train_qat_epochs=args.qat_epochs, train_batch_size=args.batch_size,
    )  # fmt: skip
    load_budget(settings.budget)  # an unknown budget fails here, in one line
    return settings


def _default_study(budget: str) -> str:
    """The built-in study named like the budget (max78000, max78002); for a budget file, the default."""
    return budget if resources.files("posenas.studies").joinpath(f"{budget}.yaml").is_file() else "max78000"


def _data_root(settings: "StudySettings", args: argparse.Namespace, out: Path, console: "Console") -> Path:
    from posenas.posenet.pose import synth
    from posenas.posenet.pose.coco import annotation_path

    if args.data or settings.data.root:
        return Path(args.data or settings.data.root)  # checked by the loader, with a one-line error
    d = settings.data
    root = out / "data" / f"synth-seed{d.synthetic_seed}-{d.synthetic_train}-{d.synthetic_val}"
    if not annotation_path(root, "val").is_file():
        console.print(f"making the built-in synthetic people: {d.synthetic_train} + {d.synthetic_val} images -> {root}")
        synth.write_coco_root(root, train=d.synthetic_train, val=d.synthetic_val, seed=d.synthetic_seed)
    return root


def _teacher(settings: "StudySettings", args: argparse.Namespace, data: Path, out: Path, console: "Console"):
    """(teacher, cache) from --teacher, or prepared once per --out as the study file says."""
    from posenas.posenet.nets.distill import load_prepared_teacher
    from posenas.search.report import prepare_teacher_with_progress

    if args.teacher == "none" or (args.teacher is None and settings.teacher.kind == "none"):
        return None, None
    if args.teacher:
        folder = Path(args.teacher)
    else:
        t = settings.teacher
        folder = out / ("teacher-" + (t.arch or "checkpoint"))
        if not (folder / "teacher.json").is_file():
            console.print(f"preparing the teacher ({t.arch or t.checkpoint}) -> {folder}")
            prepare_teacher_with_progress(data, folder, console, checkpoint=t.checkpoint, arch=t.arch, epochs=t.epochs,
                            train_images=t.train_images, device=args.device)  # fmt: skip
    prepared = load_prepared_teacher(folder)
    same = prepared.info.data == str(data.resolve()) and prepared.info.input_size == settings.space.input_size
    return prepared.teacher, prepared.cache if same else None


def run_search(args: argparse.Namespace, console: "Console") -> int:
    import optuna

    from posenas.budgets.device import load_budget
    from posenas.search.records import records_of
    from posenas.search.study import (
        TrialObjective,
        complete_count,
        directions,
        enqueue_baselines,
        make_sampler,
        open_storage,
    )

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.perf_counter()
    settings = _settings(args)
    name = settings.name + (f"-fixed-{args.fixed}" if args.fixed else "")
    out = Path(args.out or Path("posenas-runs") / name)
    out.mkdir(parents=True, exist_ok=True)
    storage_url = args.storage or f"sqlite:///{(out / 'study.db').resolve()}"
    storage = open_storage(storage_url)
    data = _data_root(settings, args, out, console)
    teacher, cache = _teacher(settings, args, data, out, console)
    if cache is None and teacher is not None and not settings.train.augment:
        console.print("[yellow]the teacher's cache is for other data: it runs live on every batch[/yellow]")
    study = optuna.create_study(study_name=name, storage=storage, directions=directions(settings),
                                sampler=make_sampler(settings), load_if_exists=True)  # fmt: skip
    if [d.name.lower() for d in study.directions] != directions(settings):
        raise StudyError(f"study {name} in {storage_url} has other objectives; use another --out or --storage")
    from posenas.search.study import name_objectives

    name_objectives(study, settings.objectives)
    trials = 1 if args.fixed else settings.trials
    if args.fixed:
        enqueue_baselines(study, settings.space, [args.fixed])
    elif not args.no_baselines:
        enqueue_baselines(study, settings.space)
    objective = TrialObjective(settings, load_budget(settings.budget), data, out / "trials", teacher, cache,
                               train_infeasible=bool(args.fixed), device=args.device,
                               on_trial=lambda line: console.print(line))  # fmt: skip
    if args.scorer == "supernet" and not args.fixed:
        from posenas.search.supernet_search import supernet_objective

        objective = supernet_objective(settings, objective.budget, data, out, supernet=args.supernet,
                                       teacher_cache=cache, console=console, device=args.device)  # fmt: skip
        objective.on_trial = objective.on_trial or (lambda line: console.print(line))
    elif args.supernet:
        raise UsageError("--supernet needs --scorer supernet")
    already = complete_count(study)
    console.print(f"study {name} ({storage_url}): {already} of {trials} trials done; sampler {settings.sampler}, "
                  f"objectives {', '.join(settings.objectives)}, budget {settings.budget}")  # fmt: skip
    if already < trials:
        timeout = None if settings.timeout_minutes is None else settings.timeout_minutes * 60
        study.optimize(
            objective, timeout=timeout, catch=(Exception,),
            callbacks=[optuna.study.MaxTrialsCallback(trials, states=(optuna.trial.TrialState.COMPLETE,))],
        )  # fmt: skip
    records = records_of(study.get_trials(deepcopy=False))
    if args.fixed:  # one network, perhaps over budget: its own line rather than a front
        for r in records:
            fits = "fits" if r.feasible else "does not fit " + settings.budget
            console.print(f"{args.fixed}: AP {r.ap:.3f} (QAT), {r.float_ap:.3f} (float), {r.params:,} parameters, {fits}")
    console.print(front_table(records, settings, f"Pareto front of {name}"))
    _summary(records, console, time.perf_counter() - started)
    _write_plots(records, out / "plots", name, console)
    return 0


def front_table(records: list["TrialRecord"], settings: "StudySettings", title: str) -> "Table":
    from rich.table import Table

    from posenas.search.records import pareto_front

    table = Table("trial", "name", "AP (QAT)", "AP (float)", "parameters", "latency ms", "train s", title=title)
    for r in pareto_front(records, latency="latency" in settings.objectives):
        table.add_row(str(r.number), r.baseline or r.name, f"{r.ap:.3f}",
                      "-" if math.isnan(r.float_ap) else f"{r.float_ap:.3f}", f"{r.params:,}",
                      f"{r.latency_ms:.2f}", f"{r.seconds:.0f}")  # fmt: skip
    return table


def _summary(records: list["TrialRecord"], console: "Console", seconds: float) -> None:
    trained = sum(1 for r in records if r.trained and r.reused_from is None)
    rejected = sum(1 for r in records if r.state == "COMPLETE" and not r.feasible)
    reused = sum(1 for r in records if r.reused_from is not None)
    failed = sum(1 for r in records if r.state == "FAIL")
    console.print(f"{len(records)} trials: {trained} trained, {rejected} rejected before training, "
                  f"{reused} reused, {failed} failed; this worker ran {seconds / 60:.1f} min")  # fmt: skip


def _write_plots(records: list["TrialRecord"], folder: Path, title: str, console: "Console") -> None:
    try:
        from posenas.search.plots import write_plots
    except ImportError:  # plotly missing: the table above still holds the front
        console.print("plots skipped: plotly is not installed")
        return
    paths = write_plots(records, folder, title)
    console.print("plots: " + ", ".join(str(p) for p in paths))


def run_plot(args: argparse.Namespace, console: "Console") -> int:
    import optuna

    from posenas.search.records import records_of
    from posenas.search.study import open_storage

    storage = open_storage(args.storage)
    try:
        study = optuna.load_study(study_name=args.study, storage=storage)
    except KeyError:
        raise StudyError(f"no study {args.study!r} in {args.storage}") from None
    _write_plots(records_of(study.get_trials(deepcopy=False)), Path(args.out), args.study, console)
    return 0

