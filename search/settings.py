"""A study's settings: the study file (studies/*.yaml) with command-line overrides, validated in one place.

Sections besides ``space`` (read by ``space.sampling``):

* ``objectives``: ``[ap, params]`` (AP up, parameters down), optionally ``latency`` (down);
* ``search``: ``sampler`` (nsga2 | tpe), ``seed``, ``trials`` (completed trials in all, rejected ones
  included), ``timeout_minutes`` (per worker, None for none), ``population`` (NSGA-II);
* ``data``: ``root`` (a COCO root) or ``synthetic: {train, val, seed}`` (made on first use);
* ``teacher``: ``none``, ``{checkpoint: FILE}`` or ``{arch: NAME, epochs: N, train_images: M}``;
* ``train``: the per-trial schedule (``posenet.train.TrainConfig`` fields; ``qat_epochs`` counts the last
  epochs that are QAT).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from posenas.errors import StudyError
from posenas.posenet.nets.train import TrainConfig
from posenas.space.sampling import SearchSpace, load_study_file
from posenas.space.spec import SpecError

OBJECTIVES = ("ap", "params", "latency")
SAMPLERS = ("nsga2", "tpe")




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
    budget: str
    space: SearchSpace
    objectives: tuple[str, ...] = ("ap", "params")
    sampler: str = "nsga2"
    seed: int = 0
    trials: int = 40
    timeout_minutes: float | None = None
    population: int = 8
    data: DataSettings = field(default_factory=DataSettings)
    teacher: TeacherSettings = field(default_factory=TeacherSettings)
    train: TrainConfig = field(default_factory=TrainConfig)

    def with_overrides(self, **overrides: Any) -> "StudySettings":
        """Command-line flags win over the file; None means 'not given'."""
        given = {k: v for k, v in overrides.items() if v is not None}
        train = {k[len("train_"):]: given.pop(k) for k in list(given) if k.startswith("train_")}
        settings = dataclasses.replace(self, **given)
        if train:
            settings = dataclasses.replace(settings, train=_train_config({**_train_dict(self.train), **train}))
        settings.validate()
        return settings

    def validate(self) -> None:
        if not self.objectives or self.objectives[0] != "ap" or any(o not in OBJECTIVES for o in self.objectives):
            raise StudyError(f"objectives {list(self.objectives)}: must start with ap, from {list(OBJECTIVES)}")
        if self.sampler not in SAMPLERS:
            raise StudyError(f"sampler {self.sampler!r}: must be one of {', '.join(SAMPLERS)}")
        if self.trials < 1 or self.population < 2:
            raise StudyError("search: trials must be >= 1 and population >= 2")


def _train_dict(config: TrainConfig) -> dict[str, Any]:
    out = config.to_dict()
    qat_start = out.pop("qat_start")
    out["qat_epochs"] = 0 if qat_start is None else config.epochs - qat_start
    return out


def _train_config(values: Mapping[str, Any]) -> TrainConfig:
    values = dict(values)
    known = {f.name for f in dataclasses.fields(TrainConfig)} | {"qat_epochs"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise StudyError(f"train: unknown key {unknown[0]!r}")
    epochs = int(values.get("epochs", TrainConfig.epochs))
    qat_epochs = int(values.pop("qat_epochs", 0))
    if not 0 <= qat_epochs <= epochs:
        raise StudyError(f"train: qat_epochs {qat_epochs} must be in [0, {epochs}]")
    values["qat_start"] = epochs - qat_epochs if qat_epochs else None
    try:
        return TrainConfig(**values)
    except (TypeError, ValueError) as exc:
        raise StudyError(f"train: {exc}") from None


def load_settings(name_or_path: str) -> StudySettings:
    """Parse a study file (a name in studies/ or a path) into settings; StudyError names the key."""
    raw = load_study_file(name_or_path)
    space = SearchSpace.from_dict(raw.get("space") or {})
    try:
        search = dict(raw.get("search") or {})
        data = dict(raw.get("data") or {})
        synthetic = dict(data.get("synthetic") or {})
        teacher_raw = raw.get("teacher", "none")
        settings = StudySettings(
            name=str(raw.get("name", name_or_path)), budget=str(raw.get("budget", "max78000")), space=space,
            objectives=tuple(raw.get("objectives", ["ap", "params"])), sampler=str(search.get("sampler", "nsga2")),
            seed=int(search.get("seed", 0)), trials=int(search.get("trials", 40)),
            timeout_minutes=None if search.get("timeout_minutes") is None else float(search["timeout_minutes"]),
            population=int(search.get("population", 8)),
            data=DataSettings(root=data.get("root"), synthetic_train=int(synthetic.get("train", 2000)),
                              synthetic_val=int(synthetic.get("val", 200)), synthetic_seed=int(synthetic.get("seed", 0))),
            teacher=_teacher(teacher_raw), train=_train_config(raw.get("train") or {}),
        )  # fmt: skip
    except (TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, SpecError):
            raise
        raise StudyError(f"study {name_or_path}: {exc}") from None
    settings.validate()
    return settings


def _teacher(raw: Any) -> TeacherSettings:
    if raw in (None, "none", False):
        return TeacherSettings()
    if not isinstance(raw, Mapping):
        raise StudyError(f"teacher: expected none, {{checkpoint: FILE}} or {{arch: NAME, epochs: N}}, got {raw!r}")
    if "checkpoint" in raw:
        return TeacherSettings(kind="checkpoint", checkpoint=str(raw["checkpoint"]))
    if "arch" in raw:
        limit = raw.get("train_images")
        return TeacherSettings(kind="arch", arch=str(raw["arch"]), epochs=int(raw.get("epochs", 4)),
                               train_images=None if limit is None else int(limit))  # fmt: skip
    raise StudyError("teacher: needs checkpoint or arch")
