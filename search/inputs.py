"""A study's inputs, made once per output folder: its data root and its prepared teacher.

Shared by the commands that train on a study (``posenas supernet``; ``posenas search`` has the same
layout), so that a search and a supernet run pointed at the same ``--out`` reuse one synthetic data set
(``OUT/data/synth-seedS-TRAIN-VAL``) and one teacher (``OUT/teacher-ARCH``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from posenas.errors import DataError
from posenas.events import CountedProgress, Events, TrainingProgress

if TYPE_CHECKING:
    from posenas.posenet.nets.distill import PreparedTeacher
    from posenas.posenet.pose.coco import CocoRoot
    from posenas.search.settings import StudySettings
    from posenas.search.timeplan import Clock


def study_data_root(settings: StudySettings, data: str | CocoRoot | None, out: Path, events: Events) -> CocoRoot:
    """``data`` if given (a ``CocoRoot`` from ``check_study_inputs`` keeps the annotations it loaded), else
    the study's root, else the built-in synthetic people made under ``out``. Every dataset the study makes
    of it shares one load of each split's annotations."""
    from posenas.posenet.pose import synth
    from posenas.posenet.pose.coco import CocoRoot, annotation_path, coco_root

    if data or settings.data.root:
        root = coco_root(data or settings.data.root)
        _check_root(root)
        return root
    d = settings.data
    path = out / "data" / f"synth-seed{d.synthetic_seed}-{d.synthetic_train}-{d.synthetic_val}"
    if not annotation_path(path, "val").is_file():
        events.message(
            f"making the built-in synthetic people: {d.synthetic_train} + {d.synthetic_val} images -> {path}"
        )
        synth.write_coco_root(path, train=d.synthetic_train, val=d.synthetic_val, seed=d.synthetic_seed)
    return CocoRoot(path)


def _check_root(root: CocoRoot, *, read: bool = False) -> None:
    """A DataError now, not as a failure of every trial: the root lacks a split's annotation file, or (with
    ``read``) a split's annotations do not load or its first image does not decode."""
    from posenas.posenet.pose.coco import CocoPoseDataset, annotation_path

    for split in ("train", "val"):
        if not annotation_path(root, split).is_file():
            raise DataError(
                f"data root {root}: no {annotation_path(root, split).relative_to(root)} (a COCO 2017 "
                "person-keypoints root is needed)"
            )
    for split in ("train", "val") if read else ():
        dataset = CocoPoseDataset(root, split, people_only=split == "train")
        if not len(dataset):
            raise DataError(f"data root {root}: the {split} split has no images{' with people' * (split == 'train')}")
        dataset.load_image(dataset.image_ids[0])


def check_study_inputs(settings: StudySettings, data: str | None, teacher: str | None) -> CocoRoot | None:
    """Refuse a data root or a teacher folder that cannot be used, before anything is written (the output
    folder, the study's database, the synthetic data). The root given or named by the study, loaded and
    checked (pass it on to ``study_data_root``); None when the study makes synthetic data."""
    from posenas.errors import TeacherError
    from posenas.posenet.pose.coco import CocoRoot

    root = None
    if data or settings.data.root:
        root = CocoRoot(data or settings.data.root)
        _check_root(root, read=True)
    if teacher and teacher != "none" and not (Path(teacher) / "teacher.json").is_file():
        raise TeacherError(f"{teacher}: not a prepared teacher (no teacher.json; make one with posenas teacher)")
    return root


def study_teacher(
    settings: StudySettings,
    teacher: str | None,
    data: str | os.PathLike,
    out: Path,
    events: Events,
    device: str | None = None,
    clock: Clock | None = None,
) -> PreparedTeacher | None:
    """The prepared teacher of ``--teacher`` (a folder, or 'none'), else the study's, prepared once under
    ``out``; None without one. With a time-limited ``clock``, a teacher the study trains is sized to the
    teacher's share (training images per epoch), or skipped (a cut) when even a few batches do not fit."""
    from posenas.posenet.nets.distill import load_prepared_teacher

    if teacher == "none" or (teacher is None and settings.teacher.kind == "none"):
        return None
    if teacher:
        folder = Path(teacher)
    else:
        t = settings.teacher
        folder = out / ("teacher-" + (t.arch or "checkpoint"))
        if not (folder / "teacher.json").is_file():
            events.message(f"preparing the teacher ({t.arch or t.checkpoint}) -> {folder}")
            train_images, deadline = t.train_images, None
            if t.arch and clock is not None and clock.limited:
                sized = _sized_teacher(settings, data, clock, device)
                if sized is None:
                    return None
                train_images, deadline = sized
            prepare_teacher_reported(
                data,
                folder,
                events,
                checkpoint=t.checkpoint,
                arch=t.arch,
                epochs=t.epochs,
                train_images=train_images,
                device=device,
                deadline=deadline,
            )
    if clock is not None:
        clock.finish("teacher")
    return load_prepared_teacher(folder)


