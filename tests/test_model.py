"""Models built from specs: exact parameter counts, shapes, key order, MACs against fvcore, QAT/simulate."""

from __future__ import annotations

import pytest
import torch
from networks import random_checkpoint, randomise_batchnorm

from posenas.posenet.nets.checkpoint import model_for
from posenas.posenet.nets.config import LowBitRecipe
from posenas.posenet.nets.layers import QuantMode
from posenas.posenet.nets.model import build_model, trainable_parameters
from posenas.space.baselines import BASELINES, lowered
from posenas.space.graph import count_macs, layer_graph
from posenas.space.spec import ArchSpec


@pytest.mark.parametrize(
    "name, params", [("student", 659_001), ("tiny", 112_257), ("student-hw", 659_001), ("tiny-hw", 112_257)]
)
def test_built_models_have_the_seed_parameter_counts(name, params):
    assert trainable_parameters(build_model(BASELINES[name])) == params


@pytest.mark.parametrize("name", list(BASELINES))
def test_outputs_are_19_heatmaps_and_38_pafs_at_stride_8(name):
    heatmaps, pafs = build_model(BASELINES[name]).eval()(torch.zeros(2, 3, 128, 128))
    assert heatmaps.shape == (2, 19, 16, 16) and pafs.shape == (2, 38, 16, 16)


def test_folded_stem_runs():
    data = BASELINES["tiny-hw"].to_dict()
    data.update(fold=2)
    data["backbone"][0]["pool"] = 0
    heatmaps, pafs = build_model(ArchSpec.from_dict(data)).eval()(torch.rand(1, 3, 128, 128))
    assert heatmaps.shape == (1, 19, 16, 16) and pafs.shape == (1, 38, 16, 16)


def test_state_dict_keys_follow_ai8x_names_in_execution_order():
    model = build_model(BASELINES["tiny-hw"])
    keys = list(model.state_dict())
    assert keys[:13] == [
        "conv1.output_shift",
        "conv1.weight_bits",
        "conv1.bias_bits",
        "conv1.quantize_activation",
        "conv1.adjust_output_shift",
        "conv1.shift_quantile",
        "conv1.op.weight",
        "conv1.op.bias",
        "conv1.bn.weight",
        "conv1.bn.bias",
        "conv1.bn.running_mean",
        "conv1.bn.running_var",
        "conv1.bn.num_batches_tracked",
    ]
    # ai8x-synthesis assigns weights to YAML layers in the order of the *.weight keys.
    weights = [k[: -len(".op.weight")] for k in keys if k.endswith(".op.weight")]
    assert weights == [n.name for n in layer_graph(BASELINES["tiny-hw"])]
    assert "heat_out.bn.weight" not in keys and "heat_out.op.bias" in keys


@pytest.mark.parametrize("name", ["tiny-hw", "student", "student-hw"])
def test_macs_agree_with_fvcore(name):
    fvcore = pytest.importorskip("fvcore.nn")
    model = build_model(BASELINES[name]).eval()
    counts = fvcore.FlopCountAnalysis(model, torch.zeros(1, 3, 128, 128))
    counts.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    assert counts.by_operator()["conv"] == count_macs(BASELINES[name])


@pytest.mark.parametrize("seed", [0, 1])
def test_whole_network_simulation_equals_qat_exactly(seed):
    torch.manual_seed(seed)
    model = build_model(BASELINES["tiny-hw"]).eval()
    randomise_batchnorm(model, seed)
    model.start_qat()
    assert model.mode is QuantMode.QAT and "conv1.bn.weight" not in model.state_dict()
    x_int = torch.randint(-128, 128, (2, 3, 128, 128)).double()
    with torch.no_grad():
        qat = model(x_int.float() / 128)
        model.to_simulate()
        sim = model(x_int)
    assert model.mode is QuantMode.SIMULATE
    for q, s in zip(qat, sim):
        # Wide 8-bit outputs: the chip's 32-bit accumulator is 2^(8+6) times the QAT value.
        assert torch.equal(s, q.double() * 2**14)
        assert s.abs().max() > 0 and torch.equal(s, s.round())


@pytest.mark.parametrize("bias_bits", [0, 8])
@pytest.mark.parametrize("name, bits", [("student-hw-mixed", None), ("tiny-hw", 4), ("tiny-hw", 2)])
def test_whole_network_simulation_equals_qat_with_the_low_bit_recipe(name, bits, bias_bits):
    """The recipe's held shifts, with the default bias or the 8-bit one, through a whole network and a
    checkpoint round trip."""
    spec = BASELINES[name] if bits is None else lowered(BASELINES[name], bits)
    checkpoint = random_checkpoint(spec, 3, recipe=LowBitRecipe(bias_bits=bias_bits))
    model = model_for(checkpoint)  # the recipe comes back from the checkpoint's training settings
    low = [layer for layer in model.hardware_layers() if layer.target_bits < 8]
    assert low and all(layer.shift_is_fixed for layer in low)
    assert all(layer.bias_bits.item() == (bias_bits or layer.target_bits) for layer in low)
    x_int = torch.randint(-128, 128, (2, 3, 128, 128), generator=torch.Generator().manual_seed(3)).double()
    with torch.no_grad():
        qat = model(x_int.float() / 128)
        model.to_simulate()
        sim = model(x_int)
    heat_layer, paf_layer = model.output_layers()
    for q, s, layer in zip(qat, sim, (heat_layer, paf_layer)):
        assert torch.equal(s, q.double() * 128 * 2 ** (layer.target_bits - 1))
        assert s.abs().max() > 0
    biases = [layer.integer_weights()[1] for layer in low]
    widest = max(int(b.abs().max()) for b in biases)
    if bias_bits == 8:
        assert widest > 2  # beyond a 2- or 4-bit layer's own bias range in v1
    else:
        assert widest <= 2 ** (max(layer.target_bits for layer in low) - 1)
