"""A study's trials after the search: their specs, their weights, and what a stand-alone training needs.

``posenas export --trial``, ``posenas train --trial`` and ``posenas spec --trial`` read a study through
this module, whatever made its trials. A trial's stand-alone weights are, in this order: those the
search's last stage (or ``posenas train --trial``) trained, recorded in the study's ``ATTR_STANDALONE``;
those of a ``--scorer train`` trial (its ``metrics["checkpoint"]``); or those of the earlier trial whose
score it reused (the same network). A front member the supernet scored but nobody trained has none:
``NoWeights`` says so and names the command that trains it.

``ATTR_RUN`` is the study attribute the search writes once its inputs exist: the folders of its data,
teacher and supernet and its stand-alone schedule, so that a network can be trained later exactly as the
search's last stage would have.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from posenas.errors import CheckpointError, DoesNotFit, StudyError
from posenas.posenet.nets.config import TrainConfig
from posenas.search.records import (
    ATTR_FEASIBLE,
    ATTR_METRICS,
    ATTR_REUSED_FROM,
    ATTR_SPEC,
    ATTR_STANDALONE,
    ATTR_VIOLATIONS,
)
from posenas.search.storage import open_storage, sqlite_path
from posenas.space.spec import ArchSpec

ATTR_RUN = "run"  # a study attribute: StudyRun.to_dict()
RETRAIN_FOLDER = "retrain"  # OUT/retrain/trial-NNNN: stand-alone runs of a study's trials


class NoWeights(StudyError):
    """A trial that fits but has no stand-alone weights; ``command`` trains it."""

    def __init__(self, message: str, command: str) -> None:
        super().__init__(message)
        self.command = command


def default_storage(study_name: str, root: Path = Path("posenas-runs")) -> str:
    """The SQLite URL ``posenas search`` uses without ``--out`` or ``--storage``."""
    return f"sqlite:///{(root / study_name / 'study.db').resolve()}"


def load_study(study_name: str | None, storage_url: str | None) -> tuple[optuna.Study, str]:
    """The study and its storage URL (default: ``default_storage``); StudyError when either is missing."""
    if not study_name:
        raise StudyError("a trial needs the name of its study (the study name posenas search printed)")
    url = storage_url or default_storage(study_name)
    path = sqlite_path(url)
    if path is not None and not path.is_file():
        raise StudyError(f"no study database {path}")
    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(url))
    except KeyError:
        raise StudyError(f"no study {study_name!r} in {url}") from None
    return study, url


def get_trial(study: optuna.Study, number: int) -> optuna.trial.FrozenTrial:
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if number not in trials:
        raise StudyError(f"study {study.study_name} has no trial {number} (it has trials 0 to {len(trials) - 1})")
    return trials[number]


def trial_spec(study: optuna.Study, number: int) -> ArchSpec:
    """Trial ``number``'s network (named as the search named it: ``trial37``, or the baseline's name)."""
    trial = get_trial(study, number)
    if ATTR_SPEC not in trial.user_attrs:
        raise StudyError(f"trial {number} of {study.study_name} has no network yet (state {trial.state.name})")
    return ArchSpec.from_dict(trial.user_attrs[ATTR_SPEC])


def trial_command(verb: str, number: int, study_name: str, storage_url: str | None, *extra: str) -> str:
    """``posenas VERB --trial N --study S`` (with ``--storage`` when the study is not in its default place)."""
    words = ["posenas", verb, "--trial", str(number), "--study", study_name]
    if storage_url and storage_url != default_storage(study_name):
        words += ["--storage", storage_url]
    return shlex.join(words + list(extra))


def trial_weights(study: optuna.Study, number: int, storage_url: str | None = None) -> Path:
    """The stand-alone checkpoint (``best.pt``) of trial ``number``, whatever made it.

    DoesNotFit for a trial over its budget; ``NoWeights`` (naming ``posenas train --trial``) for one that
    fits and was never trained stand-alone; CheckpointError when the recorded file is gone."""
    trial = get_trial(study, number)
    attrs = trial.user_attrs
    if not attrs.get(ATTR_FEASIBLE, False):
        reasons = "; ".join(attrs.get(ATTR_VIOLATIONS, [])) or "not checked"
        raise DoesNotFit(f"trial {number} of {study.study_name} does not fit its budget and was not trained: {reasons}")
    standalone: Mapping[str, Any] = study.user_attrs.get(ATTR_STANDALONE) or {}
    reused = attrs.get(ATTR_REUSED_FROM)
    candidates = [
        (standalone.get(str(number)) or {}).get("checkpoint"),
        (attrs.get(ATTR_METRICS) or {}).get("checkpoint"),
    ]
    if reused is not None:  # the same network, scored (and perhaps trained) as that trial
        candidates.append((standalone.get(str(reused)) or {}).get("checkpoint"))
    for recorded in filter(None, candidates):
        found = _existing(Path(recorded), storage_url)
        if found is None:
            raise CheckpointError(f"{recorded}: trial {number}'s checkpoint is missing")
        return found
    command = trial_command("train", number, study.study_name, storage_url)
    entry = standalone.get(str(number)) or {}
    if "worker" in entry:
        raise NoWeights(
            f"trial {number} of {study.study_name} is being trained stand-alone by {entry['worker']}; "
            f"wait for it, or if that worker is gone, run: {command}",
            command,
        )
    raise NoWeights(
        f"trial {number} of {study.study_name} has no stand-alone weights (the supernet scored it, nobody "
        f"trained it); train it with the study's schedule: {command}",
        command,
    )


def _existing(path: Path, storage_url: str | None) -> Path | None:
    """``path``, or for a relative one (studies before absolute paths were stored) the same path under
    one of the SQLite file's ancestors: the folder the search ran in."""
    if path.is_file():
        return path
    sqlite = sqlite_path(storage_url) if storage_url else None
    if path.is_absolute() or sqlite is None:
        return None
    for folder in sqlite.resolve().parents:
        if (folder / path).is_file():
            return folder / path
    return None


