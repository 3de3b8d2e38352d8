"""posenas export: the integer checkpoint, the network YAML, and the standalone C checked bit for bit
against posenas' integer simulation (SIMULATE mode), compiled with a real C compiler."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
import yaml
from ai8x_rules import checkpoint_violations, yaml_violations
from networks import random_checkpoint

from posenas.budgets.checker import check
from posenas.budgets.device import load_budget
from posenas.posenet.export import m4
from posenas.posenet.export.bundle import DoesNotFitError, export_run
from posenas.posenet.export.c_source import sample_source, write_c_project
from posenas.posenet.export.host import build_host, decoder_limits_exceeded, run_host
from posenas.posenet.export.integer import integer_layers, simulation_model
from posenas.posenet.export.izer import synthesis_figures
from posenas.posenet.export.sample import random_input, simulate
from posenas.posenet.nets.checkpoint import load_checkpoint, save_checkpoint
from posenas.posenet.nets.config import LowBitRecipe
from posenas.posenet.nets.layers import QuantMode
from posenas.posenet.nets.train import TrainConfig, Trainer
from posenas.posenet.pose.decode import DecodeConfig
from posenas.search.cli import main
from posenas.search.settings import load_settings
from posenas.space.baselines import get_arch, lowered
from posenas.space.graph import layer_graph
from posenas.space.sampling import LOWEST_BITS, sample_arch

MAX78000 = load_budget("max78000")
needs_cc = pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("make") is None, reason="no gcc/make")


@pytest.fixture(scope="module")
def trained_tiny(synth_root, tmp_path_factory):
    """tiny-hw after one float and one QAT epoch on 24 synthetic people images."""
    root = synth_root(train=24, val=4, seed=3)
    out = tmp_path_factory.mktemp("tiny-run")
    Trainer(get_arch("tiny-hw"), root, out, TrainConfig(epochs=2, qat_start=1, batch_size=8, val_images=2)).run()
    return out / "best.pt"


# -- the integer checkpoint and the YAML, against the documented rules ---------------------------------------


@pytest.mark.parametrize("arch, device", [("tiny-hw", "max78000"), ("tiny-hw", "max78002"), ("student-hw", "max78002")])
def test_baseline_exports_obey_the_ai8x_rules(arch, device, tmp_path):
    spec = get_arch(arch)
    result = export_run(random_checkpoint(spec, 0), load_budget(device), tmp_path, build_c=False)
    doc = yaml.safe_load(result.files["yaml"].read_text())
    nodes = list(layer_graph(spec))
    assert yaml_violations(doc, nodes, arch, device.upper()) == []
    raw = torch.load(result.files["checkpoint"], weights_only=True)
    assert checkpoint_violations(raw, arch, len(doc["layers"])) == []
    # izer pairs weight keys with YAML layers by order: the names must line up one to one.
    weight_layers = [k[: -len(".op.weight")] for k in raw["state_dict"] if k.endswith(".weight")]
    assert weight_layers == [layer["name"] for layer in doc["layers"]]
    heads = [layer for layer in doc["layers"] if layer.get("output")]
    assert [h["name"] for h in heads] == ["heat_out", "paf_out"]
    assert all(h["output_width"] == 32 and h["activate"] == "None" for h in heads)
    # The heatmap head follows the CPM; the PAF head reads the CPM output again through in_sequences.
    trunk = [n for n in nodes if n.role == "cpm"][-1].name
    assert [layer["in_sequences"] for layer in doc["layers"] if "in_sequences" in layer] == [[trunk]]
    sample = np.load(result.files["sample"])
    assert sample.dtype == np.int64 and sample.shape == (3, 128, 128)
    assert sample.min() >= -128 and sample.max() <= 127 and sample.std() > 10


def test_yaml_comes_from_the_checkers_plan(tmp_path):
    spec = get_arch("tiny-hw")
    result = export_run(random_checkpoint(spec, 0), MAX78000, tmp_path, build_c=False)
    doc = yaml.safe_load(result.files["yaml"].read_text())
    plan = check(spec, MAX78000).plan
    assert plan.input_format == "CHW" and doc["layers"][0]["data_format"] == "CHW"
    for layer, placed in zip(doc["layers"], plan.layers):
        assert (layer["processors"], layer["output_processors"]) == (placed.in_processors, placed.out_processors)
        assert (layer["in_offset"], layer["out_offset"]) == (placed.in_offset, placed.out_offset)
    assert doc["layers"][0]["processors"] == 0x111 and doc["layers"][0]["max_pool"] == 2


def test_rules_catch_a_broken_yaml(tmp_path):
    # The rule checker itself must fail on the mistakes it exists to catch.
    spec = get_arch("tiny-hw")
    result = export_run(random_checkpoint(spec, 0), MAX78000, tmp_path, build_c=False)
    doc = yaml.safe_load(result.files["yaml"].read_text())
    nodes = list(layer_graph(spec))
    cases = {
        "output_width": lambda d: d["layers"][10].pop("output_width"),
        "but the network reads": lambda d: d["layers"][11].pop("in_sequences"),
        "overwrites": lambda d: d["layers"][11].update(out_offset=d["layers"][10]["out_offset"]),
        "still reads": lambda d: d["layers"][9].update(out_offset=d["layers"][8]["out_offset"]),
        "CHW input": lambda d: d["layers"][0].update(processors=0x7),
        "unknown keys": lambda d: d["layers"][3].update(stride=2),
    }
    for expected, edit in cases.items():
        copy = yaml.safe_load(yaml.safe_dump(doc))
        edit(copy)
        assert any(expected in v for v in yaml_violations(copy, nodes, "tiny-hw")), expected


def test_integer_checkpoint_is_the_quantize_py_conversion(tmp_path):
    spec = get_arch("tiny-hw")
    checkpoint = random_checkpoint(spec, 1)
    result = export_run(checkpoint, MAX78000, tmp_path, build_c=False)
    state = torch.load(result.files["checkpoint"], weights_only=True)["state_dict"]
    qat = checkpoint.state_dict
    for name in ("conv1", "cpm2", "paf_out"):
        w, b = qat[f"{name}.op.weight"], qat[f"{name}.op.bias"]
        # quantize.py: bit_shift = floor(log2(1 / max|w, b|)), factor 2^(bits-1) * 2^bit_shift.
        top = torch.cat([w.flatten(), b.flatten()]).abs().max().item()
        bit_shift = int(np.floor(np.log2(1 / top)))
        factor = 2.0 ** (7 + bit_shift)
        assert torch.equal(state[f"{name}.op.weight"], torch.clamp(torch.floor(w * factor + 0.5), -128, 127))
        assert torch.equal(state[f"{name}.op.bias"], torch.clamp(torch.floor(b * factor + 0.5), -128, 127) * 128)
        assert state[f"{name}.output_shift"].item() == -bit_shift
        assert state[f"{name}.output_shift"].dtype == torch.float32


def test_over_budget_network_is_refused_with_violations(tmp_path):
    with pytest.raises(DoesNotFitError, match="kernel memory exhausted at processor 0") as info:
        export_run(random_checkpoint(get_arch("student-hw"), 0), MAX78000, tmp_path / "x", build_c=False)
    assert len(info.value.report.violations) >= 3 and not (tmp_path / "x").exists()


# -- C inference, bit-exact with SIMULATE -------------------------------------------------------------------


def _c_outputs_match(result) -> None:
    assert result.host is not None, result.host_skipped
    assert result.host.outputs == (19 + 38) * 16 * 16
    assert result.host.mismatches == 0 and result.host.bit_exact
    assert result.pose_difference_px is not None and result.pose_difference_px <= 0.5


@needs_cc
def test_c_is_bit_exact_on_a_trained_tiny_network(trained_tiny, tmp_path):
    checkpoint = load_checkpoint(trained_tiny)
    assert checkpoint.mode is QuantMode.QAT
    result = export_run(checkpoint, MAX78000, tmp_path)
    _c_outputs_match(result)
    expected = np.load(result.files["expected_heatmaps"])
    assert np.abs(expected).max() > 1000  # real activity reached the heads, not a trivially zero output


@needs_cc
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_c_is_bit_exact_with_random_weights(seed, tmp_path):
    spec = get_arch("tiny-hw")
    checkpoint = random_checkpoint(spec, seed)
    export_run(checkpoint, MAX78000, tmp_path, build_c=False)
    # Swap the sample for random integers: every input value and rounding case, not just a photo's.
    model, _ = simulation_model(checkpoint)
    x = random_input(spec, seed)
    heatmaps, pafs = simulate(model, x)
    write_c_project(tmp_path / "c", spec.name, integer_layers(model), spec.input_size, x, (heatmaps, pafs))
    run = run_host(build_host(tmp_path / "c", "gcc"))
    assert run.bit_exact and run.outputs == heatmaps.size + pafs.size
    assert np.count_nonzero(heatmaps) > heatmaps.size // 2


@needs_cc
@pytest.mark.parametrize(
    "name, bits, bias_bits",
    [("tiny-hw", 2, 8), ("tiny-hw", 4, 8), ("student-hw-mixed", None, 8), ("student-hw-mixed", None, 0)],
)
def test_c_is_bit_exact_with_the_low_bit_recipe(name, bits, bias_bits, tmp_path):
    """2- and 4-bit layers with the recipe's held shifts (and the 8-bit bias option): QAT == simulate == C."""
    spec = get_arch(name) if bits is None else lowered(get_arch(name), bits)
    checkpoint = random_checkpoint(spec, 4, recipe=LowBitRecipe(bias_bits=bias_bits))
    result = export_run(checkpoint, MAX78000, tmp_path)
    _c_outputs_match(result)
    exported = torch.load(result.files["checkpoint"], weights_only=True)
    assert checkpoint_violations(exported, spec.name, len(layer_graph(spec))) == []
    model, _ = simulation_model(checkpoint)
    low = [layer for layer in integer_layers(model) if layer.bits < 8]
    widest = max(int(np.abs(layer.bias).max()) for layer in low)
    assert low and (widest > 2 ** (min(x.bits for x in low) - 1) if bias_bits == 8 else widest <= 2)
    expected = np.load(result.files["expected_heatmaps"])
    assert np.count_nonzero(expected) > expected.size // 2


