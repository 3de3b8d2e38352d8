"""The search's last stage: the front's best networks trained stand-alone, from their inherited weights.

A supernet score ranks networks; it is not the AP a network reaches on its own. So a search with the
supernet scorer ends by training its front's best few networks (by the study's first objective) as
stand-alone posenas runs: weights inherited from the supernet (BN re-estimated), then the study's
schedule with distillation and QAT, each sized to its share of the time left. The study's baselines that
fit (tiny-hw, the mixed-precision student-hw) are trained the same way beside them, as the reference. The
results go into the
study's ``ATTR_STANDALONE`` attribute, which the front table and the plots read, and the runs into
``OUT/retrain/trial-NNNN`` (``best.pt`` is an ordinary checkpoint: ``posenas eval``/``export`` take it).

Workers sharing a study share this stage: a network is claimed (under the study lock) before it trains,
so two workers never train the same one.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from posenas.events import Events, TrainingProgress
from posenas.posenet.nets.checkpoint import load_checkpoint
from posenas.posenet.nets.config import TrainConfig
from posenas.posenet.nets.pacing import QAT_STEP_COST
from posenas.posenet.nets.train import Trainer, best_aps, seconds_per_training_image
from posenas.search.records import ATTR_SPEC, ATTR_STANDALONE, TrialRecord, pareto_front, quality
from posenas.search.timeplan import Clock, images_that_fit
from posenas.search.trials import RETRAIN_FOLDER
from posenas.search.worker import pid_alive
from posenas.space.spec import ArchSpec

if TYPE_CHECKING:
    from posenas.posenet.nets.distill import TeacherCache
    from posenas.posenet.nets.supernet_score import SubnetScorer
    from posenas.search.settings import StudySettings

RETRAIN_COUNT = 3  # the front's best networks trained stand-alone (the feasible baselines join them)
MARGIN_S = 20.0  # kept back from the budget for the summary, the table and the plots
MIN_BATCHES = 4


def picks(records: list[TrialRecord], settings: StudySettings, count: int = RETRAIN_COUNT) -> list[TrialRecord]:
    """The front's ``count`` best networks by the study's first objective (ties: the smaller network), then
    the scored baselines that fit (tiny-hw, ...): trained with the same schedule, they are the reference
    the searched networks' stand-alone AP is read against."""
    front = pareto_front(records, latency="latency" in settings.objectives, objective=settings.quality)
    best = sorted(front, key=lambda r: (-quality(r, settings.quality), r.params, r.number))[:count]
    chosen = {r.number for r in best}
    references = [r for r in records if r.baseline and r.trained and r.reused_from is None and r.number not in chosen]
    return best + sorted(references, key=lambda r: r.params)


def _claim(
    study: optuna.Study, chosen: list[TrialRecord], lock: Callable[[], AbstractContextManager[Any]]
) -> list[TrialRecord]:
    """The networks of ``chosen`` that no worker has trained or is training, now claimed by this one. A
    claim left by a killed worker of this machine (its process is gone) is taken over: its run folder
    resumes."""
    me = {"host": socket.gethostname(), "pid": os.getpid()}
    with lock():
        done = dict(study.user_attrs.get(ATTR_STANDALONE) or {})
        mine = [r for r in chosen if str(r.number) not in done or _abandoned(done[str(r.number)])]
        for r in mine:
            done[str(r.number)] = {"worker": me}
        if mine:
            study.set_user_attr(ATTR_STANDALONE, done)
    return mine


def _abandoned(entry: dict[str, Any]) -> bool:
    """A claim without a result whose worker ran on this machine and is gone."""
    worker = entry.get("worker") if "ap" not in entry else None
    return bool(worker) and worker.get("host") == socket.gethostname() and not pid_alive(int(worker.get("pid", 0)))


def _record(
    study: optuna.Study, number: int, result: dict[str, Any] | None, lock: Callable[[], AbstractContextManager[Any]]
) -> None:
    """Store ``result`` for trial ``number`` (None: release the claim, so a later run trains it)."""
    with lock():
        done = dict(study.user_attrs.get(ATTR_STANDALONE) or {})
        if result is None:
            done.pop(str(number), None)
        else:
            done[str(number)] = result
        study.set_user_attr(ATTR_STANDALONE, done)


