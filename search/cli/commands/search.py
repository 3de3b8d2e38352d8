"""``posenas search`` and ``posenas plot``: run a study (one worker of it) and draw its fronts."""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from posenas.errors import StudyError, UsageError
from posenas.files import check_output_folder, output_folder
from posenas.search.cli import arguments, options
from posenas.space.baselines import baseline_names

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from posenas.search.records import TrialRecord
    from posenas.search.settings import StudySettings
    from posenas.search.timeplan import Clock


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

    from posenas.budgets.device import load_budget
    from posenas.search.inputs import cache_for, check_study_inputs, study_data_root, study_teacher
    from posenas.search.records import ATTR_STANDALONE, records_of
    from posenas.search.storage import open_storage, storage_errors, study_lock
    from posenas.search.study import (
        TrialObjective,
        directions,
        enqueue_baselines,
        make_sampler,
        name_objectives,
        new_work_count,
    )
    from posenas.search.supernet_search import CALIBRATION_IMAGES
    from posenas.search.timeplan import Clock
    from posenas.search.trials import StudyRun, record_run
    from posenas.search.worker import REPEATS_BEFORE_STOP, run_worker

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial is reported in one line, by the worker
    started = time.perf_counter()
    settings = _settings(args)
    arguments.device(args.device)
    scorer = "train" if args.fixed else settings.scorer  # --fixed trains its one baseline
    if args.supernet and scorer != "supernet":
        raise UsageError("--supernet needs --scorer supernet")
    if args.retrain < 0:
        raise UsageError(f"--retrain must be >= 0, got {args.retrain}")
    name = settings.name + (f"-fixed-{args.fixed}" if args.fixed else "")
    check_study_inputs(settings, args.data, args.teacher)  # before the folder, the database or the data exist
    out = output_folder(args.out or Path("posenas-runs") / name, "search folder")
    storage_url = args.storage or f"sqlite:///{(out / 'study.db').resolve()}"
    say = lambda line: console.print(line, highlight=False)  # noqa: E731
    lock = lambda: study_lock(storage_url, name)  # noqa: E731
    clock = Clock(settings.timeout_minutes, on_cut=lambda cut: say(f"time budget: {cut}"))
    if clock.limited:
        say(
            f"time budget {settings.timeout_minutes:g} min for data, teacher, "
            + ("supernet, scoring and retraining" if scorer == "supernet" else "and trials")
        )
    # Workers starting together on one study take turns here: one creates the schema, the study, the data,
    # the teacher and the baselines; the others find them made.
    with study_lock(storage_url, name), storage_errors(storage_url):
        storage = open_storage(storage_url)
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            directions=directions(settings),
            sampler=make_sampler(settings),
            load_if_exists=True,
        )
        if [d.name.lower() for d in study.directions] != directions(settings):
            raise StudyError(f"study {name} in {storage_url} has other objectives; use another --out or --storage")
        name_objectives(study, settings.objectives)
        if args.fixed:
            enqueue_baselines(study, settings.space, [args.fixed])
        elif not args.no_baselines:
            enqueue_baselines(study, settings.space)
        data = study_data_root(settings, args.data, out, console)
        prepared = study_teacher(settings, args.teacher, data, out, console, device=args.device, clock=clock)
        teacher = None if prepared is None else prepared.teacher
        cache = cache_for(prepared, data, settings.space.input_size)
        supernet_folder = (Path(args.supernet) if args.supernet else out / "supernet") if scorer == "supernet" else None
        record_run(
            study,
            StudyRun(
                out=str(out.resolve()),
                data=str(Path(data).resolve()),
                teacher=None if prepared is None else str(Path(prepared.root).resolve()),
                supernet=None if supernet_folder is None else str(supernet_folder.resolve()),
                train=settings.train.to_dict(),
                seed=settings.seed,
                calibration_images=CALIBRATION_IMAGES,
            ),
        )
    clock.finish("teacher")
    if cache is None and teacher is not None and not settings.train.augment:
        console.print("[yellow]the teacher's cache is for other data: it runs live on every batch[/yellow]")
    trials = 1 if args.fixed else settings.trials
    objective = TrialObjective(
        settings,
        load_budget(settings.budget),
        data,
        out / "trials",
        teacher,
        cache,
        train_infeasible=bool(args.fixed),
        device=args.device,
        on_trial=say,
    )
    if scorer == "supernet":
        from posenas.search.supernet_search import supernet_objective

        # Under the study lock: workers sharing --out train the supernet once; the others wait and load it.
        with lock():
            objective = supernet_objective(
                settings,
                objective.budget,
                data,
                out,
                supernet=args.supernet,
                teacher_cache=cache,
                console=console,
                device=args.device,
                clock=clock,
            )
        objective.on_trial = objective.on_trial or say
    else:
        clock.finish("supernet")
        clock.finish("retrain")
    console.print(
        f"study {name} ({storage_url}): {new_work_count(study)} of {trials} networks done; scorer {scorer}, "
        f"sampler {settings.sampler}, objectives {', '.join(settings.objectives)}, budget {settings.budget}"
    )
    timeout = clock.seconds_for("search") if clock.limited else None
    if timeout is not None:
        finish = time.strftime("%H:%M:%S", time.localtime(time.time() + timeout))
        say(f"scoring trials for up to {timeout:.0f} s (until {finish}); the time budget ends in {clock.left():.0f} s")
    try:
        worker = run_worker(study, objective, trials, timeout_s=timeout, lock=lock, say=say)
        clock.finish("search")
        if worker.stopped_by == "timeout":
            clock.cut(
                f"search: its {timeout:.0f} s ran out at {new_work_count(study)} of {trials} networks "
                "(rerun the command to go on)"
            )
        elif worker.stopped_by == "exhausted":
            console.print(
                f"stopped: the last {REPEATS_BEFORE_STOP} trials found no network that was not scored already"
            )
        if scorer == "supernet" and args.retrain:
            _retrain(study, settings, objective, data, out, clock, lock, cache, args.device, console, args.retrain)
    except KeyboardInterrupt:
        records = records_of(study.get_trials(deepcopy=False), study.user_attrs.get(ATTR_STANDALONE))
        console.print(front_table(records, settings, f"Pareto front of {name} so far"))
        _summary(records, console, time.perf_counter() - started, clock)
        console.print(
            f"interrupted after {new_work_count(study)} of {trials} networks; the trial in flight is queued "
            "again: rerun the same command to resume"
        )
        raise
    records = records_of(study.get_trials(deepcopy=False), study.user_attrs.get(ATTR_STANDALONE))
    if args.fixed:  # one network, perhaps over budget: its own line rather than a front
        for r in records:
            fits = "fits" if r.feasible else "does not fit " + settings.budget
            console.print(
                f"{args.fixed}: AP {r.ap:.3f} (QAT), {r.float_ap:.3f} (float), {r.params:,} parameters, {fits}"
            )
    console.print(front_table(records, settings, f"Pareto front of {name}"))
    if any(r.standalone_ap == r.standalone_ap for r in records):
        console.print(retrained_table(records))
    counts = _summary(records, console, time.perf_counter() - started, clock)
    report = _write_plots(records, out / "plots", name, console, settings.quality)
    _verdict(study, records, settings, out, storage_url, report, counts, clock, time.perf_counter() - started, console)
    return 0


