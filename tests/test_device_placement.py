"""QAT's own arithmetic keeps every tensor on the weights' device: the GPU path (issue 25, item 3) has never
run on a GPU, and a tensor made without a device lands on the CPU beside CUDA weights, a crash the first
time a user trains a low-bit network there (the low-bit recipe's held shift did exactly this).

No GPU here, so the CPU stands in for the GPU and 'meta' for the CPU: the networks live on the CPU and run
with the default device set to 'meta'. A tensor made without a device then lands on 'meta', and the first
operation that mixes it with the weights raises, as a host tensor would against CUDA weights."""

from __future__ import annotations

from importlib import resources

import pytest
import torch

from posenas.posenet.nets.config import LowBitRecipe
from posenas.posenet.nets.model import build_model
from posenas.posenet.nets.supernet import SuperNet
from posenas.search.settings import load_settings
from posenas.space.baselines import get_arch

RECIPES = {
    "mse": LowBitRecipe(),  # the default: a held least-error shift per low-bit layer
    "quantile-max": LowBitRecipe(shift="quantile"),
    "quantile-0.9": LowBitRecipe(shift="quantile", shift_quantile=0.9),
}


def _input(batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, 3, 128, 128, generator=torch.Generator().manual_seed(0)) - 0.5


def test_the_stand_in_catches_a_tensor_made_without_a_device() -> None:
    weights = torch.ones(4)
    with torch.device("meta"), pytest.raises(RuntimeError, match="device"):
        weights - torch.arange(4, dtype=weights.dtype)  # the held shift's old mistake
    with torch.device("meta"):
        assert (weights - torch.arange(4, dtype=weights.dtype, device=weights.device)).tolist() == [1, 0, -1, -2]


@pytest.mark.parametrize("recipe", RECIPES.values(), ids=RECIPES.keys())
def test_low_bit_qat_training_and_simulation_stay_on_the_weights_device(recipe: LowBitRecipe) -> None:
    model = build_model(get_arch("student-hw-mixed"))  # 2-, 4- and 8-bit layers
    model.train()
    x = _input()  # made before the stand-in's default device is set, as data arrive on the device
    model(x)  # batch-norm statistics to fold
    with torch.device("meta"):
        model.start_qat(recipe)
        heatmaps, pafs = model(x)
        (heatmaps.square().mean() + pafs.square().mean()).backward()
        shifts = model.calibrate_shifts()
    assert heatmaps.device.type == "cpu" and bool(torch.isfinite(heatmaps).all())
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and g.device.type == "cpu" and bool(torch.isfinite(g).all()) for g in grads)
    assert (recipe.shift == "mse") == bool(shifts) and all(-15 <= s <= 15 for s in shifts.values())
    model.eval()
    x_int = torch.round(x * 128)
    with torch.device("meta"), torch.no_grad():
        model.to_simulate()
        simulated, _ = model(x_int)
    assert simulated.device.type == "cpu" and bool(simulated.abs().max() > 0)


@pytest.mark.parametrize("recipe", RECIPES.values(), ids=RECIPES.keys())
def test_the_supernet_trains_low_bit_subnets_on_the_weights_device(recipe: LowBitRecipe) -> None:
    space = load_settings(str(resources.files("posenas.studies").joinpath("max78000.yaml"))).space
    net = SuperNet(space, recipe)
    specs = (get_arch("tiny-hw"), get_arch("student-hw-mixed"))
    net.train()
    x = _input()
    with torch.device("meta"):
        for spec in specs:
            heatmaps, pafs = net(x, spec)
        net.start_qat()
        for spec in specs:
            heatmaps, pafs = net(x, spec)
            (heatmaps.square().mean() + pafs.square().mean()).backward()
    assert heatmaps.device.type == "cpu" and bool(torch.isfinite(heatmaps).all())
    assert all(p.grad is None or p.grad.device.type == "cpu" for p in net.parameters())
    assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in net.parameters())


