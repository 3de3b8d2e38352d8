"""What a finished search trial says, independent of Optuna: the rows of the front table and the plots.

``TrialRecord`` is read back from a study's trials (``records_of``); the plot and table code takes lists
of records, so it can be tested without a study and never depends on how the driver stores things.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import optuna

# User-attribute names the study driver writes on each trial (one place, read by records_of).
ATTR_SPEC_HASH = "spec_hash"
ATTR_SPEC = "spec"
ATTR_BASELINE = "baseline"
ATTR_FEASIBLE = "feasible"
ATTR_VIOLATIONS = "violations"
ATTR_CONSTRAINTS = "constraints"
ATTR_METRICS = "metrics"
ATTR_REUSED_FROM = "reused_from"
ATTR_ARTIFACTS = "artifacts"
# A *study* attribute (a finished trial's attributes cannot change): trial number as text -> the result of
# the search's last stage, {"ap": ..., "checkpoint": ..., "seconds": ...}, or {"worker": ...} while it trains.
ATTR_STANDALONE = "standalone"


# The study's first objective -> (the record's field, +1 if higher is better else -1).
QUALITY_FIELDS = {"ap": ("ap", 1.0), "loss": ("val_loss", -1.0), "fg_loss": ("fg_loss", -1.0)}
QUALITY_NAMES = {"ap": "AP", "loss": "validation loss", "fg_loss": "foreground loss"}  # for people


def quality_value(record: TrialRecord, objective: str = "ap") -> float:
    """The record's value of the study's first objective as stored: AP, the loss or the foreground loss."""
    return float(getattr(record, QUALITY_FIELDS[objective][0]))


def quality(record: TrialRecord, objective: str = "ap") -> float:
    """How good ``record`` is by the study's first objective, higher better: AP, or minus a loss."""
    return QUALITY_FIELDS[objective][1] * quality_value(record, objective)


@dataclass(frozen=True)
class TrialRecord:
    """One trial: its architecture, whether it fits, and (when trained) its scores.

    ``ap`` is the QAT AP on the study's validation images (NaN when not trained) and ``val_loss`` their
    masked L2 loss and ``fg_loss`` their foreground loss (``posenet.nets.train.foreground_loss``), all from
    the study's scorer (a supernet's subnet, or a trial's own training);
    ``standalone_ap`` is the AP after the search's last stage trained the network stand-alone (NaN if it
    did not). ``params`` and ``latency_ms`` come from the budget checker, for infeasible trials too."""

    number: int
    state: str  # "COMPLETE", "FAIL", "RUNNING", ...
    spec_hash: str
    name: str
    ap: float
    params: int
    latency_ms: float
    feasible: bool
    baseline: str | None = None
    violations: tuple[str, ...] = ()
    reused_from: int | None = None
    float_ap: float = float("nan")
    seconds: float = 0.0
    val_loss: float = float("nan")
    scorer: str = "train"
    standalone_ap: float = float("nan")
    fg_loss: float = float("nan")

    @property
    def trained(self) -> bool:
        return self.state == "COMPLETE" and self.feasible and not (math.isnan(self.ap) and math.isnan(self.val_loss))


def records_of(
    trials: Iterable[optuna.trial.FrozenTrial], standalone: Mapping[str, Mapping[str, Any]] | None = None
) -> list[TrialRecord]:
    """The records of every trial that got as far as a budget check, in trial-number order. ``standalone``
    is the study's ``ATTR_STANDALONE`` user attribute (trial number as text -> its stand-alone result)."""
    standalone = standalone or {}
    records = []
    for trial in sorted(trials, key=lambda t: t.number):
        attrs: dict[str, Any] = trial.user_attrs
        if ATTR_SPEC_HASH not in attrs:
            continue
        metrics = attrs.get(ATTR_METRICS) or {}
        spec = attrs.get(ATTR_SPEC) or {}
        records.append(
            TrialRecord(
                number=trial.number,
                state=trial.state.name,
                spec_hash=attrs[ATTR_SPEC_HASH],
                name=str(spec.get("name", f"trial{trial.number}")),
                ap=float(metrics.get("ap", float("nan"))),
                params=int(metrics.get("params", 0)),
                latency_ms=float(metrics.get("latency_ms", float("nan"))),
                feasible=bool(attrs.get(ATTR_FEASIBLE, False)),
                baseline=attrs.get(ATTR_BASELINE),
                violations=tuple(attrs.get(ATTR_VIOLATIONS, ())),
                reused_from=attrs.get(ATTR_REUSED_FROM),
                float_ap=float(metrics.get("float_ap", float("nan"))),
                seconds=float(metrics.get("seconds", 0.0)),
                val_loss=float(metrics.get("val_loss", float("nan"))),
                scorer=str(metrics.get("scorer", "train")),
                standalone_ap=float((standalone.get(str(trial.number)) or {}).get("ap", float("nan"))),
                fg_loss=float(metrics.get("fg_loss", float("nan"))),
            )
        )
    return records


def pareto_front(records: Iterable[TrialRecord], latency: bool = False, objective: str = "ap") -> list[TrialRecord]:
    """Trained, feasible records that no other such record dominates (``objective``, AP or a loss, better;
    parameters down; and latency down when ``latency``). Ties in every objective keep the lowest trial
    number."""
    pool = [r for r in records if r.trained and r.reused_from is None and not math.isnan(quality(r, objective))]

    def key(r: TrialRecord) -> tuple[float, ...]:
        q = -quality(r, objective)
        return (q, float(r.params), r.latency_ms) if latency else (q, float(r.params))

    front = []
    for r in pool:
        kr = key(r)
        dominated = any(all(a <= b for a, b in zip(key(o), kr)) and key(o) != kr for o in pool) or any(
            key(o) == kr and o.number < r.number for o in pool
        )
        if not dominated:
            front.append(r)
    return sorted(front, key=lambda r: r.params)