SUMMARY = "summary.json"  # OUT/summary.json: the front, the recommendation and the next steps


def _verdict(
    study,
    records,
    settings,
    out: Path,
    storage: str,
    report: Path | None,
    counts: dict,
    clock: Clock,
    seconds: float,
    console: Console,
) -> None:
    """The recommended network, why, and the commands of the next steps; all of it also in OUT/summary.json."""
    import json

    from posenas.errors import PosenasError
    from posenas.files import atomic_write_text
    from posenas.search.records import pareto_front
    from posenas.search.trials import ATTR_RUN, NoWeights, study_run, trial_weights
    from posenas.search.verdict import standalone_ap, verdict

    def checkpoint(number: int) -> str | None:
        """The trial's stand-alone best.pt, or where ``posenas train --trial`` will put it; None: unknown
        (a missing file, a study without its run record), which only drops the predict line."""
        try:
            try:
                return str(trial_weights(study, number, storage))
            except NoWeights:
                return str(study_run(study).folder_of(number) / "best.pt")
        except PosenasError:
            return None

    run = study.user_attrs.get(ATTR_RUN) or {}
    chosen = verdict(
        records,
        study=study.study_name,
        storage_url=storage,
        data=run.get("data"),
        report=None if report is None else str(report.resolve()),
        checkpoint=checkpoint,
        objective=settings.quality,
        latency="latency" in settings.objectives,
    )
    if chosen.record is None:
        console.print(f"[bold]no recommendation:[/] {chosen.reason}")
    else:
        r = chosen.record
        console.print(
            f"[bold]recommended: trial {r.number} {r.baseline or r.name}[/] ({r.params:,} parameters, "
            f"{r.latency_ms:.2f} ms): {chosen.reason}",
            highlight=False,
        )
        console.print("next steps:")
        for step in chosen.next_steps:
            console.print(f"  {step}", highlight=False, markup=False)
    front = pareto_front(records, latency="latency" in settings.objectives, objective=settings.quality)
    summary = {
        "study": study.study_name,
        "storage": storage,
        "folder": str(out.resolve()),
        "minutes": round(seconds / 60, 2),
        "budget_minutes": clock.minutes,
        "cuts": list(clock.cuts),
        "counts": counts,
        **chosen.to_dict(),
        "front": [
            {
                "trial": r.number,
                "name": r.baseline or r.name,
                "standalone_ap": _finite(standalone_ap(r)),
                "score": {settings.quality: _finite(_score(r, settings))},
                "score_is_estimate": r.scorer == "supernet",
                "params": r.params,
                "latency_ms": _finite(r.latency_ms),
                "fits": r.feasible,
            }
            for r in front
        ],
    }
    atomic_write_text(out / SUMMARY, json.dumps(summary, indent=2) + "\n")
    console.print(f"summary: {out / SUMMARY}", highlight=False)


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _score(record: TrialRecord, settings: StudySettings) -> float:
    from posenas.search.records import quality_value

    return quality_value(record, settings.quality)


