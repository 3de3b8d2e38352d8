"""The low-bit QAT recipe: its settings, its diagnostics and where training, the CLI and a study apply it.

The arithmetic itself (QAT == simulate == C with held shifts, and with the 8-bit bias option) is tested beside ai8x v1's
in test_layers.py, test_model.py, test_supernet.py and test_export.py."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from posenas.errors import UsageError
from posenas.posenet.nets.checkpoint import load_checkpoint, model_for
from posenas.posenet.nets.config import LowBitRecipe, TrainConfig
from posenas.posenet.nets.diagnostics import collapse_warning, collapsing_layers, layer_diagnostics
from posenas.posenet.nets.model import build_model
from posenas.posenet.nets.train import QUANTIZATION_REPORT, SWITCH_CHECKPOINT, Trainer
from posenas.search.cli import main
from posenas.space.baselines import get_arch, lowered


def _trained_float_model(spec, seed: int = 0):
    """A float network whose weights look trained (Gaussian, a few large ones), batch-norm away from identity."""
    torch.manual_seed(seed)
    model = build_model(spec).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model.hardware_layers():
            w = layer.op.weight
            w.copy_(torch.randn(w.shape, generator=g) * 0.05)
            w.view(-1)[:3] *= 8  # the outliers that set ai8x v1's shift
            if layer.bn is not None:
                layer.bn.running_var.uniform_(0.5, 1.5)
                layer.bn.bias.uniform_(-0.3, 0.3)
    return model


def _x(n: int = 2) -> torch.Tensor:
    return torch.rand(n, 3, 128, 128, generator=torch.Generator().manual_seed(1)) - 0.5


def test_ai8x_v1_collapses_2bit_layers_and_the_recipe_keeps_them():
    spec = lowered(get_arch("tiny-hw"), 2)
    v1, recipe = _trained_float_model(spec), _trained_float_model(spec)
    v1.start_qat()
    recipe.start_qat(LowBitRecipe())
    rows_v1, rows_recipe = layer_diagnostics(v1, _x()), layer_diagnostics(recipe, _x())
    low_v1 = [r for r in rows_v1 if r.weight_bits == 2]
    low_recipe = [r for r in rows_recipe if r.weight_bits == 2]
    assert len(low_v1) == 10
    # ai8x v1: the shift follows the largest weight, so nearly every weight of a 2-bit layer rounds to 0
    assert max(r.nonzero for r in low_v1) < 0.1
    assert collapsing_layers(rows_v1) == [r.layer for r in low_v1]
    warning = collapse_warning(rows_v1)
    assert warning is not None and "\n" not in warning and "conv2 (2-bit:" in warning
    # the recipe's least-error shift keeps most of them, with the weights' direction
    for a, b in zip(low_v1, low_recipe):
        assert b.nonzero > 0.3 and b.nonzero > 5 * a.nonzero
        assert b.weight_cosine > 0.85 > a.weight_cosine
        assert b.shift < a.shift and b.bias_bits == a.bias_bits == 2  # the default bias: the weights' bits
    assert collapsing_layers(rows_recipe) == [] and collapse_warning(rows_recipe) is None
    # 8-bit layers are ai8x v1 under both (their inputs differ, after the 2-bit layers)
    for a, b in zip(rows_v1, rows_recipe):
        if a.weight_bits == 8:
            assert dataclasses.replace(a, output_cosine=b.output_cosine) == b
            assert a.nonzero > 0.9 and min(a.output_cosine, b.output_cosine) > 0.99


def test_an_8bit_network_is_untouched_by_the_recipe():
    spec = get_arch("tiny-hw")
    plain, recipe = _trained_float_model(spec), _trained_float_model(spec)
    plain.start_qat()
    recipe.start_qat(LowBitRecipe())
    x = _x()
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(plain(x), recipe(x)))
    assert plain.state_dict().keys() == recipe.state_dict().keys()
    assert all(torch.equal(plain.state_dict()[k], recipe.state_dict()[k]) for k in plain.state_dict())
    assert TrainConfig().for_lowest_bits(8) == TrainConfig()


@pytest.mark.parametrize(
    "values, message",
    [
        ({"shift_quantile": 0.0}, r"lowbit.shift_quantile must be a number in \(0, 1\], got 0.0"),
        ({"shift_quantile": 1.5}, r"lowbit.shift_quantile must be a number in \(0, 1\]"),
        ({"float_distill": -0.1}, r"lowbit.float_distill must be a number in \[0, 1\]"),
        ({"float_distill": float("nan")}, r"lowbit.float_distill: must be a finite number, got nan"),
        ({"qat_factor": 0.5}, r"lowbit.qat_factor must be a number in \[1, 10\]"),
        ({"qat_lr": -1e-3}, r"lowbit.qat_lr must be a number in \[0, 1\]"),
        ({"bias_bits": 4}, r"lowbit.bias_bits must be 8 or 0"),
        ({"shift": "max"}, r"lowbit.shift must be one of mse, quantile"),
        ({"enabled": "yes"}, r"lowbit.enabled: must be true or false"),
        ({"bias_bits": "8"}, r"lowbit.bias_bits: must be an integer, got '8'"),
        ({"qat_facto": 2}, r"lowbit: unknown key 'qat_facto'"),
    ],
)
def test_recipe_settings_out_of_range_are_named(values, message):
    with pytest.raises(UsageError, match=message):
        LowBitRecipe.from_value(values)


def test_the_recipe_lengthens_the_qat_phase_after_the_same_float_phase():
    config = TrainConfig(lowbit={"qat_factor": 2, "qat_lr": 2e-4})
    assert config.lowbit == LowBitRecipe(qat_factor=2, qat_lr=2e-4)
    low = config.for_lowest_bits(2)
    assert (low.qat_start, low.epochs, low.qat_lr) == (16, 24, 2e-4)
    assert config.for_lowest_bits(8) == config
    assert TrainConfig(qat_start=None, lowbit={"qat_factor": 2}).for_lowest_bits(2).epochs == 20  # float only
    off = TrainConfig(lowbit={"enabled": False, "qat_factor": 2})
    assert off.for_lowest_bits(2) == off
    assert TrainConfig(**config.to_dict()) == config  # a checkpoint's settings round-trip


@pytest.fixture(scope="module")
def root(synth_root):
    return synth_root(train=24, val=4, seed=5)


def test_training_a_2bit_network_records_its_quantization_and_resumes(root, tmp_path):
    spec = lowered(get_arch("tiny-hw"), 2)
    config = TrainConfig(
        epochs=2, qat_start=1, batch_size=8, val_images=2, lowbit={"float_distill": 0.5, "qat_factor": 2}
    )
    seen = []
    trainer = Trainer(spec, root, tmp_path, config, on_quantization=lambda when, rows: seen.append(when))
    trainer.run()
    assert trainer.config.epochs == 3 and seen == ["switch", "end", "end"]
    report = json.loads((tmp_path / QUANTIZATION_REPORT).read_text())
    assert len(report["switch"]) == len(report["end"]) == 13  # every layer, at the switch and at the end
    assert [r["weight_bits"] for r in report["end"]].count(2) == 10
    assert all(r["bias_bits"] == 2 for r in report["end"] if r["weight_bits"] == 2)
    assert report["end_warning"] is None or report["end_warning"].startswith("collapsing layer")
    last = load_checkpoint(tmp_path / "last.pt")
    assert [h["mode"] for h in last.history] == ["float", "qat", "qat"]
    assert last.train_config == config.to_dict()  # the schedule asked for: the same request resumes
    assert load_checkpoint(tmp_path / SWITCH_CHECKPOINT).epoch == 0
    model = model_for(last)
    assert all(layer.shift_is_fixed for layer in model.hardware_layers() if layer.target_bits == 2)
    assert Trainer(spec, root, tmp_path, config).run() == []  # finished: resumes to nothing
    with pytest.raises(Exception, match="other settings"):
        Trainer(spec, root, tmp_path, dataclasses.replace(config, lowbit=LowBitRecipe(bias_bits=8))).run()


def test_train_prints_the_table_for_low_bit_networks_only(root, tmp_path, capsys):
    spec_file = tmp_path / "tiny-w4.json"
    spec_file.write_text(json.dumps(lowered(get_arch("tiny-hw"), 4).to_dict()))
    common = ["--data", str(root), "--epochs", "2", "--qat-epochs", "1", "--batch-size", "8", "--val-images", "2"]
    assert main(["train", "--arch", str(spec_file), *common, "--out", str(tmp_path / "w4")]) == 0
    out = capsys.readouterr().out
    assert "low-bit recipe (bias at the weights' bits, least-error held shift; 1 QAT epochs" in out
    assert "quantization at the QAT switch" in out and "quantization after the last QAT epoch" in out
    assert main(["train", "--arch", "tiny-hw", *common, "--out", str(tmp_path / "w8")]) == 0
    out = capsys.readouterr().out
    assert "quantization" not in out and "low-bit" not in out
    assert not (tmp_path / "w8" / "quantization.json").exists() and not (tmp_path / "w8" / "switch-float.pt").exists()
    assert main(["eval", "--data", str(root), "--checkpoint", str(tmp_path / "w4" / "best.pt"), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert [row["weight_bits"] for row in record["quantization"]].count(4) == 10
    assert "quantization_warning" in record


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--shift-quantile", "0"], "argument --shift-quantile: must be a number in (0, 1], got 0"),
        (["--float-distill", "1.5"], "argument --float-distill: must be a number in [0, 1], got 1.5"),
        (["--lowbit-qat-factor", "-2"], "argument --lowbit-qat-factor: must be a number in [1, 10], got -2"),
        (["--lowbit-qat-lr", "nan"], "argument --lowbit-qat-lr: must be a number in [0, 1], got nan"),
    ],
)
@pytest.mark.parametrize("command", ["train", "search"])
def test_recipe_flags_out_of_range_exit_2_in_one_line(command, flags, message, root, tmp_path, capsys):
    args = ["--arch", "tiny-hw", "--data", str(root)] if command == "train" else ["--data", str(root)]
    assert main([command, *args, *flags, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "run").exists()


def test_a_study_file_with_a_bad_recipe_exits_2_naming_the_setting(tmp_path, capsys):
    from importlib import resources

    import yaml

    study = yaml.safe_load(resources.files("posenas.studies").joinpath("max78000.yaml").read_text())
    study.setdefault("train", {})["lowbit"] = {"shift_quantile": 2}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    assert main(["search", "--study", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["posenas: error: train: lowbit.shift_quantile must be a number in (0, 1], got 2"]
    assert not (tmp_path / "run").exists()


def test_held_shifts_follow_the_weights_between_epochs_except_the_output_layers():
    """A wide output layer has no output shift: a new shift would rescale its maps at once, so it keeps the
    switch's; every other low-bit layer re-chooses its shift for the weights it has now."""
    spec = lowered(get_arch("tiny-hw"), 2)
    spec = dataclasses.replace(spec, heads=tuple(dataclasses.replace(h, out_bits=2) for h in spec.heads))
    model = _trained_float_model(spec)
    model.start_qat(LowBitRecipe())
    layers = dict(model.named_children())
    before = {name: int(layer.output_shift.item()) for name, layer in layers.items()}
    with torch.no_grad():
        for name in ("conv3", "paf_out"):
            layers[name].op.weight.mul_(8.0)  # the weights grew three powers of two
    moved = model.calibrate_shifts()
    assert moved["conv3"] == before["conv3"] + 3
    assert "paf_out" not in moved and int(layers["paf_out"].output_shift.item()) == before["paf_out"]
    assert layers["paf_out"].shift_is_fixed and layers["paf_out"].wide