def retrain_front(
    study: optuna.Study,
    settings: StudySettings,
    records: list[TrialRecord],
    scorer: SubnetScorer,
    data: str | os.PathLike,
    out: Path,
    clock: Clock,
    *,
    lock: Callable[[], AbstractContextManager[Any]],
    teacher_cache: TeacherCache | None,
    device: str | None,
    events: Events,
    count: int = RETRAIN_COUNT,
) -> list[int]:
    """Train the front's best ``count`` networks, and the baselines that fit, stand-alone in the time
    ``clock`` leaves; returns the trial numbers trained. Each is paced to its share of the time left. When
    a network's share does not fit even ``MIN_BATCHES`` batches per epoch, the lowest-ranked networks
    still waiting give their shares up if that makes it fit; otherwise it is cut. Whatever is cut is
    recorded on ``clock`` and left for a rerun; progress, epochs and results go to ``events``."""
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    mine = _claim(study, picks(records, settings, count), lock)
    if mine:  # at once: measuring the first network's speed takes seconds on a busy machine
        left = f" in the {clock.left():.0f} s left" if clock.limited else ""
        events.message(
            f"retraining {len(mine)} networks stand-alone{left}: "
            + ", ".join(f"trial {r.number} {r.name}" for r in mine)
        )
    trained, pending = [], list(mine)
    while pending:
        record = pending.pop(0)
        seconds = (clock.left() - MARGIN_S) / (len(pending) + 1) if clock.limited else math.inf
        spec = ArchSpec.from_dict(by_number[record.number].user_attrs[ATTR_SPEC])
        folder = out / RETRAIN_FOLDER / f"trial-{record.number:04d}"
        try:
            config = _config(settings.train, spec, scorer, folder, seconds)
        except _DoesNotFit as cut:
            # an equal share is too short for this network: the lowest-ranked networks (the list is best
            # first, the reference baselines last) give theirs up, if that makes this one fit
            keep = networks_that_fit(clock.left() - MARGIN_S, cut.needed) - 1
            if not 0 <= keep <= len(pending):
                clock.cut(f"retraining trial {record.number} ({record.name}): {cut}")
                _record(study, record.number, None, lock)
                continue
            for dropped in pending[keep:]:
                clock.cut(
                    f"retraining trial {dropped.number} ({dropped.name}): left out, so that the better-ranked "
                    f"trial {record.number} ({record.name}) fits ({cut.needed:.0f} s at least)"
                )
                _record(study, dropped.number, None, lock)
            pending = pending[:keep]
            seconds, config = (clock.left() - MARGIN_S) / (len(pending) + 1), settings.train
        images = config.train_images or "all training"
        events.message(
            f"retraining trial {record.number} {record.name} stand-alone from its supernet weights: {config.epochs} "
            f"epochs ({config.qat_epochs} QAT) on {images} images"
            + (f", paced to end in {seconds:.0f} s" if clock.limited else "")
        )
        # paced to its share: it measures its own speed as it goes, so a machine that gets busier midway
        # shortens its epochs instead of running over the budget
        deadline = time.monotonic() + seconds if clock.limited else None
        try:
            inherited = scorer.inherited(spec).cpu().state_dict()
        except BaseException:
            _record(study, record.number, None, lock)
            raise
        result = train_standalone(
            study,
            record.number,
            spec,
            config,
            data,
            folder,
            lock=lock,
            init_state=inherited,
            teacher_cache=teacher_cache,
            device=device,
            deadline=deadline,
            events=events,
        )
        full = result["full_epoch_images"]
        if result["images_per_epoch"] < full:
            clock.cut(
                f"retraining trial {record.number} ({record.name}): paced to {seconds:.0f} s, "
                f"{result['images_per_epoch']:.0f} of {full} training images per epoch on average"
            )
        events.message(
            f"trial {record.number} {record.name}: AP {result['ap']:.3f} stand-alone (QAT), {result['seconds']:.0f} s"
        )
        trained.append(record.number)
    clock.finish("retrain")
    return trained


