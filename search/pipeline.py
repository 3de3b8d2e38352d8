"""A search from start to end, as one library call: ``run_study(settings, out=..., events=...)``.

It owns the whole life cycle of one worker of a study: the data, the teacher, the supernet (or nothing,
with the ``train`` scorer), the trials, the retraining of the front's best, the report page, the verdict
and ``OUT/summary.json``, and the clock that keeps all of it within the study's time budget. What happens
is reported to ``events`` (``search.events``); what came of it is returned as a ``StudyResult``, whose
absent values are ``None``. The command line (``posenas search``) parses its flags into the arguments
of this call and renders the result; a test or a benchmark calls it directly.

Several workers may run it on one study at once (a shared PostgreSQL ``storage``): they take turns
under the study lock to create the study, the data, the teacher and the supernet, then score trials
side by side.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from posenas.errors import StudyError, UsageError
from posenas.events import Events
from posenas.search.records import TrialRecord
from posenas.search.settings import StudySettings

__all__ = ["SUMMARY", "StudyCounts", "StudyInterrupted", "StudyResult", "TrialSummary", "run_study", "write_report"]

SUMMARY = "summary.json"  # OUT/summary.json: the front, the recommendation and the next steps


@dataclass(frozen=True)
class TrialSummary:
    """One trial as a person reads it; ``None`` where a value is absent (not scored, not retrained, no
    cycle model).

    ``score`` is the value of the study's first objective (AP or a loss) from the study's scorer, an
    estimate when ``score_is_estimate`` (the supernet ranked it); ``standalone_ap`` is the AP the network
    reached trained on its own; ``supernet_*`` are the scorer's numbers when it was the supernet."""

    trial: int
    name: str
    params: int
    fits: bool
    scorer: str
    score: float | None
    score_is_estimate: bool
    standalone_ap: float | None
    ap: float | None
    float_ap: float | None
    val_loss: float | None
    fg_loss: float | None
    latency_ms: float | None

    @classmethod
    def of(cls, record: TrialRecord, objective: str) -> TrialSummary:
        from posenas.search.records import quality_value
        from posenas.search.verdict import standalone_ap

        return cls(
            trial=record.number,
            name=record.baseline or record.name,
            params=record.params,
            fits=record.feasible,
            scorer=record.scorer,
            score=_present(quality_value(record, objective)),
            score_is_estimate=record.scorer == "supernet",
            standalone_ap=_present(standalone_ap(record)),
            ap=_present(record.ap),
            float_ap=_present(record.float_ap),
            val_loss=_present(record.val_loss),
            fg_loss=_present(record.fg_loss),
            latency_ms=_present(record.latency_ms),
        )


@dataclass(frozen=True)
class StudyCounts:
    """How many trials the study holds, and what became of them."""

    trials: int
    scored: int
    rejected: int
    reused: int
    failed: int
    retrained: int

    @classmethod
    def of(cls, records: list[TrialRecord]) -> StudyCounts:
        return cls(
            trials=len(records),
            scored=sum(1 for r in records if r.trained and r.reused_from is None),
            rejected=sum(1 for r in records if r.state == "COMPLETE" and not r.feasible),
            reused=sum(1 for r in records if r.reused_from is not None),
            failed=sum(1 for r in records if r.state == "FAIL"),
            retrained=sum(1 for r in records if r.standalone_ap == r.standalone_ap),
        )


