"""A study's inputs, made once per output folder: its data root and its prepared teacher.

Shared by the commands that train on a study (``posenas supernet``; ``posenas search`` has the same
layout), so that a search and a supernet run pointed at the same ``--out`` reuse one synthetic data set
(``OUT/data/synth-seedS-TRAIN-VAL``) and one teacher (``OUT/teacher-ARCH``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from posenas.errors import DataError

if TYPE_CHECKING:
    from rich.console import Console

    from posenas.posenet.nets.distill import PreparedTeacher
    from posenas.search.settings import StudySettings


def study_data_root(settings: "StudySettings", data: str | None, out: Path, console: "Console") -> Path:
    """``data`` if given, else the study's root, else the built-in synthetic people made under ``out``."""
    from posenas.posenet.pose import synth
    from posenas.posenet.pose.coco import annotation_path

    if data or settings.data.root:
        root = Path(data or settings.data.root)
        for split in ("train", "val"):  # now, not as a failure of every trial
            if not annotation_path(root, split).is_file():
                raise DataError(f"data root {root}: no {annotation_path(root, split).relative_to(root)} (a COCO 2017 "
                                "person-keypoints root is needed)")  # fmt: skip
        return root
    d = settings.data
    root = out / "data" / f"synth-seed{d.synthetic_seed}-{d.synthetic_train}-{d.synthetic_val}"
    if not annotation_path(root, "val").is_file():
        console.print(f"making the built-in synthetic people: {d.synthetic_train} + {d.synthetic_val} images -> {root}")
        synth.write_coco_root(root, train=d.synthetic_train, val=d.synthetic_val, seed=d.synthetic_seed)
    return root


def study_teacher(settings: "StudySettings", teacher: str | None, data: Path, out: Path, console: "Console",
                  device: str | None = None) -> "PreparedTeacher | None":  # fmt: skip
    """The prepared teacher of ``--teacher`` (a folder, or 'none'), else the study's, prepared once under
    ``out``; None without one."""
    from posenas.posenet.nets.distill import load_prepared_teacher
    from posenas.search.report import prepare_teacher_with_progress

    if teacher == "none" or (teacher is None and settings.teacher.kind == "none"):
        return None
    if teacher:
        folder = Path(teacher)
    else:
        t = settings.teacher
        folder = out / ("teacher-" + (t.arch or "checkpoint"))
        if not (folder / "teacher.json").is_file():
            console.print(f"preparing the teacher ({t.arch or t.checkpoint}) -> {folder}")
            prepare_teacher_with_progress(data, folder, console, checkpoint=t.checkpoint, arch=t.arch, epochs=t.epochs,
                                          train_images=t.train_images, device=device)  # fmt: skip
    return load_prepared_teacher(folder)


def cache_for(prepared: "PreparedTeacher | None", data: Path, input_size: int) -> Any:
    """The prepared teacher's map cache when it was made on ``data`` at ``input_size``, else None."""
    if prepared is None:
        return None
    same = prepared.info.data == str(Path(data).resolve()) and prepared.info.input_size == input_size
    return prepared.cache if same else None
