"""The search: an Optuna study whose trials are budget-checked before any training, memoised by spec hash,
and scored on distilled QAT AP.

What posenas adds to Optuna (docs/peers.md): a sampled spec is placed on the device first;
an infeasible one is not trained, and its violations become Optuna constraint values (one per resource,
the relative excess), so NSGA-II and TPE learn where the boundary is. A spec whose hash was already
scored reuses the score. Baselines enter as enqueued fixed trials and go through the same objective.
Workers on several machines share one study through an RDB storage with heartbeats: a dead worker's
trial is failed and retried by the others.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from posenas.budgets.checker import RESOURCES, BudgetReport, check
from posenas.budgets.device import Budget
from posenas.errors import SpecOutsideSpace
from posenas.events import Events, TrialEvent, TrialOutcome
from posenas.files import atomic_write_text
from posenas.posenet.nets.checkpoint import load_checkpoint, model_for
from posenas.posenet.nets.distill import TeacherCache
from posenas.posenet.nets.train import PreloadedSamples, Trainer, best_aps, validation_losses
from posenas.search.records import (
    ATTR_ARTIFACTS,
    ATTR_BASELINE,
    ATTR_CONSTRAINTS,
    ATTR_FEASIBLE,
    ATTR_METRICS,
    ATTR_REUSED_FROM,
    ATTR_SPEC,
    ATTR_SPEC_HASH,
    ATTR_VIOLATIONS,
)
from posenas.search.settings import StudySettings
from posenas.space.baselines import baseline_names, get_arch
from posenas.space.sampling import SearchSpace, fixed_params, sample_arch
from posenas.space.spec import ArchSpec

# One constraint per budget resource, in the checker's order; > 0 means over budget (Optuna: feasible iff
# all <= 0).
CONSTRAINT_RESOURCES = RESOURCES


def constraint_values(report: BudgetReport) -> list[float]:
    """The relative excess per resource (needed / available - 1), 1.0 where a violation has no amount."""
    values = dict.fromkeys(CONSTRAINT_RESOURCES, 0.0)
    for violation in report.violations:
        excess = 1.0
        if violation.needed is not None and violation.available:
            excess = max(violation.needed / violation.available - 1.0, 1e-6)
        values[violation.resource] = max(values.get(violation.resource, 0.0), excess)
    return [values[r] for r in CONSTRAINT_RESOURCES]


# Optuna >= 5 reads constraints that a trial sets on itself; older versions ask a constraints_func.
_TRIAL_SETS_CONSTRAINTS = hasattr(optuna.Trial, "set_constraint")


def _record_constraints(trial: optuna.Trial, values: list[float]) -> None:
    trial.set_user_attr(ATTR_CONSTRAINTS, values)
    if _TRIAL_SETS_CONSTRAINTS:
        for resource, value in zip(CONSTRAINT_RESOURCES, values):
            trial.set_constraint(resource, value)


def constraints_of(trial: optuna.trial.FrozenTrial) -> Sequence[float]:
    """Optuna's ``constraints_func``: read back what the objective recorded (a failed trial: feasible)."""
    return trial.user_attrs.get(ATTR_CONSTRAINTS, [0.0] * len(CONSTRAINT_RESOURCES))