TEACHER_MIN_BATCHES = 8


def _sized_teacher(
    settings: StudySettings, data: str | os.PathLike, clock: Clock, device: str | None
) -> tuple[int, float] | None:
    """Training images per epoch for the study's teacher within its share of ``clock``, and the deadline
    (``time.monotonic()``) its training is paced to; None: skipped, cut.

    Its cost: ``epochs`` training epochs plus one forward pass over every training image for the map cache
    (a forward costs about a third of a training step) plus each epoch's validation. The training is paced
    to end where the cache's estimated time begins."""
    import time

    import torch

    from posenas.posenet.nets.model import build_model
    from posenas.posenet.nets.train import PreloadedSamples, model_input, seconds_per_training_image
    from posenas.posenet.pose.coco import CocoPoseDataset
    from posenas.search.timeplan import images_that_fit
    from posenas.space.baselines import get_arch

    t = settings.teacher
    spec = get_arch(t.arch)
    batch = settings.train.batch_size
    train = CocoPoseDataset(data, "train", input_size=spec.input_size, people_only=True)
    cached = len(train)  # the map cache covers the training images with people, as the teacher trains on
    available = min(cached, t.train_images or cached)
    train.image_ids = train.image_ids[:batch]
    images = model_input(PreloadedSamples(train).tensors["images"], build_model(spec).mode)
    model = build_model(spec).to(torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu")))
    per_image = seconds_per_training_image(model, images.to(next(model.parameters()).device))
    seconds = clock.seconds_for("teacher")
    caching = per_image * cached / 3
    fixed = caching + per_image * t.epochs * (settings.train.val_images or 200) / 3
    fit = images_that_fit(seconds - fixed, per_image, t.epochs, available, TEACHER_MIN_BATCHES * batch)
    if fit is None:
        clock.skip(
            "teacher",
            f"the study's teacher ({t.arch}, {t.epochs} epochs): needs more than its {seconds:.0f} s "
            f"({per_image:.2f} s per image measured); distillation from it skipped",
        )
        return None
    if fit < available:
        clock.cut(
            f"the study's teacher ({t.arch}): trained on {fit} of {available} images per epoch to fit {seconds:.0f} s"
        )
    return fit, time.monotonic() + max(0.0, seconds - caching)


def cache_for(prepared: PreparedTeacher | None, data: str | os.PathLike, input_size: int) -> Any:
    """The prepared teacher's map cache when it was made on ``data`` at ``input_size``, else None."""
    if prepared is None:
        return None
    same = prepared.info.data == str(Path(data).resolve()) and prepared.info.input_size == input_size
    return prepared.cache if same else None


def prepare_teacher_reported(
    data: Any,
    out: Any,
    events: Events,
    *,
    checkpoint: str | None = None,
    arch: str | None = None,
    epochs: int = 12,
    train_images: int | None = None,
    refinement_stages: int = 1,
    input_size: int = 128,
    device: str | None = None,
    teacher_input: int | None = None,
    images: str | None = None,
    deadline: float | None = None,
) -> Path:
    """``posenet.nets.distill.prepare_teacher`` with the teacher's training epochs and its map cache
    reported to ``events``; returns the teacher folder."""
    import numpy as np

    from posenas.posenet.nets.config import TrainConfig
    from posenas.posenet.nets.distill import prepare_teacher
    from posenas.space.baselines import get_arch

    spec = get_arch(arch) if arch else None
    if spec is not None:
        events.message(f"training the teacher {spec.name} (float, {epochs} epochs) -> {out}/run")
    training = TrainingProgress(events, "teacher", epochs, TrainConfig().batch_size)
    with training as (on_batch, on_epoch), CountedProgress(events, "teacher maps") as maps_made:
        folder = prepare_teacher(
            data,
            out,
            checkpoint=checkpoint,
            arch=spec,
            epochs=epochs,
            train_images=train_images,
            refinement_stages=refinement_stages,
            input_size=input_size,
            device=device,
            on_batch=on_batch,
            on_epoch=on_epoch,
            progress=maps_made,
            teacher_input=teacher_input,
            images=images,
            deadline=deadline,
        )
    maps = np.load(folder / "maps.npy", mmap_mode="r")
    events.message(f"wrote {folder}: teacher maps of {len(maps):,} images ({maps.nbytes / 2**20:.1f} MiB float16)")
    return Path(folder)
