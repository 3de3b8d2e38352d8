"""The search with the supernet scorer: each trial is scored in seconds by a subnet of a trained supernet.

``SupernetObjective`` is the search's ``TrialObjective`` (budget check first, memoised by spec hash,
baselines as fixed trials, constraints for the sampler) with the per-trial training replaced by
``SubnetScorer.score``: inherit the weights, recalibrate batch-norm, fold, QAT AP on the validation images.
``supernet_objective`` trains the study's supernet once into ``OUT/supernet`` (or reuses ``--supernet``,
refusing one of another space) and returns the objective. Several workers may share one study (PostgreSQL)
and one supernet folder: the folder is only read once it exists.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from posenas.budgets.checker import BudgetReport
from posenas.budgets.device import Budget
from posenas.errors import CheckpointError
from posenas.events import Events, TrainingProgress
from posenas.posenet.nets.config import SupernetConfig
from posenas.posenet.nets.layers import QuantMode
from posenas.posenet.nets.supernet_score import SubnetScorer
from posenas.posenet.nets.supernet_train import INFO, WEIGHTS, SupernetTrainer, load_supernet
from posenas.search.records import QUALITY_NAMES
from posenas.search.study import TrialObjective
from posenas.space.spec import ArchSpec

if TYPE_CHECKING:
    from posenas.posenet.nets.distill import TeacherCache
    from posenas.search.settings import StudySettings
    from posenas.search.timeplan import Clock

CALIBRATION_IMAGES = 256


@dataclass
class SupernetObjective(TrialObjective):
    """A ``TrialObjective`` whose feasible, new networks are scored by ``scorer`` instead of trained."""

    scorer: SubnetScorer | None = None

    def _train(self, trial: optuna.Trial, spec: ArchSpec, report: BudgetReport) -> dict[str, Any]:
        assert self.scorer is not None
        # A study ranked by a loss skips decoding and COCOeval (a third of a score's time): AP is then unknown.
        with_ap = self.settings.quality == "ap"
        score = self.scorer.score(spec, ap=with_ap)
        for name, value in (("validation loss", score.val_loss), ("foreground loss", score.fg_loss)):
            if not math.isfinite(value):
                raise optuna.TrialPruned(f"{spec.name}: non-finite {name}")
        losses = f"loss {score.val_loss:.5f}, foreground loss {score.fg_loss:.4f}"
        scored = f"AP {score.ap:.3f}, {losses}" if with_ap else losses
        ap = score.ap if with_ap else float("nan")
        metrics = {
            "ap": ap,
            "ap50": score.ap50 if with_ap else float("nan"),
            "val_loss": score.val_loss,
            "fg_loss": score.fg_loss,
            "arithmetic": self.scorer.mode.value,
            "finetune_steps": self.scorer.finetune_steps,
            "seconds": score.seconds,
            "scorer": "supernet",
        }
        self._trial(
            trial,
            spec,
            "scored",
            f"supernet {scored} ({report.params:,} parameters, {report.latency_ms or float('nan'):.2f} ms) "
            f"in {score.seconds:.1f} s",
            {**metrics, "params": report.params, "latency_ms": report.latency_ms or float("nan")},
        )
        return metrics


def supernet_config(settings: StudySettings, folder: Path) -> SupernetConfig:
    """The schedule of the study's supernet: the one already in ``folder`` (a rerun resumes it), else the
    default on the study's training images. A time budget does not change the schedule: the training is
    paced to its deadline instead (fewer steps per epoch on a slower or busier machine), so its shape, the
    float phase and then QAT, always holds."""
    info = folder / INFO
    if info.is_file():
        try:
            saved = json.loads(info.read_text())["config"]
            # a supernet begun before the low-bit recipe existed resumes in ai8x v1 arithmetic
            return SupernetConfig(**{"lowbit": {"enabled": False}, **saved})
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{info}: unreadable ({exc.__class__.__name__}); use another output folder") from None
    return SupernetConfig(seed=settings.seed, train_images=settings.train.train_images, lowbit=settings.train.lowbit)


def supernet_objective(
    settings: StudySettings,
    budget: Budget,
    data: str | os.PathLike,
    out: Path,
    *,
    supernet: str | None,
    teacher_cache: TeacherCache | None,
    events: Events,
    device: str | None = None,
    config: SupernetConfig | None = None,
    clock: Clock | None = None,
) -> SupernetObjective:
    """Train (or load) the study's supernet and make the objective that scores trials with it. With a
    ``clock``, the supernet is sized to its share of the time budget."""
    from posenas.search.timeplan import Clock

    clock = clock or Clock(None)
    folder = Path(supernet) if supernet else out / "supernet"
    if supernet is None:
        config = config or supernet_config(settings, folder)
        seconds = clock.seconds_for("supernet")
        paced = f", paced to end in {seconds:.0f} s" if clock.limited else ""
        verb = "resuming" if (folder / WEIGHTS).is_file() else "training"
        events.message(
            f"{verb} the study's supernet -> {folder} ({config.epochs} epochs, the last {config.qat_epochs} QAT{paced})"
        )
        deadline = time.monotonic() + seconds if clock.limited else None
        with TrainingProgress(events, "supernet", config.epochs, config.batch_size) as (on_batch, on_epoch):
            trainer = SupernetTrainer(
                settings.space,
                budget,
                data,
                folder,
                config,
                study=settings.name,
                teacher_cache=teacher_cache,
                device=device,
                on_batch=on_batch,
                on_epoch=on_epoch,
                deadline=deadline,
            )
            trainer.run()
        full = len(trainer.train_set) // config.batch_size * config.batch_size
        cut = [e for e in json.loads((folder / INFO).read_text())["history"] if 0 < e.get("images", full) < full]
        if cut and clock.limited:
            seen = sum(e["images"] for e in cut) / len(cut)
            clock.cut(
                f"supernet: {len(cut)} of {config.epochs} epochs paced to its {seconds:.0f} s, {seen:.0f} of "
                f"{len(trainer.train_set)} training images each on average"
            )
    clock.finish("supernet")
    net, info = load_supernet(folder, settings.space)
    net.eval()
    scorer = SubnetScorer(
        net,
        data,
        calibration_images=CALIBRATION_IMAGES,
        val_images=settings.train.val_images,
        seed=settings.seed,
        device=device,
        mode=QuantMode(settings.score_arithmetic),
        finetune_steps=settings.finetune_steps,
        finetune_batch=settings.train.batch_size,
        finetune_lr=settings.train.qat_lr,
        recipe=settings.train.lowbit,
    )
    what = QUALITY_NAMES[settings.quality]
    tuned = f", {settings.finetune_steps} fine-tuning steps" if settings.finetune_steps else ""
    events.message(
        f"scoring trials with the supernet in {folder} (trained {info['epoch'] + 1} epochs; BN recalibrated "
        f"on {len(scorer.calibration)} training images{tuned}, {settings.score_arithmetic.upper()} {what} on "
        f"{len(scorer.val.image_ids)} validation images)"
    )
    return SupernetObjective(settings, budget, data, out / "trials", scorer=scorer, device=device, events=events)
