"""A search's verdict: which network to take, why, and the commands that take it to the chip.

Pure functions of a study's records (``search.records``): the recommendation is the best *stand-alone*
AP among the networks that fit (ties: the lower latency, then the fewer parameters), because a
supernet's score only ranks networks; it is not the AP a network reaches on its own. Where no network
was trained stand-alone, the front's best by the ranking score is named instead, marked as an estimate,
with the command that trains it first.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field

from posenas.search.records import QUALITY_NAMES, TrialRecord, pareto_front, quality
from posenas.search.trials import trial_command


def standalone_ap(record: TrialRecord) -> float:
    """The AP ``record`` reached trained on its own: the last stage's, or a ``--scorer train`` trial's own."""
    if record.standalone_ap == record.standalone_ap:
        return record.standalone_ap
    return record.ap if record.scorer == "train" and record.trained and record.reused_from is None else math.nan


@dataclass(frozen=True)
class Verdict:
    """The recommended network (None: nothing was scored), why, and the next steps as shell commands."""

    record: TrialRecord | None
    reason: str
    measured: bool  # chosen by a stand-alone AP (True) or by the ranking score, an estimate (False)
    next_steps: tuple[str, ...] = field(default_factory=tuple)


def recommend(
    records: list[TrialRecord], objective: str = "ap", latency: bool = False
) -> tuple[TrialRecord | None, str, bool]:
    """The network to take: the best stand-alone AP among those that fit (ties: lower latency, then fewer
    parameters); else the front's best by ``objective`` (an estimate). Returns (record, reason, measured)."""
    measured = [r for r in records if r.feasible and r.state == "COMPLETE" and standalone_ap(r) == standalone_ap(r)]
    if measured:
        best = min(measured, key=lambda r: (-standalone_ap(r), _latency(r), r.params, r.number))
        ties = [r for r in measured if standalone_ap(r) == standalone_ap(best) and r is not best]
        tie = f"; tied with {', '.join(r.baseline or r.name for r in ties)}, lower latency" if ties else ""
        return (
            best,
            (
                f"the best stand-alone AP ({standalone_ap(best):.3f}) of the {len(measured)} networks that fit "
                f"and were trained stand-alone{tie}"
            ),
            True,
        )
    front = pareto_front(records, latency=latency, objective=objective)
    if not front:
        return None, "no network that fits was scored", False
    best = min(front, key=lambda r: (-quality(r, objective), _latency(r), r.params, r.number))
    return (
        best,
        (
            f"the best {QUALITY_NAMES[objective]} on the front as the scorer estimated it (no network was "
            "trained stand-alone: train it before trusting it)"
        ),
        False,
    )


def _latency(record: TrialRecord) -> float:
    return record.latency_ms if record.latency_ms == record.latency_ms else math.inf


def verdict(
    records: list[TrialRecord],
    *,
    study: str,
    storage_url: str | None,
    data: str | None,
    report: str | None,
    checkpoint: Callable[[int], str | None] = lambda number: None,
    objective: str = "ap",
    latency: bool = False,
) -> Verdict:
    """The recommendation with the commands of the next steps: train it (when it has no stand-alone
    weights), export it, predict with it on the study's validation images (``checkpoint(trial)``: its
    stand-alone ``best.pt``, or where training will put it), open the report."""
    record, reason, measured = recommend(records, objective, latency)
    if record is None:
        return Verdict(None, reason, False, ())
    name = record.baseline or record.name
    steps = []
    if not measured:
        steps.append(trial_command("train", record.number, study, storage_url))
    export = f"export-{name}"
    steps.append(trial_command("export", record.number, study, storage_url, "--out", export))
    weights = checkpoint(record.number)
    if data and weights:
        steps.append(
            shlex.join(["posenas", "predict", "--checkpoint", weights, "--data", data, "--out", f"predict-{name}"])
        )
    if report:
        steps.append(shlex.join(["open", report]))
    return Verdict(record, reason, measured, tuple(steps))


__all__ = ["Verdict", "recommend", "standalone_ap", "verdict"]
