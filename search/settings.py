"""A study's settings: the study file (studies/*.yaml) with command-line overrides, validated in one place.

A study file is read here, strictly (an unknown key at any level is refused with its place). Sections:

* ``space``: the search space (parsed by ``posenas.space.sampling.SearchSpace.from_dict``);

* ``objectives``: a quality first, ``ap`` (QAT AP, up), ``loss`` (validation loss against the targets,
  down) or ``fg_loss`` (the same on the cells near keypoints and limbs only, down), then ``params`` and/or
  ``latency`` (down);
* ``search``: ``sampler`` (nsga2 | tpe), ``seed``, ``trials`` (completed trials in all, rejected ones
  included), ``timeout_minutes`` (the wall-clock budget of one worker's whole command: data, teacher,
  supernet, scoring and retraining are sized to fit it; None for none), ``population`` (NSGA-II),
  ``scorer`` (supernet | train: how a trial is scored), ``score_arithmetic`` (qat | float: the arithmetic
  in which the supernet scorer runs a subnet; QAT at the spec's weight bits, or float), ``finetune_steps``
  (the supernet scorer trains each subnet this many steps from its inherited weights before measuring it,
  with the ``train`` section's ``batch_size`` and ``qat_lr``);
* ``data``: ``root`` (a COCO root) or ``synthetic: {train, val, seed}`` (made on first use);
* ``teacher``: ``none``, ``{checkpoint: FILE}`` or ``{arch: NAME, epochs: N, train_images: M}``;
* ``train``: the per-trial schedule (``posenet.train.TrainConfig`` fields; ``qat_epochs`` counts the last
  epochs that are QAT).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from posenas.catalog import check_keys, load_dataclass, lookup, read_mapping
from posenas.errors import StudyError, UsageError
from posenas.posenet.nets.config import TrainConfig
from posenas.search import ranges
from posenas.space.sampling import SearchSpace
from posenas.space.spec import SpecError

QUALITIES = ("ap", "loss", "fg_loss")  # the first objective: how good a network is
OBJECTIVES = (*QUALITIES, "params", "latency")
SAMPLERS = ("nsga2", "tpe")
SCORERS = ("supernet", "train")
ARITHMETICS = ("qat", "float")  # how the supernet scorer runs a subnet


@dataclass(frozen=True)
class DataSettings:
    root: str | None = None
    synthetic_train: int = 2000
    synthetic_val: int = 200
    synthetic_seed: int = 0


@dataclass(frozen=True)
class TeacherSettings:
    kind: str = "none"  # none | checkpoint | arch
    checkpoint: str | None = None
    arch: str | None = None
    epochs: int = 4
    train_images: int | None = None


@dataclass(frozen=True)
class StudySettings:
    name: str
    space: SearchSpace
    budget: str = "max78000"
    objectives: tuple[str, ...] = ("ap", "params")
    sampler: str = "nsga2"
    seed: int = 0
    trials: int = 40
    timeout_minutes: float | None = None
    population: int = 8
    scorer: str = "supernet"
    score_arithmetic: str = "qat"
    finetune_steps: int = 0
    data: DataSettings = field(default_factory=DataSettings)
    teacher: TeacherSettings = field(default_factory=TeacherSettings)
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def quality(self) -> str:
        """The first objective: ``ap``, ``loss`` or ``fg_loss``."""
        return self.objectives[0]

    def with_overrides(self, **overrides: Any) -> StudySettings:
        """Command-line flags win over the file; None means 'not given'."""
        given = {k: v for k, v in overrides.items() if v is not None}
        train = {k[len("train_") :]: given.pop(k) for k in list(given) if k.startswith("train_")}
        settings = dataclasses.replace(self, **given)
        if train:
            settings = dataclasses.replace(settings, train=_train_config({**_train_dict(self.train), **train}))
        settings.validate()
        return settings

    def validate(self) -> None:
        objectives = self.objectives
        if (
            not objectives
            or objectives[0] not in QUALITIES
            or any(o not in OBJECTIVES for o in objectives)
            or any(o in QUALITIES for o in objectives[1:])
            or len(set(objectives)) != len(objectives)
        ):
            raise StudyError(
                f"objectives {list(objectives)}: must start with one of {', '.join(QUALITIES)}, then "
                "params and/or latency"
            )
        if self.scorer not in SCORERS:
            raise StudyError(f"scorer {self.scorer!r}: must be one of {', '.join(SCORERS)}")
        if self.score_arithmetic not in ARITHMETICS:
            raise StudyError(f"score_arithmetic {self.score_arithmetic!r}: must be one of {', '.join(ARITHMETICS)}")
        if self.finetune_steps < 0:
            raise StudyError(f"search: finetune_steps must be >= 0, got {self.finetune_steps}")
        if self.sampler not in SAMPLERS:
            raise StudyError(f"sampler {self.sampler!r}: must be one of {', '.join(SAMPLERS)}")
        if self.trials < 1 or self.population < 2:
            raise StudyError(
                f"search: trials must be >= 1 and population >= 2, got {self.trials} and {self.population}"
            )
        if self.timeout_minutes is not None and not (math.isfinite(self.timeout_minutes) and self.timeout_minutes > 0):
            raise StudyError(f"search: timeout_minutes must be a positive finite number, got {self.timeout_minutes}")


# The range of every numeric key of a study file: the same types as the command line's flags, so a key and
# its flag accept the same values (search/ranges.py).
SEARCH_TYPES = {
    "seed": ranges.SEED,
    "trials": ranges.COUNT,
    "population": ranges.Integer(2, 10_000),
    "finetune_steps": ranges.Integer(0, 100_000),
    "timeout_minutes": ranges.Number(0, 10**5, low_open=True),
}
SYNTHETIC_TYPES = {"train": ranges.SYNTH_IMAGES, "val": ranges.SYNTH_IMAGES, "seed": ranges.SEED}
TEACHER_TYPES = {"epochs": ranges.EPOCHS, "train_images": ranges.COUNT}
TRAIN_TYPES = {
    "epochs": ranges.EPOCHS,
    "qat_epochs": ranges.QAT_EPOCHS,
    "batch_size": ranges.BATCH,
    "lr": ranges.LEARNING_RATE,
    "qat_lr": ranges.LEARNING_RATE,
    "alpha": ranges.Number(0, 1),
    "seed": ranges.SEED,
    "workers": ranges.Integer(0, 64),
    "val_images": ranges.COUNT,
    "train_images": ranges.COUNT,
    "weight_decay": ranges.Number(0, 1),
}


def typed(where: str, value: Any, kind: ranges.Integer | ranges.Number) -> int | float:
    """A study file's number ``value`` at key ``where``, checked as the matching flag checks it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise StudyError(f"{where}: must be {kind.describe()}, got {value!r}")
    if isinstance(kind, ranges.Integer) and isinstance(value, float):
        raise StudyError(f"{where}: must be {kind.describe()}, got {value!r}")
    try:
        return kind.parse(repr(value) if isinstance(value, float) else str(value))
    except ranges.RangeError as exc:
        raise StudyError(f"{where}: {exc}") from None