@dataclass(frozen=True)
class StudyRun:
    """What the search's stand-alone trainings used: the search folder, data, teacher, supernet, schedule."""

    out: str
    data: str
    teacher: str | None
    supernet: str | None
    train: dict[str, Any]  # TrainConfig.to_dict()
    seed: int
    calibration_images: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": self.out,
            "data": self.data,
            "teacher": self.teacher,
            "supernet": self.supernet,
            "train": self.train,
            "seed": self.seed,
            "calibration_images": self.calibration_images,
        }

    @property
    def train_config(self) -> TrainConfig:
        return TrainConfig(**self.train)

    def folder_of(self, number: int) -> Path:
        return Path(self.out) / RETRAIN_FOLDER / f"trial-{number:04d}"


def record_run(study: optuna.Study, run: StudyRun) -> None:
    """Record ``run`` on the study (the latest search's; workers sharing a study share its inputs)."""
    if study.user_attrs.get(ATTR_RUN) != run.to_dict():
        study.set_user_attr(ATTR_RUN, run.to_dict())


def study_run(study: optuna.Study) -> StudyRun:
    raw = study.user_attrs.get(ATTR_RUN)
    if not isinstance(raw, Mapping):
        raise StudyError(
            f"study {study.study_name} does not record its data, teacher and schedule (a search made "
            "before posenas recorded them); rerun posenas search with the same output folder to record them"
        )
    try:
        return StudyRun(**raw)
    except TypeError:
        raise StudyError(f"study {study.study_name}: its recorded run settings are malformed") from None


__all__ = [
    "ATTR_RUN",
    "NoWeights",
    "RETRAIN_FOLDER",
    "StudyRun",
    "default_storage",
    "get_trial",
    "load_study",
    "record_run",
    "study_run",
    "trial_command",
    "trial_spec",
    "trial_weights",
]