def train_standalone(
    study: optuna.Study,
    number: int,
    spec: ArchSpec,
    config: TrainConfig,
    data: str | os.PathLike,
    folder: Path,
    *,
    lock: Callable[[], AbstractContextManager[Any]],
    init_state: dict[str, Any] | None,
    teacher_cache: TeacherCache | None,
    device: str | None,
    deadline: float | None = None,
    events: Events | None = None,
) -> dict[str, Any]:
    """Train trial ``number``'s network ``spec`` stand-alone into ``folder`` (resuming it) and record the
    result in the study's ``ATTR_STANDALONE``, where ``posenas export --trial`` finds its weights. The
    caller has claimed the trial; on any failure the claim is released, so a rerun trains it."""
    started = time.perf_counter()
    try:
        trainer = Trainer(
            spec,
            data,
            folder,
            config,
            teacher_cache=teacher_cache,
            device=device,
            init_state=init_state,
            deadline=deadline,
        )
        run = f"trial {number} {spec.name}"
        with TrainingProgress(events or Events(), run, config.epochs, config.batch_size) as callbacks:
            trainer.on_batch, trainer.on_epoch = callbacks
            trainer.run()
    except BaseException:
        _record(study, number, None, lock)  # not lost: a rerun trains it (resuming the run folder)
        raise
    history = load_checkpoint(folder / "last.pt").history
    ap, float_ap = best_aps(history)
    full = len(trainer.train_set) // config.batch_size * config.batch_size
    seen = [int(e.get("images") or full) for e in history]
    result = {
        "ap": ap,
        "float_ap": float_ap,
        "seconds": time.perf_counter() - started,
        "train_images": config.train_images,
        "images_per_epoch": sum(seen) / max(1, len(seen)),
        "full_epoch_images": full,
        "epochs": config.epochs,
        "checkpoint": str((folder / "best.pt").resolve()),
    }
    _record(study, number, result, lock)
    return result


def claim(study: optuna.Study, number: int, lock: Callable[[], AbstractContextManager[Any]]) -> bool:
    """Claim trial ``number`` for stand-alone training by this worker (False: another holds it or it is done)."""
    with lock():
        done = dict(study.user_attrs.get(ATTR_STANDALONE) or {})
        entry = done.get(str(number))
        if entry is not None and not _abandoned(entry):
            return False
        done[str(number)] = {"worker": {"host": socket.gethostname(), "pid": os.getpid()}}
        study.set_user_attr(ATTR_STANDALONE, done)
    return True


class _DoesNotFit(Exception):
    def __init__(self, needed: float, seconds: float) -> None:
        super().__init__(f"needs at least {needed:.0f} s, {max(0.0, seconds):.0f} s were left")
        self.needed = needed


def networks_that_fit(seconds: float, needed: float) -> int:
    """How many networks that each need ``needed`` seconds fit in ``seconds`` (0 if not one)."""
    return max(0, int(seconds // needed)) if needed > 0 else 0


def _config(base: TrainConfig, spec: ArchSpec, scorer: SubnetScorer, folder: Path, seconds: float) -> TrainConfig:
    """The stand-alone schedule: an interrupted run's own (it resumes), else ``base``. With ``seconds``
    finite, ``_DoesNotFit`` unless at least ``MIN_BATCHES`` batches per epoch (and each epoch's validation)
    fit in them at a measured step's speed; the run itself is then paced to them (``Trainer(deadline=)``)."""
    last = folder / "last.pt"
    if last.is_file():
        return TrainConfig(**load_checkpoint(last).train_config)
    available = base.train_images or _train_images(scorer)
    if math.isinf(seconds):
        return base
    model = scorer.inherited(spec)
    per_image = seconds_per_training_image(model, scorer.calibration[: base.batch_size])
    effective = base.for_lowest_bits(spec.lowest_bits)  # the low-bit recipe may lengthen the QAT phase
    qat_epochs = effective.qat_epochs
    epochs = (effective.epochs - qat_epochs) + QAT_STEP_COST * qat_epochs
    # at least the last epoch of each phase is validated (forward and decoding, about a step's cost per image)
    validation = (2 if qat_epochs else 1) * len(scorer.val_input) * per_image
    images = images_that_fit(seconds - validation, per_image, epochs, available, MIN_BATCHES * base.batch_size)
    if images is None:
        needed = validation + MIN_BATCHES * base.batch_size * per_image * epochs
        raise _DoesNotFit(needed, seconds)
    return base


def _train_images(scorer: SubnetScorer) -> int:
    """The training images of the scorer's data root (the calibration set is drawn from them)."""
    from posenas.posenet.pose.coco import CocoPoseDataset

    return len(CocoPoseDataset(scorer.data, "train", input_size=scorer.supernet.space.input_size, people_only=True))
