"""The weight-sharing supernet: a subnet computed inside the supernet equals the extracted stand-alone model,
bit for bit, in FLOAT (eval and training mode) and QAT, for random specs over every stem, dropped layers,
1x1/3x3 kernels and every CPM depth; specs outside the space are refused in one line."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from posenas.errors import SpecOutsideSpace
from posenas.posenet.nets.config import LowBitRecipe
from posenas.posenet.nets.layers import QuantMode
from posenas.posenet.nets.model import build_model
from posenas.posenet.nets.supernet import SuperNet, recalibrate_batchnorm, stem_of
from posenas.search.settings import load_settings
from posenas.space.baselines import get_arch
from posenas.space.sampling import SearchSpace
from posenas.space.spec import LayerSpec
from posenas.space.subnets import largest_arch, random_arch, smallest_arch


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    """The default study's space with every weight width the hardware has (bits do not change the layers)."""
    return dataclasses.replace(load_settings("max78000").space, bits=(8, 4, 2, 1))


@pytest.fixture(scope="module")
def supernet(space: SearchSpace) -> SuperNet:
    """A supernet with random (not default) BN parameters and statistics, so slicing them matters."""
    torch.manual_seed(0)
    net = SuperNet(space)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.1, 0.1)
    return net


def _specs(space: SearchSpace, count: int) -> list:
    """The largest and smallest network of every stem, the seeds' hardware designs, and random ones."""
    rng = np.random.default_rng(7)
    specs = [largest_arch(space, stem) for stem in space.stems] + [smallest_arch(space, stem) for stem in space.stems]
    specs += [get_arch("tiny-hw"), get_arch("student-hw"), get_arch("student")]
    specs += [random_arch(space, rng, name=f"random{i}") for i in range(count)]
    return specs


def _images(n: int = 2) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(n, 3, 128, 128) * 2 - 1  # training scale


def test_specs_cover_the_space(space: SearchSpace) -> None:
    specs = _specs(space, 0)  # the fixed part alone: every equality test below includes it
    assert {stem_of(s) for s in specs} == set(space.stems)
    assert {len(s.cpm) for s in specs} == {1, 2, 3}
    kernels = {layer.kernel_size for s in specs for layer in s.layers()}
    assert kernels == {1, 3}
    slots = [slot.name for slot in space.backbone]
    assert any(len(s.backbone) < len(slots) for s in specs)  # some drop optional layers
    assert any(len(s.backbone) == len(slots) for s in specs)


def test_extracted_model_has_build_model_keys_and_shapes(space: SearchSpace, supernet: SuperNet) -> None:
    for spec in _specs(space, 6):
        extracted = supernet.extract(spec).state_dict()
        built = build_model(spec).state_dict()
        assert list(extracted) == list(built)
        assert all(extracted[k].shape == built[k].shape for k in built)


@pytest.mark.parametrize("training", [False, True])
def test_float_forward_equals_extracted(space: SearchSpace, supernet: SuperNet, training: bool) -> None:
    x = _images()
    for spec in _specs(space, 8):
        model = supernet.extract(spec)
        supernet.train(training)
        model.train(training)
        state = {k: v.clone() for k, v in supernet.state_dict().items()}
        with torch.no_grad():
            expected = model(x)
            got = supernet(x, spec)
        for a, b in zip(got, expected):
            assert a.shape == b.shape
            assert torch.equal(a, b), f"{spec.name}: max difference {(a - b).abs().max().item()}"
        assert expected[1].std() > 0  # a real output, not a clamped constant
        if training:  # the running statistics moved identically in the slice and in the extracted model
            again = supernet.extract(spec).state_dict()
            moved = model.state_dict()
            for key in moved:
                if "running" in key:
                    assert torch.allclose(again[key], moved[key], atol=1e-6, rtol=0), key
            supernet.load_state_dict(state)  # keep the fixture unchanged for the other tests