@dataclass(frozen=True)
class StudyResult:
    """What one worker's run of a study came to.

    ``front`` is the Pareto front, best first by the study's first objective (ties: fewer parameters);
    ``retrained`` the networks trained stand-alone at the end, best first; ``recommended`` the network to
    take (None: nothing that fits was scored), chosen for ``reason``, by a stand-alone AP when
    ``measured``; ``next_steps`` the shell commands that take it further. ``stopped_by`` says why the
    worker stopped starting trials (trials, timeout, exhausted, others; None: interrupted)."""

    study: str
    storage: str
    folder: Path
    budget: str
    scorer: str
    objective: str
    trials_wanted: int
    networks_done: int  # distinct networks scored or rejected (what ``trials_wanted`` counts)
    minutes: float
    budget_minutes: float | None
    cuts: tuple[str, ...]
    counts: StudyCounts
    stopped_by: str | None
    front: tuple[TrialSummary, ...]
    retrained: tuple[TrialSummary, ...]
    fixed: TrialSummary | None = None  # a --fixed baseline run: its one trial
    recommended: TrialSummary | None = None
    reason: str = ""
    measured: bool = False
    next_steps: tuple[str, ...] = ()
    report: Path | None = None
    summary: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``OUT/summary.json`` document."""
        chosen = self.recommended
        return {
            "study": self.study,
            "storage": self.storage,
            "folder": str(self.folder),
            "minutes": round(self.minutes, 2),
            "budget_minutes": self.budget_minutes,
            "cuts": list(self.cuts),
            "counts": vars(self.counts).copy(),
            "recommended": None
            if chosen is None
            else {
                "trial": chosen.trial,
                "name": chosen.name,
                "standalone_ap": chosen.standalone_ap,
                "params": chosen.params,
                "latency_ms": chosen.latency_ms,
            },
            "reason": self.reason,
            "measured": self.measured,
            "next_steps": list(self.next_steps),
            "front": [
                {
                    "trial": r.trial,
                    "name": r.name,
                    "standalone_ap": r.standalone_ap,
                    "score": {self.objective: r.score},
                    "score_is_estimate": r.score_is_estimate,
                    "params": r.params,
                    "latency_ms": r.latency_ms,
                    "fits": r.fits,
                }
                for r in self.front
            ],
        }


class StudyInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``run_study``: the trial in flight is queued again; ``result`` is the study so far
    (no verdict, no report page). A rerun of the same call resumes."""

    def __init__(self, result: StudyResult) -> None:
        super().__init__("interrupted")
        self.result = result