def _text(where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise StudyError(f"{where}: must be a string, got {value!r}")
    return value


def _train_dict(config: TrainConfig) -> dict[str, Any]:
    out = config.to_dict()
    out.pop("qat_start")
    out["qat_epochs"] = config.qat_epochs
    return out


def _train_config(values: Mapping[str, Any]) -> TrainConfig:
    """The study's ``train`` section: ``TrainConfig``'s fields, with ``qat_epochs`` (the last epochs in QAT)
    in place of ``qat_start``; every number in the range of its flag."""
    values = dict(values)
    known = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "qat_start"] + ["qat_epochs"]
    check_keys(values, known=known, where="train", error=StudyError)
    checks = {key: _ranged(kind, optional=key in ("val_images", "train_images")) for key, kind in TRAIN_TYPES.items()}
    epochs = checks["epochs"]("train.epochs", values.get("epochs", TrainConfig.epochs))
    qat_epochs = checks["qat_epochs"]("train.qat_epochs", values.pop("qat_epochs", 0))
    if not 0 <= qat_epochs <= epochs:
        raise StudyError(f"train.qat_epochs: {qat_epochs} is more than train.epochs ({epochs})")
    values["qat_start"] = TrainConfig.qat_start_for(epochs, qat_epochs)
    try:
        return load_dataclass(TrainConfig, values, where="train", error=StudyError, checks=checks)
    except UsageError as exc:
        raise StudyError(f"train: {exc}") from None


def _ranged(kind: ranges.Integer | ranges.Number, *, optional: bool = False) -> Callable[[str, Any], Any]:
    """A ``load_dataclass`` check: the study file's number at a path, in the range of its flag (None allowed
    where the setting is optional)."""
    return lambda where, value: None if optional and value is None else typed(where, value, kind)


TOP_KEYS = ("name", "budget", "space", "objectives", "search", "data", "teacher", "train")
SEARCH_KEYS = (
    "sampler",
    "seed",
    "trials",
    "timeout_minutes",
    "population",
    "scorer",
    "score_arithmetic",
    "finetune_steps",
)
DATA_KEYS = ("root", "synthetic")
SYNTHETIC_KEYS = ("train", "val", "seed")
TEACHER_KEYS = {"checkpoint": ("checkpoint",), "arch": ("arch", "epochs", "train_images")}


