"""``posenas search`` and ``posenas plot``: run a study (one worker of it) and draw its fronts."""

from __future__ import annotations

import argparse
import dataclasses
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from posenas.errors import StudyError, UsageError
from posenas.files import check_output_folder
from posenas.search.cli import arguments, options
from posenas.space.baselines import baseline_names

if TYPE_CHECKING:
    from rich.console import Console

    from posenas.search.settings import StudySettings


def register(sub: argparse._SubParsersAction) -> None:
    search = sub.add_parser("search", help="multi-objective architecture search under hard device budgets")
    search.add_argument(
        "--budget",
        type=options.InputPath(),
        help="max78000 (default), max78002 or a budget file; picks studies/<budget>.yaml "
        "when there is one and no --study",
    )
    search.add_argument("--study", type=options.InputPath(), help="a study file (default: studies/<budget>.yaml)")
    search.add_argument(
        "--out",
        type=options.OutputFolder(),
        help="artifacts, data and the local study file (default posenas-runs/<study>)",
    )
    search.add_argument(
        "--storage",
        type=options.Storage(),
        help="an RDB URL shared by workers, e.g. postgresql://user@host/db (default: sqlite file in --out)",
    )
    search.add_argument("--trials", type=options.COUNT, help="completed trials in all, rejected ones included")
    search.add_argument(
        "--timeout-minutes",
        type=options.Number(0, 10**5, low_open=True),
        help="wall-clock budget of this command: data, teacher, "
        "supernet, scoring and retraining are sized to end within it (default: the study's, 19)",
    )
    search.add_argument("--sampler", choices=("nsga2", "tpe"))
    search.add_argument("--seed", type=options.SEED)
    search.add_argument(
        "--objectives", type=options.Text(), help="comma-separated: ap or loss first, then params and/or latency"
    )
    search.add_argument(
        "--data", type=options.InputPath(), help="a COCO root (default: the study's; built-in synthetic people)"
    )
    search.add_argument("--teacher", type=options.InputPath(), help="a teacher folder from posenas teacher, or 'none'")
    search.add_argument("--epochs", type=options.EPOCHS, help="per-trial epochs")
    search.add_argument("--qat-epochs", type=options.QAT_EPOCHS, help="per-trial QAT epochs (the last ones)")
    search.add_argument("--train-images", type=options.COUNT, help="per-trial training images")
    search.add_argument("--batch-size", type=options.BATCH, help="per-trial batch size")
    search.add_argument("--val-images", type=options.COUNT, help="per-trial validation images")
    search.add_argument("--device", type=options.Device(), help="cpu or cuda (default: cuda if present)")
    search.add_argument(
        "--scorer",
        choices=("supernet", "train"),
        help="supernet: trials are subnets of a weight-sharing supernet trained once per study, scored "
        "in seconds, and the front's best are retrained stand-alone at the end; train: each trial "
        "trains stand-alone (default: the study's, supernet)",
    )
    search.add_argument(
        "--supernet",
        type=options.InputPath(),
        help="with --scorer supernet: a folder from posenas supernet for this study",
    )
    search.add_argument(
        "--score-arithmetic",
        choices=("qat", "float"),
        help="with --scorer supernet: run each subnet in QAT at its weight bits, or in float (default: the study's)",
    )
    search.add_argument(
        "--finetune-steps",
        type=options.Integer(0, 100_000),
        metavar="K",
        help="with --scorer supernet: train each subnet K steps from its inherited weights before "
        "scoring it (default: the study's)",
    )
    search.add_argument(
        "--retrain",
        type=options.Integer(0, 100),
        default=3,
        metavar="N",
        help="with --scorer supernet: train the front's N best networks stand-alone at the end, in the "
        "time left (default 3; 0: none)",
    )
    arguments.add_lowbit_arguments(search)
    search.add_argument("--no-baselines", action="store_true", help="do not enqueue the baselines")
    search.add_argument(
        "--fixed",
        choices=baseline_names(),
        help="run this baseline alone as a fixed trial (trained even if over budget)",
    )
    search.set_defaults(handler=run_search)

    plot = sub.add_parser(
        "plot", help="a study's report page (Plotly): quality vs parameters and latency, stand-alone results"
    )
    plot.add_argument(
        "--study", type=options.InputPath(), required=True, help="the study name (as printed by posenas search)"
    )
    plot.add_argument(
        "--storage",
        type=options.Storage(),
        required=True,
        help="the study's storage URL (sqlite:///... or postgresql://...)",
    )
    plot.add_argument("--out", type=options.OutputFolder(), required=True, help="the folder for the HTML files")
    plot.set_defaults(handler=run_plot)


