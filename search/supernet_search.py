"""The search with the supernet scorer: each trial is scored in seconds by a subnet of a trained supernet.

``SupernetObjective`` is the search's ``TrialObjective`` (budget check first, memoised by spec hash,
baselines as fixed trials, constraints for the sampler) with the per-trial training replaced by
``SubnetScorer.score``: inherit the weights, recalibrate batch-norm, fold, QAT AP on the validation images.
``supernet_objective`` trains the study's supernet once into ``OUT/supernet`` (or reuses ``--supernet``,
refusing one of another space) and returns the objective. Several workers may share one study (PostgreSQL)
and one supernet folder: the folder is only read once it exists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from posenas.budgets.checker import BudgetReport
from posenas.budgets.device import Budget
from posenas.posenet.nets.config import SupernetConfig
from posenas.posenet.nets.supernet_score import SubnetScorer
from posenas.posenet.nets.supernet_train import WEIGHTS, SupernetTrainer, load_supernet
from posenas.search.study import TrialObjective
from posenas.space.spec import ArchSpec

if TYPE_CHECKING:
    from rich.console import Console

    from posenas.posenet.nets.distill import TeacherCache
    from posenas.search.settings import StudySettings

CALIBRATION_IMAGES = 256


@dataclass
class SupernetObjective(TrialObjective):
    """A ``TrialObjective`` whose feasible, new networks are scored by ``scorer`` instead of trained."""

    scorer: SubnetScorer | None = None

    def _train(self, trial: optuna.Trial, spec: ArchSpec, report: BudgetReport) -> dict[str, Any]:
        assert self.scorer is not None
        score = self.scorer.score(spec)
        if not math.isfinite(score.val_loss):
            raise optuna.TrialPruned(f"{spec.name}: non-finite validation loss")
        self._say(f"trial {trial.number} {spec.name}: supernet AP {score.ap:.3f} ({report.params:,} parameters, "
                  f"{report.latency_ms or float('nan'):.2f} ms) in {score.seconds:.1f} s")  # fmt: skip
        return {"ap": score.ap, "ap50": score.ap50, "val_loss": score.val_loss, "seconds": score.seconds,
                "scorer": "supernet"}  # fmt: skip


def supernet_objective(
    settings: "StudySettings", budget: Budget, data: Path, out: Path, *, supernet: str | None,
    teacher_cache: "TeacherCache | None", console: "Console", device: str | None = None,
    config: SupernetConfig | None = None,
) -> SupernetObjective:  # fmt: skip
    """Train (or load) the study's supernet and make the objective that scores trials with it."""
    from posenas.search.report import SupernetDisplay

    folder = Path(supernet) if supernet else out / "supernet"
    if supernet is None:
        config = config or SupernetConfig(seed=settings.seed, train_images=settings.train.train_images)
        done = (folder / WEIGHTS).is_file()
        console.print(f"{'checking' if done else 'training'} the study's supernet -> {folder} ({config.epochs} epochs, "
                      f"the last {config.qat_epochs} QAT)")  # fmt: skip
        with SupernetDisplay(console, config.epochs, config.batch_size) as display:
            SupernetTrainer(settings.space, budget, data, folder, config, study=settings.name,
                            teacher_cache=teacher_cache, device=device, on_batch=display.on_batch,
                            on_epoch=display.on_epoch).run()  # fmt: skip
    net, info = load_supernet(folder, settings.space)
    net.eval()
    scorer = SubnetScorer(net, data, calibration_images=CALIBRATION_IMAGES, val_images=settings.train.val_images,
                          seed=settings.seed, device=device)  # fmt: skip
    console.print(f"scoring trials with the supernet in {folder} (trained {info['epoch'] + 1} epochs; BN recalibrated "
                  f"on {len(scorer.calibration)} training images, QAT AP on {len(scorer.val.image_ids)} validation "
                  "images)")  # fmt: skip
    return SupernetObjective(settings, budget, data, out / "trials", scorer=scorer, device=device)