def test_qat_forward_equals_extracted_after_start_qat(space: SearchSpace, supernet: SuperNet) -> None:
    x = _images()
    rng = np.random.default_rng(3)
    supernet.set_mode(QuantMode.QAT)
    try:
        specs = _specs(space, 4) + [random_arch(space, rng, name=f"bits{i}") for i in range(6)]
        for spec in specs:
            model = supernet.extract(spec)
            model.start_qat()
            model.eval()
            supernet.eval()
            with torch.no_grad():
                expected, got = model(x), supernet(x, spec)
            for a, b in zip(got, expected):
                assert torch.equal(a, b), f"{spec.name}: max difference {(a - b).abs().max().item()}"
    finally:
        supernet.set_mode(QuantMode.FLOAT)


@pytest.mark.parametrize("bias_bits", [0, 8])
def test_qat_forward_with_the_low_bit_recipe_equals_extracted(space: SearchSpace, bias_bits: int) -> None:
    """The recipe's arithmetic (held least-error shift, the 8-bit bias option) inside the supernet, as start_qat(recipe)
    makes it in the extracted network, for networks with 1-, 2- and 4-bit layers."""
    torch.manual_seed(0)
    recipe = LowBitRecipe(bias_bits=bias_bits)
    net = SuperNet(space, recipe)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_var.uniform_(0.5, 2.0)
                module.bias.uniform_(-0.8, 0.8)  # offsets of many weight steps: the 8-bit bias matters
    x = _images()
    rng = np.random.default_rng(11)
    net.set_mode(QuantMode.QAT)
    net.eval()
    specs = [random_arch(space, rng, name=f"lowbit{i}") for i in range(6)]
    assert any(spec.lowest_bits < 8 for spec in specs)
    for spec in specs:
        model = net.extract(spec)
        model.start_qat(recipe)
        model.eval()
        with torch.no_grad():
            expected, got = model(x), net(x, spec)
        for a, b in zip(got, expected):
            assert torch.equal(a, b), f"{spec.name}: max difference {(a - b).abs().max().item()}"


def test_qat_training_forward_folds_batch_statistics(space: SearchSpace, supernet: SuperNet) -> None:
    """In training mode a QAT subnet folds with its batch's statistics: recalibrating the extracted model on
    the same batch and folding then gives the same output (up to rounding at quantization steps)."""
    x = _images(4)
    spec = get_arch("tiny-hw")
    state = {k: v.clone() for k, v in supernet.state_dict().items()}
    supernet.set_mode(QuantMode.QAT)
    try:
        supernet.train()
        with torch.no_grad():
            got = supernet(x, spec)
        supernet.load_state_dict(state)
        model = supernet.extract(spec)
        assert recalibrate_batchnorm(model, [x]) == 4
        model.start_qat()
        model.eval()
        with torch.no_grad():
            expected = model(x)
        # Recalibration stores the unbiased variance (n / (n - 1)) while the training forward folds the biased
        # one, so outputs agree closely but not bit for bit.
        for a, b in zip(got, expected):
            assert torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1] > 0.95
    finally:
        supernet.set_mode(QuantMode.FLOAT)
        supernet.load_state_dict(state)


def test_specs_outside_the_space_are_refused(space: SearchSpace, supernet: SuperNet) -> None:
    tiny = get_arch("tiny-hw")
    too_wide = dataclasses.replace(
        tiny, backbone=(dataclasses.replace(tiny.backbone[0], out_channels=40),) + tiny.backbone[1:]
    )
    one_by_one_stem = dataclasses.replace(
        tiny, backbone=(dataclasses.replace(tiny.backbone[0], kernel_size=1),) + tiny.backbone[1:]
    )
    extra = dataclasses.replace(tiny, backbone=tiny.backbone + (LayerSpec("conv9", 32),))
    for bad in (too_wide, one_by_one_stem, extra):
        with pytest.raises(SpecOutsideSpace) as caught:
            supernet.extract(bad)
        assert "\n" not in str(caught.value)
        with pytest.raises(SpecOutsideSpace):
            supernet(_images(1), bad)
