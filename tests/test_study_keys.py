"""Every key of the default study file, walked from the file itself (issue 26): the wrong type, a value out of
range and an unknown neighbour are each refused in one line that names the key, before any work.

The keys come from ``studies/max78000.yaml`` (and its ``teacher``/``data`` alternatives), so a key added to
the default study is covered without anyone adding it here.
"""

from __future__ import annotations

import copy
from importlib import resources

import pytest
import yaml

from posenas.errors import StudyError
from posenas.search.cli import main
from posenas.search.settings import load_settings
from tests.study_values import get, leaves, out_of_range, replaced, wrong_type

DEFAULT = yaml.safe_load((resources.files("posenas.studies") / "max78000.yaml").read_text())
# Keys the default study leaves at their defaults, that a study file may set all the same.
EXTRA = {
    ("search", "population"): 16,
    ("train", "seed"): 0,
    ("train", "workers"): 0,
    ("train", "train_images"): 100,
    ("train", "weight_decay"): 0.0,
    ("train", "amp"): True,
    ("teacher", "train_images"): 100,
}


def _study() -> dict:
    study = copy.deepcopy(DEFAULT)
    for (section, key), value in EXTRA.items():
        study[section][key] = value
    return study


LEAVES = leaves(_study())


def _refused(study: dict, tmp_path, path: tuple) -> str:
    file = tmp_path / "study.yaml"
    file.write_text(yaml.safe_dump(study))
    with pytest.raises(StudyError) as caught:
        load_settings(file)
    message = str(caught.value)
    assert "\n" not in message
    key = {"synthetic": "synthetic"}.get(str(path[-1]), str(path[-1]))
    assert key in message or (path[-1] == "name" and "backbone" in message), (path, message)
    return message


def test_the_walk_reaches_every_section() -> None:
    sections = {p[0] for p in LEAVES}
    assert sections == {"name", "budget", "space", "objectives", "search", "data", "teacher", "train"}
    assert len(LEAVES) > 40


@pytest.mark.parametrize("path", LEAVES, ids=lambda p: ".".join(map(str, p)))
def test_a_key_of_the_wrong_type_or_out_of_range_is_refused_naming_it(path, tmp_path) -> None:
    value = get(_study(), path)
    _refused(replaced(_study(), path, wrong_type(value)), tmp_path, path)
    for bad in out_of_range(path, value):
        if path[-1] == "arch":  # a teacher arch is resolved when the teacher is prepared (a name or a file)
            continue
        _refused(replaced(_study(), path, bad), tmp_path, path)


PARENTS = sorted({p[:-1] for p in LEAVES if len(p) > 1 and isinstance(get(_study(), p[:-1]), dict)})


@pytest.mark.parametrize("parent", [(), *PARENTS], ids=lambda p: ".".join(map(str, p)) or "top")
def test_an_unknown_key_is_refused_with_its_place(parent, tmp_path) -> None:
    study = _study()
    node = get(study, parent)
    node["tpyo"] = 1
    file = tmp_path / "study.yaml"
    file.write_text(yaml.safe_dump(study))
    with pytest.raises(StudyError, match="unknown key 'tpyo'"):
        load_settings(file)


def test_through_the_command_line_it_is_one_line_and_nothing_is_written(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    file = tmp_path / "study.yaml"
    file.write_text(yaml.safe_dump(replaced(_study(), ("train", "epochs"), -2)))
    assert main(["search", "--study", str(file), "--out", "o"]) == 2
    assert capsys.readouterr().err == "posenas: error: train.epochs: must be an integer in [1, 10000], got -2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.yaml"]