def run_study(
    settings: StudySettings,
    *,
    out: Path,
    storage: str | None = None,
    events: Events | None = None,
    data: str | None = None,
    teacher: str | None = None,
    supernet: str | None = None,
    retrain: int = 3,
    baselines: bool = True,
    fixed: str | None = None,
    device: str | None = None,
) -> StudyResult:
    """Run one worker of the study ``settings`` describes, into the folder ``out``.

    ``storage`` is an RDB URL shared by workers (default: ``OUT/study.db``). ``data`` (a COCO root) and
    ``teacher`` (a prepared teacher folder, or ``"none"``) replace the study's; ``supernet`` is a folder
    from ``posenas supernet`` to score with instead of training one. With the supernet scorer, the
    front's ``retrain`` best networks are trained stand-alone at the end. ``baselines`` enqueues the
    study's baselines; ``fixed`` runs that one baseline alone, trained even if over budget, as the study
    ``<name>-fixed-<baseline>``. Raises ``StudyInterrupted`` on Ctrl-C, a ``PosenasError`` on bad input."""
    import optuna

    from posenas.budgets.device import load_budget
    from posenas.files import output_folder
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

    events = events or Events()
    started = time.perf_counter()
    budget = load_budget(settings.budget)  # an unknown budget fails here, in one line
    scorer = "train" if fixed else settings.scorer  # a fixed baseline trains
    if supernet and scorer != "supernet":
        raise UsageError("a supernet folder scores trials only with the supernet scorer")
    if retrain < 0:
        raise UsageError(f"the number of networks to retrain must be >= 0, got {retrain}")
    name = settings.name + (f"-fixed-{fixed}" if fixed else "")
    checked = check_study_inputs(settings, data, teacher)  # before the folder, the database or the data exist
    if storage:  # a database of its own: reachable (connected and locked once) before anything is written
        with study_lock(storage, name):
            pass
    clock = Clock(settings.timeout_minutes, on_cut=events.cut)
    out = output_folder(out, "search folder")
    storage_url = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    lock: Callable[[], AbstractContextManager[Any]] = lambda: study_lock(storage_url, name)  # noqa: E731
    if clock.limited:
        events.message(
            f"time budget {settings.timeout_minutes:g} min for data, teacher, "
            + ("supernet, scoring and retraining" if scorer == "supernet" else "and trials")
        )
    # Workers starting together on one study take turns here: one creates the schema, the study, the data,
    # the teacher and the baselines; the others find them made.
    with study_lock(storage_url, name), storage_errors(storage_url):
        study = optuna.create_study(
            study_name=name,
            storage=open_storage(storage_url),
            directions=directions(settings),
            sampler=make_sampler(settings),
            load_if_exists=True,
        )
        if [d.name.lower() for d in study.directions] != directions(settings):
            raise StudyError(
                f"study {name} in {storage_url} has other objectives; use another output folder or storage"
            )
        name_objectives(study, settings.objectives)
        if fixed:
            enqueue_baselines(study, settings.space, [fixed])
        elif baselines:
            enqueue_baselines(study, settings.space)
        root = study_data_root(settings, checked or data, out, events)
        prepared = study_teacher(settings, teacher, root, out, events, device=device, clock=clock)
        cache = cache_for(prepared, root, settings.space.input_size)
        supernet_folder = (Path(supernet) if supernet else out / "supernet") if scorer == "supernet" else None
        record_run(
            study,
            StudyRun(
                out=str(out.resolve()),
                data=str(Path(root).resolve()),
                teacher=None if prepared is None else str(Path(prepared.root).resolve()),
                supernet=None if supernet_folder is None else str(supernet_folder.resolve()),
                train=settings.train.to_dict(),
                seed=settings.seed,
                calibration_images=CALIBRATION_IMAGES,
            ),
        )
    clock.finish("teacher")
    teacher_net = None if prepared is None else prepared.teacher
    if cache is None and teacher_net is not None and not settings.train.augment:
        events.message("the teacher's cache is for other data: it runs live on every batch", "warning")
    trials = 1 if fixed else settings.trials
    objective = TrialObjective(
        settings,
        budget,
        root,
        out / "trials",
        teacher_net,
        cache,
        train_infeasible=bool(fixed),
        device=device,
        events=events,
    )
    if scorer == "supernet":
        from posenas.search.supernet_search import supernet_objective

        # Under the study lock: workers sharing the folder train the supernet once; the others wait and load it.
        with lock():
            objective = supernet_objective(
                settings,
                budget,
                root,
                out,
                supernet=supernet,
                teacher_cache=cache,
                events=events,
                device=device,
                clock=clock,
            )
    else:
        clock.finish("supernet")
        clock.finish("retrain")
    events.message(
        f"study {name} ({storage_url}): {new_work_count(study)} of {trials} networks done; scorer {scorer}, "
        f"sampler {settings.sampler}, objectives {', '.join(settings.objectives)}, budget {settings.budget}"
    )
    timeout = clock.seconds_for("search") if clock.limited else None
    if timeout is not None:
        finish = time.strftime("%H:%M:%S", time.localtime(time.time() + timeout))
        events.message(
            f"scoring trials for up to {timeout:.0f} s (until {finish}); the time budget ends in {clock.left():.0f} s"
        )

    def records() -> list[TrialRecord]:
        return records_of(study.get_trials(deepcopy=False), study.user_attrs.get(ATTR_STANDALONE))

    def result(stopped_by: str | None) -> StudyResult:
        done = new_work_count(study)
        return _result(
            records(), settings, name, storage_url, out, scorer, (trials, done), clock, stopped_by, started, fixed
        )

    try:
        worker = run_worker(study, objective, trials, timeout_s=timeout, lock=lock, events=events)
        clock.finish("search")
        if worker.stopped_by == "timeout":
            clock.cut(
                f"search: its {timeout:.0f} s ran out at {new_work_count(study)} of {trials} networks "
                "(rerun the command to go on)"
            )
        elif worker.stopped_by == "exhausted":
            events.message(
                f"stopped: the last {REPEATS_BEFORE_STOP} trials found no network that was not scored already"
            )
        if scorer == "supernet" and retrain:
            from posenas.search.retrain import retrain_front

            retrain_front(
                study,
                settings,
                records(),
                objective.scorer,
                root,
                out,
                clock,
                lock=lock,
                teacher_cache=cache,
                device=device,
                events=events,
                count=retrain,
            )
    except KeyboardInterrupt:
        raise StudyInterrupted(result(None)) from None
    found = records()
    report = write_report(found, out / "plots", name, settings.quality, events)
    return _with_verdict(result(worker.stopped_by), study, found, settings, report, started)