def _retrain(study, settings, objective, data, out, clock, lock, cache, device, console, count) -> None:
    """The supernet search's last stage (``search.retrain``), shown with a progress bar per network."""
    from posenas.search.records import ATTR_STANDALONE, records_of
    from posenas.search.report import TrainingDisplay
    from posenas.search.retrain import retrain_front

    records = records_of(study.get_trials(deepcopy=False), study.user_attrs.get(ATTR_STANDALONE))
    retrain_front(
        study,
        settings,
        records,
        objective.scorer,
        data,
        out,
        clock,
        lock=lock,
        teacher_cache=cache,
        device=device,
        say=lambda line: console.print(line, highlight=False),
        display=lambda epochs: TrainingDisplay(console, epochs, settings.train.batch_size),
        count=count,
    )


def front_table(records: list[TrialRecord], settings: StudySettings, title: str) -> Table:
    """The front, best first by the study's ranking score: the stand-alone AP where a network was trained
    on its own, the score that ranked it (an estimate when the supernet gave it), size, latency, fit."""
    from rich.table import Table

    from posenas.search.records import QUALITY_NAMES, pareto_front, quality, quality_value
    from posenas.search.verdict import standalone_ap

    front = pareto_front(records, latency="latency" in settings.objectives, objective=settings.quality)
    front.sort(key=lambda r: (-quality(r, settings.quality), r.params))
    estimated = any(r.scorer == "supernet" for r in front)
    score = QUALITY_NAMES[settings.quality] + (" (supernet estimate)" if estimated else " (QAT, trained)")
    form = "{:.3f}" if settings.quality == "ap" else "{:.5f}"
    table = Table("trial", "name", "AP stand-alone", score, "parameters", "latency ms", "fits", title=title)
    for r in front:
        table.add_row(
            str(r.number),
            r.baseline or r.name,
            _number(standalone_ap(r), "{:.3f}"),
            _number(quality_value(r, settings.quality), form),
            f"{r.params:,}",
            _number(r.latency_ms, "{:.2f}"),
            "yes" if r.feasible else "no",
        )
    if estimated:
        table.caption = "AP stand-alone: after training on its own ('-': not trained); the estimate only ranks networks"
    return table