def _settings(args: argparse.Namespace) -> StudySettings:
    from posenas.budgets.device import load_budget
    from posenas.search.settings import load_settings

    study = args.study or _default_study(args.budget or "max78000")
    settings = load_settings(study)
    objectives = tuple(o.strip() for o in args.objectives.split(",")) if args.objectives else None
    settings = settings.with_overrides(
        budget=args.budget,
        trials=args.trials,
        timeout_minutes=args.timeout_minutes,
        sampler=args.sampler,
        seed=args.seed,
        scorer=args.scorer,
        score_arithmetic=args.score_arithmetic,
        finetune_steps=args.finetune_steps,
        objectives=objectives,
        train_epochs=args.epochs,
        train_train_images=args.train_images,
        train_val_images=args.val_images,
        train_seed=args.seed,
        train_qat_epochs=args.qat_epochs,
        train_batch_size=args.batch_size,
        train_lowbit=_lowbit(settings, args),
    )
    load_budget(settings.budget)  # an unknown budget fails here, in one line
    return settings


def _lowbit(settings: StudySettings, args: argparse.Namespace) -> dict | None:
    """The study's low-bit recipe with the flags' changes, or None when no flag was given."""
    overrides = arguments.lowbit_overrides(args)
    return {**dataclasses.asdict(settings.train.lowbit), **overrides} if overrides else None


def _default_study(budget: str) -> str:
    """The built-in study named like the budget (max78000, max78002); for a budget file, the default."""
    return budget if resources.files("posenas.studies").joinpath(f"{budget}.yaml").is_file() else "max78000"


def run_search(args: argparse.Namespace, console: Console) -> int:
    import optuna

    from posenas.search.cli.rendering import ConsoleEvents, front_table, print_study_counts, print_study_result
    from posenas.search.pipeline import StudyInterrupted, run_study

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial is reported in one line, by the worker
    settings = _settings(args)
    arguments.device(args.device)
    if args.supernet and (settings.scorer != "supernet" or args.fixed):
        raise UsageError("--supernet needs --scorer supernet")
    name = settings.name + (f"-fixed-{args.fixed}" if args.fixed else "")
    with ConsoleEvents(console) as events:
        try:
            result = run_study(
                settings,
                out=args.out or Path("posenas-runs") / name,
                storage=args.storage,
                events=events,
                data=args.data,
                teacher=args.teacher,
                supernet=args.supernet,
                retrain=args.retrain,
                baselines=not args.no_baselines,
                fixed=args.fixed,
                device=args.device,
            )
        except StudyInterrupted as stopped:
            so_far = stopped.result
            console.print(front_table(so_far, f"Pareto front of {so_far.study} so far"))
            print_study_counts(so_far, console)
            console.print(
                f"interrupted after {so_far.networks_done} of {so_far.trials_wanted} networks; the trial in flight "
                "is queued again: rerun the same command to resume"
            )
            raise
    print_study_result(result, console)
    return 0


def run_plot(args: argparse.Namespace, console: Console) -> int:
    import optuna

    from posenas.search.records import records_of
    from posenas.search.storage import open_storage

    check_output_folder(args.out, "plot folder")
    if args.storage.startswith("sqlite:///") and not Path(args.storage[len("sqlite:///") :]).is_file():
        raise StudyError(f"no study database {args.storage[len('sqlite:///') :]} (plot reads a study, it makes none)")
    storage = open_storage(args.storage)
    try:
        study = optuna.load_study(study_name=args.study, storage=storage)
    except KeyError:
        raise StudyError(f"no study {args.study!r} in {args.storage}") from None
    from posenas.search.records import ATTR_STANDALONE, QUALITY_FIELDS
    from posenas.search.study import OBJECTIVE_LABELS

    first = (study.metric_names or [""])[0]
    objective = next((name for name, label in OBJECTIVE_LABELS.items() if label == first), "ap")
    objective = objective if objective in QUALITY_FIELDS else "ap"  # unnamed (older) studies: AP
    records = records_of(study.get_trials(deepcopy=False), study.user_attrs.get(ATTR_STANDALONE))
    from posenas.search.cli.rendering import ConsoleEvents
    from posenas.search.pipeline import write_report

    report = write_report(records, Path(args.out), args.study, objective, ConsoleEvents(console))
    if report is not None:
        console.print(f"plots: {report}", highlight=False)
    return 0