class _NoFloor:
    """An Optuna trial whose network-wide lowest bits are the lowest offered, asked of no sampler."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial, self.number = trial, trial.number

    def suggest_int(self, name, low, high, *, step=1):
        return self.trial.suggest_int(name, low, high, step=step)

    def suggest_categorical(self, name, choices):
        return min(choices) if name == LOWEST_BITS else self.trial.suggest_categorical(name, choices)


def _searched_specs(count: int, seed: int):
    """Networks sampled from the default search space that fit: other widths, kernels, bits, pools."""
    # The default space with 8- and 4-bit weights, as when these samples' people were counted (the study
    # has offered 2 bits since issue 14; that would draw other networks).
    # Each layer's bits are drawn alone (the floor answered with the lowest bits, without a draw), as
    # before the space drew a network's lowest bits first: the same networks, so the same people.
    space = dataclasses.replace(load_settings("max78000").space, bits=(8, 4))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    found = []
    while len(found) < count:
        spec = sample_arch(_NoFloor(study.ask()), space, name=f"searched{len(found)}")
        if check(spec, MAX78000).fits:
            found.append(spec)
    return found


@needs_cc
def test_c_is_bit_exact_on_searched_networks(tmp_path):
    specs = _searched_specs(3, seed=7)
    bits = {node.weight_bits for spec in specs for node in layer_graph(spec)}
    assert len(bits) > 1  # the sample covers sub-8-bit layers
    people = 0
    for spec in specs:
        result = export_run(random_checkpoint(spec, 2), MAX78000, tmp_path / spec.name)
        _c_outputs_match(result)
        people += len(result.python_poses)
    assert people >= 40  # these weights make maps on which both decoders find people (30 + 13 + 0)


@needs_cc
def test_microcontroller_limits_keep_the_strongest_peaks_and_are_explained(tmp_path):
    # An untrained network's noise maps: 163 people for both decoders in the host build; the header's
    # microcontroller sizes (32 peaks per keypoint, 32 people) cannot hold that, and the check says why.
    spec = _searched_specs(3, seed=7)[2]
    result = export_run(random_checkpoint(spec, 1), MAX78000, tmp_path)
    assert len(result.host.poses) == len(result.python_poses) == 163 and result.pose_difference_px == 0.0
    c_folder = result.files["c"]
    subprocess.run(["make", "-s", "clean"], cwd=c_folder, check=True)
    subprocess.run(["make", "-s", "CC=gcc", "HOST_LIMITS=", "posenas_host"], cwd=c_folder, check=True)
    small = run_host(c_folder / "posenas_host")
    assert small.bit_exact and 0 < len(small.poses) <= 32
    heat_layer, paf_layer = (
        layer for layer in integer_layers(simulation_model(random_checkpoint(spec, 1))[0]) if layer.node.is_output
    )
    maps = (
        np.load(result.files["expected_heatmaps"]) / heat_layer.wide_scale,
        np.load(result.files["expected_pafs"]) / paf_layer.wide_scale,
    )
    header = {"PD_MAX_CANDIDATES": 128, "PD_MAX_PEAKS_PER_KEYPOINT": 32, "PD_MAX_PEOPLE": 32}
    assert "past the C decoder's" in decoder_limits_exceeded(*maps, DecodeConfig.for_input(128), header)
    assert decoder_limits_exceeded(*maps, DecodeConfig.for_input(128), {k: 10**6 for k in header}) is None


# -- ai8x-synthesis itself, when a checkout is given ----------------------------------------------------------

izer_root = os.environ.get("AI8X_SYNTHESIS")


@pytest.mark.skipif(not izer_root, reason="set AI8X_SYNTHESIS to an ai8x-synthesis checkout (with venv/) to run")
def test_ai8xize_accepts_the_export_and_simulates_the_same_outputs(trained_tiny, tmp_path):
    result = export_run(load_checkpoint(trained_tiny), MAX78000, tmp_path, build_c=False, izer_root=Path(izer_root))
    assert result.izer is not None and result.izer.ok, result.izer.summary
    assert result.izer_agrees == {"pafs": True, "heatmaps": True}
    assert (
        synthesis_figures(result.izer.output / "log.txt")["latency_cycles"]
        == check(get_arch("tiny-hw"), MAX78000).latency_cycles
    )
    # The firmware project: izer's files, its main.c moved aside, posenas' main and decoder beside them.
    firmware = result.firmware
    assert firmware is not None and (firmware / "izer" / "main.c").is_file() and (firmware / "cnn.c").is_file()
    assert {"main.c", "izer_sample.c", "posenas_app.c", "pose_grid.c", "posenas_firmware.h"} <= {
        p.name for p in firmware.iterdir()
    }
    assert "posenas" in (firmware / "project.mk").read_text()
    assert result.performance is not None and result.performance.cnn_cycles_source == "ai8x-synthesis"


# -- the command line ---------------------------------------------------------------------------------------


def _study_with(tmp_path, checkpoint: str):
    """A study whose trial 0 was trained (checkpoint in its metrics) and trial 1 rejected, as search records them."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="mini", storage=url, directions=["maximize", "minimize"])
    trained = study.ask()
    trained.set_user_attr("feasible", True)
    trained.set_user_attr("metrics", {"ap": 0.01, "params": 1, "checkpoint": checkpoint})
    study.tell(trained, [0.01, 1.0])
    rejected = study.ask()
    rejected.set_user_attr("feasible", False)
    rejected.set_user_attr("violations", ["conv6: kernel memory exhausted at processor 0"])
    study.tell(rejected, [0.0, 2.0])
    return url