@dataclass
class TrialObjective:
    """The objective of every trial, fixed or sampled: check, reuse, or train and score.

    ``train_infeasible`` trains a spec even when it does not fit (``--fixed``: the user asked for that
    network); its verdict is still recorded."""

    settings: StudySettings
    budget: Budget
    data_root: str | os.PathLike
    artifacts: Path
    teacher: Any = None
    teacher_cache: TeacherCache | None = None
    train_infeasible: bool = False
    device: str | None = None
    events: Events = field(default_factory=Events)

    def __call__(self, trial: optuna.Trial) -> tuple[float, ...]:
        space = self.settings.space
        baseline = trial.user_attrs.get(ATTR_BASELINE)
        spec = sample_arch(trial, space, name=baseline or f"trial{trial.number}")
        report = check(spec, self.budget)
        spec_hash = spec.spec_hash()
        trial.set_user_attr(ATTR_SPEC_HASH, spec_hash)
        trial.set_user_attr(ATTR_SPEC, spec.to_dict())
        trial.set_user_attr(ATTR_FEASIBLE, report.fits)
        trial.set_user_attr(ATTR_VIOLATIONS, [v.message for v in report.violations])
        _record_constraints(trial, constraint_values(report))
        metrics: dict[str, Any] = {"params": report.params, "latency_ms": report.latency_ms, "macs": report.macs}
        if not report.fits and not self.train_infeasible:
            trial.set_user_attr(ATTR_METRICS, metrics)
            self._trial(trial, spec, "rejected", f"rejected before training ({report.violations[0].message})", metrics)
            return self._values({**metrics, "ap": 0.0})
        earlier = _scored_twin(trial.study, spec_hash, trial.number)
        if earlier is not None:
            metrics = dict(earlier.user_attrs[ATTR_METRICS])
            trial.set_user_attr(ATTR_REUSED_FROM, earlier.number)
            trial.set_user_attr(ATTR_METRICS, metrics)
            self._trial(trial, spec, "reused", f"same network as trial {earlier.number}, its score reused", metrics)
            return self._values(metrics)
        metrics.update(self._train(trial, spec, report))
        trial.set_user_attr(ATTR_METRICS, metrics)
        return self._values(metrics)

    def _train(self, trial: optuna.Trial, spec: ArchSpec, report: BudgetReport) -> dict[str, Any]:
        out = self.artifacts / f"trial-{trial.number:04d}-{spec.spec_hash()[:10]}"
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "spec.yaml", spec.to_yaml())
        atomic_write_text(out / "budget.json", json.dumps(report.to_dict(), indent=2) + "\n")
        trial.set_user_attr(ATTR_ARTIFACTS, str(out))
        self.events.message(
            f"trial {trial.number} {spec.name}: training ({report.params:,} parameters, "
            f"{report.latency_ms or float('nan'):.2f} ms)"
        )
        started = time.perf_counter()
        trainer = Trainer(
            spec,
            self.data_root,
            out,
            self.settings.train,
            teacher=self.teacher,
            teacher_cache=self.teacher_cache,
            device=self.device,
        )
        trainer.run()
        history = load_checkpoint(out / "last.pt").history  # every epoch, also those of an earlier attempt
        best = model_for(load_checkpoint(out / "best.pt"), str(out / "best.pt"))
        ap, float_ap = best_aps(history)
        losses = validation_losses(best, PreloadedSamples(trainer.val_set).tensors)
        metrics = {
            "ap": ap,
            "float_ap": float_ap,
            "val_loss": losses["loss"],
            "fg_loss": losses["fg_loss"],
            "seconds": time.perf_counter() - started,
            "checkpoint": str((out / "best.pt").resolve()),
        }
        atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        self._trial(trial, spec, "trained", f"AP {metrics['ap']:.3f} in {metrics['seconds']:.0f} s", metrics)
        return metrics

    def _values(self, metrics: dict[str, Any]) -> tuple[float, ...]:
        """The objective values; a rejected network has AP 0 and losses +inf (the constraints reject it too)."""
        by_name = {
            "ap": float(metrics["ap"]),
            "loss": float(metrics.get("val_loss", math.inf)),
            "fg_loss": float(metrics.get("fg_loss", math.inf)),
            "params": float(metrics["params"]),
            "latency": float(metrics["latency_ms"] or math.inf),
        }
        return tuple(by_name[o] for o in self.settings.objectives)

    def _trial(
        self, trial: optuna.Trial, spec: ArchSpec, outcome: TrialOutcome, detail: str, metrics: dict[str, Any]
    ) -> None:
        values = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        self.events.trial(TrialEvent(trial.number, spec.name, outcome, detail, values))


def _scored_twin(study: optuna.Study, spec_hash: str, number: int) -> optuna.trial.FrozenTrial | None:
    """An earlier completed, trained trial of the same network (same spec hash), if any."""
    for other in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        attrs = other.user_attrs
        if (
            other.number != number
            and attrs.get(ATTR_SPEC_HASH) == spec_hash
            and "ap" in (attrs.get(ATTR_METRICS) or {})
        ):
            return other
    return None


def make_sampler(settings: StudySettings) -> optuna.samplers.BaseSampler:
    """NSGA-II (default) or TPE, seeded, both told the budget constraints."""
    constraints = {} if _TRIAL_SETS_CONSTRAINTS else {"constraints_func": constraints_of}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if settings.sampler == "tpe":
            return optuna.samplers.TPESampler(seed=settings.seed, multivariate=True, **constraints)
        return optuna.samplers.NSGAIISampler(seed=settings.seed, population_size=settings.population, **constraints)


def directions(settings: StudySettings) -> list[str]:
    return ["maximize" if o == "ap" else "minimize" for o in settings.objectives]  # loss, params, latency: down


def enqueue_baselines(study: optuna.Study, space: SearchSpace, names: Sequence[str] | None = None) -> list[str]:
    """Enqueue each baseline (default: all that the space can express) as a fixed trial, once per study;
    returns those enqueued. A baseline named in ``names`` that the space cannot express raises."""
    enqueued = []
    for name in names or baseline_names():
        try:
            params = fixed_params(get_arch(name), space)
        except SpecOutsideSpace:
            if names:
                raise
            continue  # e.g. the mixed-precision student in a study without 2-bit weights
        study.enqueue_trial(params, user_attrs={ATTR_BASELINE: name}, skip_if_exists=True)
        enqueued.append(name)
    return enqueued


OBJECTIVE_LABELS = {
    "ap": "AP (QAT)",
    "loss": "validation loss",
    "fg_loss": "foreground loss",
    "params": "parameters",
    "latency": "latency ms",
}


def name_objectives(study: optuna.Study, objectives: Sequence[str]) -> None:
    """Name the study's objectives (optuna-dashboard and Optuna's plots show them instead of "Objective 0")."""
    names = [OBJECTIVE_LABELS[o] for o in objectives]
    if getattr(study, "metric_names", None) != names and hasattr(study, "set_metric_names"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(names)


def complete_count(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))


def new_work_count(study: optuna.Study) -> int:
    """The distinct networks the study has scored (or rejected): what ``--trials`` counts. A trial that
    re-sampled an already scored network (a rerun with the same seed does) reuses its score and is not new
    work."""
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return len({t.user_attrs.get(ATTR_SPEC_HASH, f"trial{t.number}") for t in done})
