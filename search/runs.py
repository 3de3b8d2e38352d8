"""One library call for each command that trains a single network: ``train_network`` (``posenas train
--arch``) and ``train_trial`` (``posenas train --trial``, a search trial's network stand-alone).

Each checks its inputs, trains, reports to ``events`` while it runs (``posenas.events``), and returns a
``TrainedRun``; the command line renders it.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from posenas.errors import StudyError, TeacherError
from posenas.events import Events, TrainingProgress
from posenas.posenet.nets.config import TrainConfig
from posenas.space.spec import ArchSpec

__all__ = ["TrainedRun", "train_network", "train_trial"]


@dataclass(frozen=True)
class TrainedRun:
    """A finished (or resumed and finished) training run.

    ``history`` holds every epoch's record as stored in the checkpoint; ``best_ap`` the best validated
    QAT AP (None: no epoch was validated) and ``best_epoch`` its epoch (0-based; None likewise);
    ``quantization_switch`` and ``quantization_end`` the per-layer diagnostics of a network with weights
    below 8 bits (None otherwise, or when the switch happened in an earlier process), with the collapse
    warning of the last QAT epoch. ``trial`` and ``study`` are set by ``train_trial``; ``export`` is then
    the command that exports the network."""

    name: str
    folder: Path
    checkpoint: Path
    history: list[dict[str, Any]]
    best_ap: float | None
    best_epoch: int | None
    seconds: float
    quantization_switch: list[dict[str, Any]] | None = None
    quantization_end: list[dict[str, Any]] | None = None
    quantization_warning: str | None = None
    trial: int | None = None
    study: str | None = None
    export: str | None = None
    already_trained: bool = False  # train_trial: the trial had weights; nothing was trained


def train_network(
    spec: ArchSpec,
    data: str | os.PathLike,
    out: Path,
    config: TrainConfig,
    *,
    teacher: str | None = None,
    device: str | None = None,
    events: Events | None = None,
) -> TrainedRun:
    """Train ``spec`` on the COCO root ``data`` into the run folder ``out`` (resuming it), distilled from
    the prepared ``teacher`` folder when given (its maps must have been cached on ``data`` at the
    network's input size, unless the run augments)."""
    from posenas.files import check_output_folder
    from posenas.posenet.nets.distill import load_prepared_teacher
    from posenas.posenet.nets.train import Trainer

    events = events or Events()
    check_output_folder(str(out), "run folder")
    teacher_net = cache = None
    if teacher:
        prepared = load_prepared_teacher(teacher)
        teacher_net, cache = prepared.teacher, prepared.cache
        # Image ids repeat across roots (every synthetic root numbers from 1): a cache made on other data
        # or at another input size would silently teach the wrong maps.
        same_data = prepared.info.data == str(Path(data).resolve())
        if not config.augment and (not same_data or prepared.info.input_size != spec.input_size):
            raise TeacherError(
                f"{teacher}: its maps were cached on {prepared.info.data} at input {prepared.info.input_size}, "
                f"not {data} at {spec.input_size}; prepare the teacher on {data} again"
            )
    out = Path(out)
    resumed = (out / "last.pt").is_file()
    events.message(
        f"{'resuming' if resumed else 'training'} {spec.name} on {data} -> {out}"
        f" ({'distilled from ' + str(teacher) if teacher else 'no teacher'})"
    )
    if cache is not None and cache.unlabeled is not None and config.alpha < 1:
        events.message(f"mixing in {len(cache.unlabeled)} unlabeled images (distillation loss only)")
    started = time.perf_counter()
    switch: list[dict[str, Any]] = []

    def quantization(when: str, rows: list) -> None:
        from posenas.posenet.nets.diagnostics import collapse_warning

        if when == "switch":
            switch[:] = [r.to_dict() for r in rows]
        warning = collapse_warning(rows)
        if warning:
            events.message(f"warning: {warning}", "warning")

    with TrainingProgress(events, spec.name, config.epochs, config.batch_size) as (on_batch, on_epoch):
        trainer = Trainer(
            spec,
            data,
            out,
            config,
            teacher=teacher_net,
            teacher_cache=cache,
            device=device,
            on_batch=on_batch,
            on_epoch=on_epoch,
            on_quantization=quantization,
        )
        if spec.lowest_bits < 8:
            events.message(recipe_line(trainer))
        trainer.run()
    return _finished(spec, out, time.perf_counter() - started, switch or None)


def recipe_line(trainer: Any) -> str:
    """How a network with weights below 8 bits is trained: the low-bit recipe's settings, or that it is off."""
    recipe, config = trainer.recipe, trainer.config
    if recipe is None:
        return "weights below 8 bits: the low-bit recipe is off (ai8x v1 QAT)"
    qat = config.qat_epochs
    bias = "8-bit bias" if recipe.bias_bits == 8 else "bias at the weights' bits"
    shift = "least-error held shift" if recipe.shift == "mse" else f"shift from the {recipe.shift_quantile:g} quantile"
    distill = f", {recipe.float_distill:g} of the QAT loss from the float network" if recipe.float_distill else ""
    return f"weights below 8 bits: low-bit recipe ({bias}, {shift}{distill}; {qat} QAT epochs at lr {config.qat_lr:g})"


def _finished(spec: ArchSpec, out: Path, seconds: float, switch: list[dict[str, Any]] | None) -> TrainedRun:
    """The run folder ``out`` read back: its history, best epoch and quantization diagnostics."""
    from posenas.posenet.nets.checkpoint import load_checkpoint
    from posenas.posenet.nets.train import QUANTIZATION_REPORT

    checkpoint = load_checkpoint(out / "last.pt")
    best = float(checkpoint.extras.get("best_mAP", math.nan))
    epoch = int(checkpoint.extras.get("best_epoch", -1))
    path = out / QUANTIZATION_REPORT
    report = json.loads(path.read_text()) if spec.lowest_bits < 8 and path.is_file() else {}
    return TrainedRun(
        name=spec.name,
        folder=out,
        checkpoint=out / "best.pt",
        history=list(checkpoint.history),
        best_ap=best if math.isfinite(best) else None,
        best_epoch=epoch if epoch >= 0 else None,
        seconds=seconds,
        quantization_switch=switch,
        quantization_end=report.get("end"),
        quantization_warning=report.get("end_warning"),
    )


def train_trial(
    study: Any,
    number: int,
    storage: str,
    *,
    storage_given: bool = True,
    out: Path | None = None,
    device: str | None = None,
    events: Events | None = None,
) -> TrainedRun:
    """Train trial ``number`` of ``study`` (an Optuna study in ``storage``) stand-alone, as the search's
    last stage trains its front: the study's data, teacher cache and schedule, and the supernet's weights
    as the start; recorded on the study so that an export of the trial finds it. Into ``out``, or the
    folder the study keeps its retrained networks in. A trial that already has stand-alone weights and
    no ``out`` is not trained again (``already_trained``). ``storage_given`` False: the storage is the
    study's default one, and the export command returned leaves it out."""
    from dataclasses import replace

    from posenas.errors import DoesNotFit
    from posenas.files import check_output_folder
    from posenas.search.retrain import claim, train_standalone
    from posenas.search.storage import study_lock
    from posenas.search.trials import NoWeights, study_run, trial_command, trial_spec, trial_weights

    events = events or Events()
    export = trial_command(
        "export", number, study.study_name, storage if storage_given else None, "--out", f"export-trial{number}"
    )
    try:
        found = trial_weights(study, number, storage)
    except NoWeights:
        found = None
    except DoesNotFit as exc:
        raise DoesNotFit(f"{exc}; posenas trains only networks that fit") from None
    spec = trial_spec(study, number)
    if found is not None and out is None:
        return TrainedRun(
            name=spec.name,
            folder=found.parent,
            checkpoint=found,
            history=[],
            best_ap=None,
            best_epoch=None,
            seconds=0.0,
            trial=number,
            study=study.study_name,
            export=export,
            already_trained=True,
        )
    run = study_run(study)
    out = Path(out) if out else run.folder_of(number)
    check_output_folder(str(out), "run folder")
    config = run.train_config
    teacher_cache = _study_teacher_cache(run, spec.input_size)
    init_state, start = None, "random weights (the study has no supernet)"
    if run.supernet is not None:
        init_state, start = _inherited(run, spec, device), f"its weights in the supernet {run.supernet}"
    lock = lambda: study_lock(storage, study.study_name)  # noqa: E731
    if not claim(study, number, lock):
        raise StudyError(
            f"trial {number} of {study.study_name} is being trained stand-alone by another worker; wait for it "
            "(its export then finds its weights)"
        )
    events.message(
        f"training trial {number} {spec.name} of {study.study_name} stand-alone from {start}: "
        f"{config.epochs} epochs ({config.qat_epochs} QAT), the study's data {run.data} -> {out}"
    )
    result = train_standalone(
        study,
        number,
        spec,
        config,
        Path(run.data),
        out,
        lock=lock,
        init_state=init_state,
        teacher_cache=teacher_cache,
        device=device,
        events=events,
    )
    trained = _finished(spec, out, result["seconds"], None)
    return replace(trained, trial=number, study=study.study_name, export=export, checkpoint=Path(result["checkpoint"]))


def _study_teacher_cache(run: Any, input_size: int) -> Any:
    """The teacher cache the study's search trained with (None without a teacher or when it is gone)."""
    from posenas.posenet.nets.distill import load_prepared_teacher
    from posenas.search.inputs import cache_for

    if run.teacher is None:
        return None
    if not (Path(run.teacher) / "teacher.json").is_file():
        raise TeacherError(f"{run.teacher}: the study's teacher is gone; rerun the search with the same output folder")
    return cache_for(load_prepared_teacher(run.teacher), Path(run.data), input_size)


def _inherited(run: Any, spec: ArchSpec, device: str | None) -> dict[str, Any]:
    """``spec``'s weights in the study's supernet, BN re-estimated on the search's calibration images."""
    from posenas.posenet.nets.supernet_score import SubnetScorer
    from posenas.posenet.nets.supernet_train import load_supernet

    net, _ = load_supernet(run.supernet)
    scorer = SubnetScorer(
        net.eval(), run.data, calibration_images=run.calibration_images, val_images=1, seed=run.seed, device=device
    )
    return scorer.inherited(spec).cpu().state_dict()