@needs_cc
def test_cli_exports_a_checkpoint_and_a_trial(trained_tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("AI8X_SYNTHESIS", raising=False)
    assert main(["export", "--checkpoint", str(trained_tiny), "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "14,592 output values vs the integer simulation: bit-exact" in out
    assert "ai8xize.py not run" in out and "--checkpoint-file" in out  # the next step, spelled out
    report = json.loads((tmp_path / "a" / "export.json").read_text())
    assert report["c"]["bit_exact"] and report["c"]["mismatches"] == 0
    url = _study_with(tmp_path, str(trained_tiny))
    monkeypatch.chdir(tmp_path)  # a relative --out, as a user types it
    assert main(["export", "--trial", "0", "--study", "mini", "--storage", url, "--out", "b"]) == 0
    same = [f.name for f in (tmp_path / "a").iterdir() if f.suffix in (".npy", ".yaml")]
    for name in same:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_cli_refuses_an_over_budget_network(tmp_path, capsys):
    path = tmp_path / "student.pt"
    save_checkpoint(random_checkpoint(get_arch("student-hw"), 0), path)
    assert main(["export", "--checkpoint", str(path), "--out", str(tmp_path / "out"), "--no-build"]) == 1
    out = capsys.readouterr().out
    assert "does not fit MAX78000: nothing exported" in out and out.count("kernel memory exhausted") >= 3
    assert not (tmp_path / "out").exists()
    assert (
        main(["export", "--checkpoint", str(path), "--budget", "max78002", "--out", str(tmp_path / "b"), "--no-build"])
        == 0
    )


def test_cli_bad_input_gives_one_line_and_exit_2(trained_tiny, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    bad_image = tmp_path / "bad.jpg"
    bad_image.write_bytes(b"\xff\xd8 truncated")
    url = _study_with(tmp_path, str(trained_tiny))
    out = str(tmp_path / "out")
    cases = {
        "missing.pt": ["--checkpoint", str(tmp_path / "missing.pt")],
        "corrupt.pt": ["--checkpoint", str(corrupt)],
        "unreadable or corrupt image": ["--checkpoint", str(trained_tiny), "--image", str(bad_image), "--no-build"],
        "not an ai8x-synthesis checkout": ["--checkpoint", str(trained_tiny), "--izer", str(tmp_path)],
        "--trial needs --study": ["--trial", "0"],
        "has no trial 7": ["--trial", "7", "--study", "mini", "--storage", url],
        "no study database": ["--trial", "0", "--study", "nowhere"],
    }
    for expected, argv in cases.items():
        assert main(["export", *argv, "--out", out]) == 2, expected
        err = capsys.readouterr().err.strip()
        assert expected in err and len(err.splitlines()) == 1, (expected, err)
    # A trial that does not fit is not bad input but a "no" (exit 1, as for --checkpoint), in one line too.
    assert main(["export", "--trial", "1", "--study", "mini", "--storage", url, "--out", out]) == 1
    err = capsys.readouterr().err.strip()
    assert "was not trained: conv6: kernel memory" in err and len(err.splitlines()) == 1


@needs_cc
def test_host_check_fails_on_one_wrong_value(tmp_path):
    # The bit-exact verdict must be able to fail: change one expected PAF value by 1.
    result = export_run(random_checkpoint(get_arch("tiny-hw"), 4), MAX78000, tmp_path)
    assert result.passed
    c = result.files["c"]
    pafs = np.load(result.files["expected_pafs"])
    pafs.flat[123] += 1
    (c / "sample.c").write_text(
        sample_source(np.load(result.files["sample"]), (np.load(result.files["expected_heatmaps"]), pafs))
    )
    run = run_host(build_host(c, "gcc"))
    assert run.mismatches == 1 and run.returncode == 1 and not run.bit_exact
    assert not dataclasses.replace(result, host=run).passed


# -- which decoder counted what, and the m4/ folder --------------------------------------------------------------


def _export_cli(tmp_path, capsys, *flags: str) -> tuple[str, dict]:
    """tiny-hw with random weights (seed 7): noise maps on which the two decoders find 49 and 1 people."""
    path = tmp_path / "tiny-7.pt"
    save_checkpoint(random_checkpoint(get_arch("tiny-hw"), 7), path)
    capsys.readouterr()
    assert main(["export", "--checkpoint", str(path), "--out", str(tmp_path / "out"), *flags]) == 0
    return capsys.readouterr().out, json.loads((tmp_path / "out" / "export.json").read_text())


def test_cli_says_which_decoder_counted_which_people(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("AI8X_SYNTHESIS", raising=False)
    out, report = _export_cli(tmp_path, capsys, "--no-build")
    # The upsampled decoder (c/'s, checked against Python's) and the M4's grid decoder, whose count the decoder
    # time is for: different decoders, the same person filters, no person-score threshold in either.
    assert (report["python_poses"], report["grid_poses"]) == (49, 1)
    assert report["performance"]["people"] == report["grid_poses"]
    assert report["person_filters"] == {"min_keypoints": 3, "min_mean_score": 0.2, "min_person_score": None}
    assert (
        "upsampled decoder (peaks on the maps upsampled x8; posenet/pose/decode.py and its C port "
        "c/pose_decode.c): Python 49 people\n" in out
    )
    assert (
        "grid decoder (the M4's pose_grid.c, peaks on the stride-8 cells; the decoder time below is for it): "
        "1 people; 49 vs 1 because these are two decoders, not two thresholds: both keep every person with 3+ "
        "keypoints and mean keypoint score >= 0.2, no person-score threshold (21 and 1 at score >= 20, "
        "predict's default)" in out
    )
    assert "decoder 0.82 ms (1 people" in out  # the performance line counts the grid decoder's people
    assert "m4" not in report["files"] and "Cortex-M4 grid decoder" not in out  # not built: no m4/ to list


@needs_cc
@pytest.mark.skipif(m4.missing_tools() is not None, reason=str(m4.missing_tools()))
def test_cli_lists_the_m4_folder_and_its_program_reruns(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("AI8X_SYNTHESIS", raising=False)
    out, report = _export_cli(tmp_path, capsys)
    folder = tmp_path / "out" / "m4"
    assert report["files"]["m4"] == str(folder) and "Cortex-M4 grid decoder" in out
    assert {p.name for p in (folder / "src").iterdir()} == {
        "posenas_app.c",
        "posenas_app.h",
        "posenas_firmware.h",
        "pose_grid.c",
        "pose_grid.h",
        "pose_group.h",
    }
    assert "Python 49 people, C 49; same keypoints within 0.000 px" in out
    # The program the export timed runs again under QEMU and finds the grid decoder's one person.
    run = m4.run(folder / "qemu" / "app.elf")
    assert len(run.poses) == report["grid_poses"] == 1
    assert run.instructions == report["performance"]["decoder_instructions"]