def retrained_table(records: list[TrialRecord]) -> Table:
    """The networks the last stage trained stand-alone (the front's best and the baselines), best first."""
    from rich.table import Table

    table = Table(
        "trial",
        "name",
        "AP stand-alone (QAT)",
        "supernet loss",
        "supernet fg loss",
        "supernet AP",
        "parameters",
        "latency ms",
        title="Trained stand-alone from the supernet's weights, the same schedule for all",
    )
    rows = sorted((r for r in records if r.standalone_ap == r.standalone_ap), key=lambda r: -r.standalone_ap)
    for r in rows:
        table.add_row(
            str(r.number),
            r.baseline or r.name,
            f"{r.standalone_ap:.3f}",
            _number(r.val_loss, "{:.5f}"),
            _number(r.fg_loss, "{:.4f}"),
            _number(r.ap, "{:.3f}"),
            f"{r.params:,}",
            f"{r.latency_ms:.2f}",
        )
    return table


def _number(value: float, form: str) -> str:
    return "-" if math.isnan(value) else form.format(value)


def _summary(
    records: list[TrialRecord], console: Console, seconds: float, clock: Clock | None = None
) -> dict[str, int]:
    scored = sum(1 for r in records if r.trained and r.reused_from is None)
    rejected = sum(1 for r in records if r.state == "COMPLETE" and not r.feasible)
    reused = sum(1 for r in records if r.reused_from is not None)
    failed = sum(1 for r in records if r.state == "FAIL")
    retrained = sum(1 for r in records if r.standalone_ap == r.standalone_ap)
    counts = {
        "trials": len(records),
        "scored": scored,
        "rejected": rejected,
        "reused": reused,
        "failed": failed,
        "retrained": retrained,
    }
    console.print(
        f"{len(records)} trials: {scored} scored, {rejected} rejected before scoring, {reused} reused, "
        f"{failed} failed"
        + (f"; {retrained} retrained stand-alone" if retrained else "")
        + f"; this worker ran {seconds / 60:.1f} min"
    )
    if clock is not None and clock.limited:
        if clock.cuts:
            console.print(f"what the {clock.minutes:g}-minute budget cut:")
            for cut in clock.cuts:
                console.print(f"  - {cut}", highlight=False)
        else:
            console.print(f"the {clock.minutes:g}-minute budget cut nothing")
    return counts


def _write_plots(
    records: list[TrialRecord], folder: Path, title: str, console: Console, objective: str = "ap"
) -> Path | None:
    """The report page (None when plotly is missing)."""
    try:
        from posenas.search.plots import write_plots
    except ImportError:  # plotly missing: the table above still holds the front
        console.print("plots skipped: plotly is not installed")
        return None
    paths = write_plots(records, folder, title, objective=objective)
    console.print("plots: " + ", ".join(str(p) for p in paths))
    return paths[0] if paths else None


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
    _write_plots(records, Path(args.out), args.study, console, objective)
    return 0