def builtin_studies() -> list[str]:
    """The names of the study files shipped in studies/."""
    folder = resources.files("posenas.studies")
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def read_study_file(name_or_path: str | Path) -> Mapping[str, Any]:
    """The raw mapping of a study file: a name of a file in studies/ (``max78000``) or a YAML path."""
    folder = resources.files("posenas.studies")
    return lookup(
        name_or_path,
        kind="study",
        names=builtin_studies(),
        suffixes=(".yaml", ".yml"),
        error=StudyError,
        builtin=lambda name: read_mapping(folder / f"{name}.yaml", f"study {name}", StudyError),
        from_file=lambda path: read_mapping(path, f"study {path}", StudyError),
    )


def load_settings(name_or_path: str | Path) -> StudySettings:
    """Parse a study file (a name in studies/ or a path) into settings.

    Every level is strict: an unknown key is refused with its place (``search: unknown key 'trails'``), and
    a key that is absent takes the settings dataclass's default."""
    raw = read_study_file(name_or_path)
    _known(raw, TOP_KEYS, "study")
    if not isinstance(raw.get("space"), Mapping):
        raise StudyError(f"study {name_or_path}: needs a 'space' mapping")
    search = _section(raw, "search", SEARCH_KEYS)
    data = _section(raw, "data", DATA_KEYS)
    synthetic = _section(data, "synthetic", SYNTHETIC_KEYS, "data.synthetic")
    train = _section(raw, "train", None)
    try:
        space = SearchSpace.from_dict(raw["space"])
    except SpecError as exc:
        raise StudyError(str(exc)) from None
    default, default_data = _defaults(StudySettings), _defaults(DataSettings)

    def number(key: str) -> Any:
        value = search.get(key, default[key])
        return None if value is None and key == "timeout_minutes" else typed(f"search.{key}", value, SEARCH_TYPES[key])

    def synthetic_count(key: str, field_name: str) -> Any:
        return typed(f"data.synthetic.{key}", synthetic.get(key, default_data[field_name]), SYNTHETIC_TYPES[key])

    root = data.get("root")
    settings = StudySettings(
        name=_text("name", raw.get("name", str(name_or_path))),
        budget=_text("budget", raw.get("budget", default["budget"])),
        space=space,
        objectives=tuple(
            _text("objectives", o) for o in _list(raw.get("objectives", list(default["objectives"])), "objectives")
        ),
        sampler=_text("search.sampler", search.get("sampler", default["sampler"])),
        seed=number("seed"),
        trials=number("trials"),
        timeout_minutes=number("timeout_minutes"),
        population=number("population"),
        scorer=_text("search.scorer", search.get("scorer", default["scorer"])),
        score_arithmetic=_text("search.score_arithmetic", search.get("score_arithmetic", default["score_arithmetic"])),
        finetune_steps=number("finetune_steps"),
        data=DataSettings(
            root=None if root is None else _text("data.root", root),
            synthetic_train=synthetic_count("train", "synthetic_train"),
            synthetic_val=synthetic_count("val", "synthetic_val"),
            synthetic_seed=synthetic_count("seed", "synthetic_seed"),
        ),
        teacher=_teacher(raw.get("teacher", "none")),
        train=_train_config(train),
    )
    settings.validate()
    return settings


def _defaults(cls: type) -> dict[str, Any]:
    """The declared defaults of a settings dataclass: the one place a default is written."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def _known(data: Mapping[str, Any], known: tuple[str, ...], where: str) -> None:
    check_keys(data, known=known, where=where, error=StudyError)


def _section(raw: Mapping[str, Any], key: str, known: tuple[str, ...] | None, where: str | None = None) -> dict:
    """``raw[key]`` as a dict (absent or null: empty), refusing a non-mapping and, with ``known``, unknown keys."""
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise StudyError(f"{where or key}: must be a mapping, got {type(value).__name__}")
    if known is not None:
        _known(value, known, where or key)
    return dict(value)


def _list(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise StudyError(f"{where}: must be a list, got {value!r}")
    return value


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _teacher(raw: Any) -> TeacherSettings:
    if raw in (None, "none", False):
        return TeacherSettings()
    if not isinstance(raw, Mapping) or not ("checkpoint" in raw) ^ ("arch" in raw):
        raise StudyError(f"teacher: expected none, {{checkpoint: FILE}} or {{arch: NAME, epochs: N}}, got {raw!r}")
    kind = "checkpoint" if "checkpoint" in raw else "arch"
    _known(raw, TEACHER_KEYS[kind], "teacher")
    if kind == "checkpoint":
        return TeacherSettings(kind="checkpoint", checkpoint=_text("teacher.checkpoint", raw["checkpoint"]))
    limit = raw.get("train_images")
    return TeacherSettings(
        kind="arch",
        arch=_text("teacher.arch", raw["arch"]),
        epochs=typed("teacher.epochs", raw.get("epochs", TeacherSettings.epochs), TEACHER_TYPES["epochs"]),
        train_images=None if limit is None else typed("teacher.train_images", limit, TEACHER_TYPES["train_images"]),
    )
