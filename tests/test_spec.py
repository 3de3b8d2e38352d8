"""Architecture specs: validation, round trips, stable hashes, the baselines' exact counts."""

from __future__ import annotations

import json

import pytest

from posenas.space.baselines import BASELINES, get_arch
from posenas.space.graph import count_macs, count_params, layer_graph
from posenas.space.spec import ArchSpec, LayerSpec, SpecError


@pytest.mark.parametrize(
    "name, params", [("student", 659_001), ("tiny", 112_257), ("student-hw", 659_001), ("tiny-hw", 112_257)]
)
def test_baseline_parameter_counts(name, params):
    assert count_params(BASELINES[name]) == params


def test_baseline_macs_at_128x128():
    assert count_macs(BASELINES["tiny"]) == 87_564_288  # "about 88M", not the seeds' 8M
    assert count_macs(BASELINES["student"]) == 348_143_616  # "about 350M", not 15M
    assert count_macs(BASELINES["tiny-hw"]) == count_macs(BASELINES["tiny"])


def test_hardware_twin_differs_only_in_the_stem():
    seed, twin = BASELINES["tiny"], BASELINES["tiny-hw"]
    assert (seed.backbone[0].stride, seed.backbone[0].pool) == (2, 0)
    assert (twin.backbone[0].stride, twin.backbone[0].pool) == (1, 2)
    assert seed.backbone[1:] == twin.backbone[1:] and seed.cpm == twin.cpm and seed.heads == twin.heads


def test_graph_shapes_reach_stride_8_and_both_heads_read_the_cpm():
    nodes = layer_graph(BASELINES["student-hw"])
    by_name = {n.name: n for n in nodes}
    assert by_name["conv1"].out_size == (64, 64) and by_name["cpm3"].out_size == (16, 16)
    assert by_name["heat_conv"].source == by_name["paf_conv"].source == by_name["cpm3"].index
    assert [n.name for n in nodes if n.is_output] == ["heat_out", "paf_out"]
    assert (by_name["heat_out"].out_channels, by_name["paf_out"].out_channels) == (19, 38)


@pytest.mark.parametrize("name", list(BASELINES))
def test_yaml_and_json_round_trip(name):
    spec = BASELINES[name]
    assert ArchSpec.from_yaml(spec.to_yaml()) == spec
    assert ArchSpec.from_json(spec.to_json()) == spec


def test_hash_ignores_name_and_key_order_but_not_structure():
    spec = BASELINES["tiny-hw"]
    assert spec.spec_hash() == spec.renamed("other").spec_hash()
    shuffled = json.loads(spec.to_json())
    assert ArchSpec.from_dict(dict(reversed(list(shuffled.items())))).spec_hash() == spec.spec_hash()
    assert spec.spec_hash() != BASELINES["tiny"].spec_hash()
    assert spec.spec_hash() == "ace8ca8513c1fec6"  # stable across runs and machines


def test_fold_stem_is_valid_and_counts_folded_channels(tmp_path):
    data = BASELINES["tiny-hw"].to_dict()
    data["fold"] = 2
    data["backbone"][0]["pool"] = 0
    spec = ArchSpec.from_dict(data)
    first = layer_graph(spec)[0]
    assert (first.in_channels, first.in_size) == (12, (64, 64))
    path = tmp_path / "folded.yaml"
    path.write_text(spec.to_yaml())
    assert get_arch(str(path)) == spec


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["backbone"][1].update(out_channels=0), r"out_channels 0 is out of range \[1, 1024\]"),
        (lambda d: d["backbone"][1].update(out_channels=5000), "out of range"),
        (lambda d: d["backbone"][1].update(kernel_size=5), "kernel_size 5 is not one of"),
        (lambda d: d["backbone"][1].update(weight_bits=3), "weight_bits 3"),
        (
            lambda d: d["backbone"][1].update(colour="red"),
            r"architecture \S+\.backbone\[1\]: unknown key 'colour' .known: name, out_channels",
        ),
        (lambda d: d["backbone"][3].update(pool=0), "must be 8"),
        (lambda d: d["backbone"][2].update(name="conv2"), "duplicate layer names"),
        (lambda d: d.pop("cpm"), r"architecture \S+: missing key 'cpm'"),
        (lambda d: d.update(cpm="conv"), r"architecture \S+\.cpm: must be a list of mappings, got 'conv'"),
        (lambda d: d["backbone"][0].update(out_channels="8"), r"\.backbone\[0\]\.out_channels: must be an integer"),
        (lambda d: d["backbone"][1].pop("out_channels"), r"\.backbone\[1\]: missing key 'out_channels'"),
        (lambda d: d["heads"].reverse(), "heads must be exactly"),
        (lambda d: d.update(input_size=124), "not a multiple of 8"),
    ],
)
def test_invalid_specs_name_the_problem(mutate, message):
    data = BASELINES["tiny-hw"].to_dict()
    mutate(data)
    with pytest.raises(SpecError, match=message):
        ArchSpec.from_dict(data)


def test_malformed_files_and_unknown_names(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nbackbone: [\n")
    with pytest.raises(SpecError, match="malformed YAML"):
        get_arch(str(bad))
    with pytest.raises(SpecError, match="unknown architecture 'mobilenet'"):
        get_arch("mobilenet")
    with pytest.raises(SpecError, match="does not exist"):
        get_arch(str(tmp_path / "missing.yaml"))


def test_specs_are_immutable():
    with pytest.raises(AttributeError):
        BASELINES["tiny"].backbone[0].out_channels = 8  # type: ignore[misc]
    assert LayerSpec("x", 8).downsampling == 1 and LayerSpec("x", 8, pool=2).downsampling == 2