def _present(value: float | None) -> float | None:
    """None for an absent number (NaN, infinite or None), else the number."""
    return None if value is None or not math.isfinite(value) else float(value)


def _result(
    records: list[TrialRecord],
    settings: StudySettings,
    name: str,
    storage: str,
    out: Path,
    scorer: str,
    trials: tuple[int, int],
    clock: Any,
    stopped_by: str | None,
    started: float,
    fixed: str | None,
) -> StudyResult:
    from posenas.search.records import pareto_front, quality

    front = pareto_front(records, latency="latency" in settings.objectives, objective=settings.quality)
    front.sort(key=lambda r: (-quality(r, settings.quality), r.params))
    retrained = sorted((r for r in records if r.standalone_ap == r.standalone_ap), key=lambda r: -r.standalone_ap)
    return StudyResult(
        study=name,
        storage=storage,
        folder=out.resolve(),
        budget=settings.budget,
        scorer=scorer,
        objective=settings.quality,
        trials_wanted=trials[0],
        networks_done=trials[1],
        minutes=(time.perf_counter() - started) / 60,
        budget_minutes=clock.minutes,
        cuts=tuple(clock.cuts),
        counts=StudyCounts.of(records),
        stopped_by=stopped_by,
        front=tuple(TrialSummary.of(r, settings.quality) for r in front),
        retrained=tuple(TrialSummary.of(r, settings.quality) for r in retrained),
        fixed=TrialSummary.of(records[0], settings.quality) if fixed and records else None,
    )


def write_report(records: list[TrialRecord], folder: Path, title: str, objective: str, events: Events) -> Path | None:
    """The report page of a study's ``records`` in ``folder`` (None when plotly is missing: the result
    still holds the front)."""
    try:
        from posenas.search.plots import write_plots
    except ImportError:
        events.message("plots skipped: plotly is not installed", "warning")
        return None
    paths = write_plots(records, folder, title, objective=objective)
    return paths[0] if paths else None


def _with_verdict(
    result: StudyResult,
    study: Any,
    records: list[TrialRecord],
    settings: StudySettings,
    report: Path | None,
    started: float,
) -> StudyResult:
    """``result`` with the recommended network, why, and the next steps; written to ``OUT/summary.json``."""
    from dataclasses import replace

    from posenas.errors import PosenasError
    from posenas.files import atomic_write_text
    from posenas.search.trials import ATTR_RUN, NoWeights, study_run, trial_weights
    from posenas.search.verdict import verdict

    def checkpoint(number: int) -> str | None:
        """The trial's stand-alone best.pt, or where ``posenas train --trial`` will put it; None: unknown
        (a missing file, a study without its run record), which only drops the predict line."""
        try:
            try:
                return str(trial_weights(study, number, result.storage))
            except NoWeights:
                return str(study_run(study).folder_of(number) / "best.pt")
        except PosenasError:
            return None

    run = study.user_attrs.get(ATTR_RUN) or {}
    chosen = verdict(
        records,
        study=study.study_name,
        storage_url=result.storage,
        data=run.get("data"),
        report=None if report is None else str(report.resolve()),
        checkpoint=checkpoint,
        objective=settings.quality,
        latency="latency" in settings.objectives,
    )
    result = replace(
        result,
        recommended=None if chosen.record is None else TrialSummary.of(chosen.record, settings.quality),
        reason=chosen.reason,
        measured=chosen.measured,
        next_steps=chosen.next_steps,
        report=report,
        summary=result.folder / SUMMARY,
        minutes=(time.perf_counter() - started) / 60,
    )
    atomic_write_text(result.folder / SUMMARY, json.dumps(result.to_dict(), indent=2) + "\n")
    return result
