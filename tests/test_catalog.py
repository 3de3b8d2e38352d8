"""posenas.catalog: architectures, devices and studies are looked up, read and refused alike (issue 27)."""

from __future__ import annotations

import pytest

from posenas.budgets.device import load_budget
from posenas.errors import BudgetError, SpecError, StudyError
from posenas.search.settings import load_settings, read_study_file
from posenas.space.baselines import get_arch

KINDS = [  # (loader, error class, its kind's word, a built-in name, a suffix it reads)
    (get_arch, SpecError, "architecture", "tiny-hw", ".yaml"),
    (load_budget, BudgetError, "budget", "max78000", ".yaml"),
    (load_settings, StudyError, "study", "max78000", ".yaml"),
]


@pytest.mark.parametrize("load, error, kind, name, suffix", KINDS, ids=[k[2] for k in KINDS])
def test_every_kind_is_refused_in_the_same_words(load, error, kind, name, suffix, tmp_path) -> None:
    assert load(name) is not None  # the built-in name resolves
    with pytest.raises(error, match=rf"unknown {kind} 'nope' \(known: .*{name}.*, or a \.yaml"):
        load("nope")
    with pytest.raises(error, match=rf"{kind} file .*missing{suffix} does not exist"):
        load(str(tmp_path / f"missing{suffix}"))
    (tmp_path / f"folder{suffix}").mkdir()
    with pytest.raises(error, match="is a directory"):
        load(str(tmp_path / f"folder{suffix}"))
    cases = {
        "binary": (b"\xff\xfe\x00bad", "not a UTF-8 text file"),
        "malformed": (b"a: [\n", "malformed YAML"),
        "list": (b"- a\n- b\n", "must be a YAML mapping"),
    }
    for stem, (data, says) in cases.items():
        path = tmp_path / f"{stem}{suffix}"
        path.write_bytes(data)
        with pytest.raises(error, match=says) as raised:
            load(str(path))
        assert str(path) in str(raised.value)  # names the file


def test_a_json_architecture_reads_as_json(tmp_path) -> None:
    spec = get_arch("tiny-hw")
    (tmp_path / "net.json").write_text(spec.to_json())
    assert get_arch(str(tmp_path / "net.json")) == spec
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SpecError, match="malformed JSON"):
        get_arch(str(tmp_path / "bad.json"))


def test_a_typo_reads_the_same_in_every_kind_of_file(tmp_path) -> None:
    """check_keys: the place, the unknown key and the known ones, whatever the file."""
    import yaml

    arch = get_arch("tiny-hw").to_dict()
    arch["backbone"][0]["widht"] = 8
    budget = {"device": "max78000", "limits": {"max_flops": 3}}
    study = {**read_study_file("max78000"), "search": {"trails": 3}}
    cases = [
        (
            get_arch,
            arch,
            SpecError,
            r"architecture \S+\.backbone\[\d+\]: unknown key 'widht' \(known: name, out_channels",
        ),
        (load_budget, budget, BudgetError, r"limits: unknown key 'max_flops' \(known: max_macs, max_latency_ms\)"),
        (load_settings, study, StudyError, r"search: unknown key 'trails' \(known: sampler, seed, trials"),
    ]
    for load, data, error, says in cases:
        path = tmp_path / f"{load.__name__}.yaml"
        path.write_text(yaml.safe_dump(data))
        with pytest.raises(error, match=says):
            load(str(path))