def _on_meta(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` with every tensor on 'meta', where reading a number back (``float()``, ``.item()``, indexing
    by a tensor) raises: what would make a GPU wait for the host on every step."""
    return module.to("meta")


@pytest.mark.parametrize("recipe", RECIPES.values(), ids=RECIPES.keys())
def test_a_qat_step_reads_no_number_back_from_the_device(recipe: LowBitRecipe) -> None:
    x = _input()
    model = build_model(get_arch("student-hw-mixed"))
    model.train()
    model(x)
    model.start_qat(recipe)
    heatmaps, pafs = _on_meta(model)(x.to("meta"))
    (heatmaps.square().mean() + pafs.square().mean()).backward()
    assert heatmaps.device.type == "meta" and tuple(pafs.shape) == (2, 38, 16, 16)

    space = load_settings(str(resources.files("posenas.studies").joinpath("max78000.yaml"))).space
    net = SuperNet(space, recipe)
    net.train()
    net.start_qat()
    net = _on_meta(net)
    for spec in (get_arch("tiny-hw"), get_arch("student-hw-mixed")):  # mse: the shift chosen on every step
        heatmaps, pafs = net(x.to("meta"), spec)
        (heatmaps.square().mean() + pafs.square().mean()).backward()
    assert heatmaps.device.type == "meta"


def test_a_loaded_quantile_rule_is_the_one_the_shift_follows() -> None:
    """The shift's quantile is read on the host; loading a checkpoint must move it with the parameter."""
    x = _input()
    trained = build_model(get_arch("student-hw-mixed"))
    trained.train()
    trained(x)
    trained.start_qat(RECIPES["quantile-0.9"])
    loaded = build_model(get_arch("student-hw-mixed"))
    loaded.start_qat(LowBitRecipe(enabled=False))  # ai8x v1, the maximum: same meta values, other quantile
    low_bit = [i for i, layer in enumerate(loaded.hardware_layers()) if layer.target_bits < 8]
    assert low_bit and all(loaded.hardware_layers()[i].quantile == 1.0 for i in low_bit)
    loaded.load_state_dict(trained.state_dict())
    for i in low_bit:
        layer, source = loaded.hardware_layers()[i], trained.hardware_layers()[i]
        assert layer.quantile == pytest.approx(0.9) and torch.equal(layer._qat_shift(), source._qat_shift())
    with pytest.raises(ValueError, match="shift_quantile"):
        loaded.hardware_layers()[0].set_shift_quantile(1.5)


def _least_error_shift(weight: torch.Tensor, bits: int) -> float:
    """``mse_shift``'s rule read one number at a time on the host (as it was computed before it moved to
    the device): the candidate shifts' squared errors, the first of equal errors (the larger shift) wins."""
    from posenas.posenet.nets import layers

    w = weight.to(torch.float32).flatten()
    top = float(layers._ceil_log2(w.abs().max().reshape(1)))
    steps, errors = 2.0 ** (bits - 1), []
    shifts = [min(max(top - i, -layers._QAT_SHIFT_LIMIT), layers._QAT_SHIFT_LIMIT) for i in range(4)]
    for shift in shifts:
        scale = 2.0**shift
        q = torch.clamp(layers._round_half_up(w / scale * steps) / steps, -1.0, 1.0 - 1.0 / steps) * scale
        errors.append(float(((w - q) ** 2).sum()))
    return shifts[min(range(len(errors)), key=lambda i: (errors[i], i))]


def test_the_shift_chosen_on_the_device_is_the_least_error_shift_read_on_the_host() -> None:
    from posenas.posenet.nets.layers import mse_shift

    generator = torch.Generator().manual_seed(1)
    for trial in range(600):
        size = int(torch.randint(1, 3000, (1,), generator=generator))
        scale = 2.0 ** int(torch.randint(-12, 4, (1,), generator=generator))
        w = torch.randn(size, generator=generator) * scale
        if trial % 3 == 0:  # on the 2-bit grid: equal errors, where the tie rule decides
            w = torch.round(w / scale * 4) * scale / 4
        for bits in (1, 2, 4, 8):
            assert float(mse_shift(w, bits)) == _least_error_shift(w, bits), (trial, bits)
