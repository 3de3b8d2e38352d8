"""Study files: read by search.settings, strict at every level, defaults from the settings dataclasses."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from posenas.errors import StudyError
from posenas.posenet.nets.config import TrainConfig
from posenas.search.cli import main
from posenas.search.settings import DataSettings, StudySettings, TeacherSettings, load_settings, read_study_file

MINIMAL_SPACE = {
    "backbone": [
        {"name": "conv1", "width": [8, 16]},
        {"name": "conv2", "width": [8, 16], "pool": 2},
        {"name": "conv3", "width": [8, 16], "pool": 2},
    ],
    "cpm": {"depth": [1, 2], "width": [16, 32]},
    "head": {"width": [16, 32]},
}


def _write(tmp_path, study) -> str:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return str(path)


def test_a_minimal_study_takes_every_default_from_the_dataclasses(tmp_path):
    settings = load_settings(_write(tmp_path, {"name": "m", "space": MINIMAL_SPACE}))
    defaults = {f.name: f.default for f in dataclasses.fields(StudySettings) if f.default is not dataclasses.MISSING}
    for key, value in defaults.items():
        assert getattr(settings, key) == value, key
    assert settings.data == DataSettings() and settings.teacher == TeacherSettings()
    assert settings.train == TrainConfig(qat_start=None)  # no qat_epochs in the file: float only
    assert [s.name for s in settings.space.backbone] == ["conv1", "conv2", "conv3"]


def test_the_builtin_study_is_read_by_name():
    settings = load_settings("max78000")
    assert settings.name == "max78000" and settings.trials == 1000 and settings.train.epochs == 8
    assert (
        settings.scorer == "supernet"
        and settings.objectives == ("fg_loss", "params")
        and settings.timeout_minutes == 19
    )
    assert settings.finetune_steps == 30 and settings.score_arithmetic == "qat"
    assert read_study_file("max78000")["budget"] == "max78000"


# (where the typo is, the study with the typo, what the message must name)
TYPOS = [
    ("top", {"trails": 60}, "study: unknown key 'trails'"),
    ("search", {"search": {"trails": 60}}, "search: unknown key 'trails'"),
    ("data", {"data": {"roots": "/x"}}, "data: unknown key 'roots'"),
    ("synthetic", {"data": {"synthetic": {"trian": 5}}}, "data.synthetic: unknown key 'trian'"),
    ("teacher arch", {"teacher": {"arch": "tiny", "epoch": 3}}, "teacher: unknown key 'epoch'"),
    ("teacher checkpoint", {"teacher": {"checkpoint": "x.pth", "arch": "tiny"}}, "teacher: expected none"),
    ("train", {"train": {"epoch": 3}}, "train: unknown key 'epoch'"),
    ("space", {"space": {**MINIMAL_SPACE, "stem": ["pool"]}}, "space: unknown key 'stem'"),
    (
        "slot",
        {"space": {**MINIMAL_SPACE, "backbone": [{"name": "conv1", "widht": [8, 16]}]}},
        "space.backbone[0]: unknown key 'widht'",
    ),
    (
        "cpm",
        {"space": {**MINIMAL_SPACE, "cpm": {"depth": [1, 2], "width": [16, 32], "kernel": [3]}}},
        "space.cpm: unknown key 'kernel'",
    ),
    ("head", {"space": {**MINIMAL_SPACE, "head": {"width": [16, 32], "bits": [8]}}}, "space.head: unknown key 'bits'"),
]


@pytest.mark.parametrize("where, change, message", TYPOS, ids=[t[0] for t in TYPOS])
def test_an_unknown_key_at_any_level_is_refused_with_its_place(tmp_path, capsys, where, change, message):
    study = {"name": "t", "space": MINIMAL_SPACE, **change}
    path = _write(tmp_path, study)
    with pytest.raises(StudyError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_settings(path)
    assert main(["search", "--study", path, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "content, message",
    [
        ("space: 5\n", "needs a 'space' mapping"),
        ("- a\n- b\n", "must be a YAML mapping"),
        ("space: {backbone: [}\n", "malformed YAML"),
        ("name: x\nspace: {}\nsearch: 3\n", "search: must be a mapping"),
    ],
)
def test_malformed_study_files(tmp_path, content, message):
    path = tmp_path / "study.yaml"
    path.write_text(content)
    with pytest.raises(StudyError, match=message):
        load_settings(str(path))


def test_unknown_and_unreadable_study_files(tmp_path):
    with pytest.raises(StudyError, match="unknown study 'nope'.*max78000"):
        load_settings("nope")
    with pytest.raises(StudyError, match="is a directory"):
        load_settings(str(tmp_path))
    binary = tmp_path / "b.yaml"
    binary.write_bytes(bytes(range(256)))
    with pytest.raises(StudyError, match="not a UTF-8 text file"):
        load_settings(str(binary))


def test_bad_space_bounds_name_the_key(tmp_path):
    space = {**MINIMAL_SPACE, "cpm": {"depth": [0, 2], "width": [8, 16]}}
    with pytest.raises(StudyError, match="cpm.depth"):
        load_settings(_write(tmp_path, {"space": space}))
    space = {**MINIMAL_SPACE, "backbone": [{"name": "conv1", "width": [8, 4]}]}
    with pytest.raises(StudyError, match="conv1.width"):
        load_settings(_write(tmp_path, {"space": space}))
    with pytest.raises(StudyError, match="bits must be a non-empty list from"):
        load_settings(_write(tmp_path, {"space": {**MINIMAL_SPACE, "bits": [3]}}))


@pytest.mark.parametrize("objectives", [["params", "ap"], ["ap", "loss"], ["loss", "loss"], ["speed"], []])
def test_objectives_start_with_one_quality(tmp_path, objectives):
    with pytest.raises(StudyError, match="objectives"):
        load_settings(_write(tmp_path, {"name": "m", "space": MINIMAL_SPACE, "objectives": objectives}))


def test_an_unknown_scorer_is_refused(tmp_path):
    with pytest.raises(StudyError, match="scorer 'guess'"):
        load_settings(_write(tmp_path, {"name": "m", "space": MINIMAL_SPACE, "search": {"scorer": "guess"}}))


def test_score_arithmetic_is_read_checked_and_overridden(tmp_path):
    path = _write(tmp_path, {"name": "m", "space": MINIMAL_SPACE, "search": {"score_arithmetic": "float"}})
    assert load_settings(path).score_arithmetic == "float"
    assert load_settings(path).with_overrides(score_arithmetic="qat").score_arithmetic == "qat"
    tuned = _write(tmp_path, {"name": "m", "space": MINIMAL_SPACE, "search": {"finetune_steps": 30}})
    assert load_settings(tuned).finetune_steps == 30
    assert load_settings(_write(tmp_path, {"name": "m", "space": MINIMAL_SPACE})).finetune_steps == 0  # the default
    with pytest.raises(StudyError, match="finetune_steps must be >= 0"):
        load_settings(tuned).with_overrides(finetune_steps=-1)
    with pytest.raises(StudyError, match="score_arithmetic 'int8'"):
        load_settings(_write(tmp_path, {"name": "m", "space": MINIMAL_SPACE, "search": {"score_arithmetic": "int8"}}))


@pytest.mark.parametrize("epochs, qat_epochs, qat_start", [(20, 4, 16), (20, 0, None), (5, 5, 0), (1, 1, 0)])
def test_the_qat_phase_converts_both_ways(epochs, qat_epochs, qat_start) -> None:
    """Issue 27: one encoding (qat_start) in TrainConfig; the length the study file and the flags give
    converts to it and back, all-QAT (qat_start 0) included."""
    assert TrainConfig.qat_start_for(epochs, qat_epochs) == qat_start
    config = TrainConfig(epochs=epochs, qat_start=qat_start)
    assert config.qat_epochs == qat_epochs
    assert sum(config.phase_of(e).value == "qat" for e in range(epochs)) == qat_epochs


def test_a_study_file_gives_the_qat_phase_by_its_length_only(tmp_path) -> None:
    from posenas.search.settings import read_study_file

    raw = dict(read_study_file("max78000"))
    raw["train"] = {**raw.get("train", {}), "qat_start": 3}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(StudyError, match="train: unknown key 'qat_start'.*qat_epochs"):
        load_settings(str(path))
