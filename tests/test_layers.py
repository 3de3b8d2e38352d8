"""Tests for posenet.layers: ai8x v1 layer semantics, BN folding, integer checkpoint, QAT == SIMULATE."""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from posenas.posenet.nets.layers import (
    HwConv2d,
    QuantMode,
    hardware_layers,
    mse_shift,
    quantize_input,
    to_training_scale,
)

META_KEYS = [
    ("output_shift", torch.float32),
    ("weight_bits", torch.int64),
    ("bias_bits", torch.int64),
    ("quantize_activation", torch.bool),
    ("adjust_output_shift", torch.bool),
    ("shift_quantile", torch.float32),
]


@pytest.fixture(autouse=True, scope="module")
def _single_thread() -> Iterator[None]:
    """These tensors are tiny: intra-op thread start-up costs ~100x the work on small CPUs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class _OneLayer(nn.Module):
    def __init__(self, **kwargs: object) -> None:
        super().__init__()
        self.conv1 = HwConv2d(3, 8, 3, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv1(x)


def _randomize_bn(bn: nn.BatchNorm2d, generator: torch.Generator) -> None:
    n = bn.num_features
    with torch.no_grad():
        bn.weight.copy_(torch.rand(n, generator=generator) * 1.5 + 0.5)
        bn.bias.copy_(torch.rand(n, generator=generator) - 0.5)
        bn.running_mean.copy_(torch.rand(n, generator=generator) * 0.4 - 0.2)
        bn.running_var.copy_(torch.rand(n, generator=generator) * 2.0 + 0.1)


def _set_params(layer: HwConv2d, scale: float, generator: torch.Generator) -> None:
    """Weights uniform in (-scale, scale); biases 10x smaller so that they do not saturate the outputs."""
    with torch.no_grad():
        layer.op.weight.copy_((torch.rand(layer.op.weight.shape, generator=generator) * 2 - 1) * scale)
        if layer.op.bias is not None:
            layer.op.bias.copy_((torch.rand(layer.op.bias.shape, generator=generator) * 2 - 1) * scale / 10)


def _random_input(channels: int, amplitude: int, generator: torch.Generator, size: int = 8) -> torch.Tensor:
    return torch.randint(-amplitude, amplitude + 1, (2, channels, size, size), generator=generator).clamp(-128, 127)


def _qat_and_simulate(layer: HwConv2d, x_int: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """QAT output on x_int/128 and SIMULATE output on x_int of the same layer (consumes the layer)."""
    layer.start_qat()
    qat = layer(to_training_scale(x_int)).detach()
    layer.to_simulate()
    sim = layer(x_int)
    return qat, sim


def _assert_simulate_matches_qat(layer: HwConv2d, qat: torch.Tensor, sim: torch.Tensor) -> None:
    assert sim.dtype == torch.float64
    assert torch.equal(sim, torch.round(sim)), "simulate output must be integer"
    factor = 128.0 if not layer.wide else 128.0 * 2.0 ** (layer.target_bits - 1)
    assert torch.equal(sim, factor * qat.to(torch.float64))


# --------------------------------------------------------------------------------------------------
# state_dict layout


def test_state_dict_layout_before_and_after_start_qat() -> None:
    model = _OneLayer()
    state = model.state_dict()
    expected_meta = [f"conv1.{name}" for name, _ in META_KEYS]
    bn_keys = [
        "conv1.bn.weight",
        "conv1.bn.bias",
        "conv1.bn.running_mean",
        "conv1.bn.running_var",
        "conv1.bn.num_batches_tracked",
    ]
    assert list(state) == expected_meta + ["conv1.op.weight", "conv1.op.bias"] + bn_keys
    for name, dtype in META_KEYS:
        assert state[f"conv1.{name}"].shape == (1,)
        assert state[f"conv1.{name}"].dtype == dtype
    assert state["conv1.op.weight"].shape == (8, 3, 3, 3) and state["conv1.op.weight"].dtype == torch.float32
    assert state["conv1.op.bias"].shape == (8,)
    for key in bn_keys[:4]:
        assert state[key].shape == (8,) and state[key].dtype == torch.float32
    batches = state["conv1.bn.num_batches_tracked"]
    assert batches.shape == () and batches.dtype == torch.int64
    assert model.conv1.bn.momentum == 0.05 and model.conv1.bn.eps == 1e-5 and model.conv1.bn.affine

    # FLOAT meta values, and the meta values are frozen Parameters (visible in named_parameters).
    assert state["conv1.output_shift"].item() == 0.0
    assert state["conv1.weight_bits"].item() == 0 and state["conv1.bias_bits"].item() == 0
    assert not state["conv1.quantize_activation"].item() and not state["conv1.adjust_output_shift"].item()
    assert state["conv1.shift_quantile"].item() == 1.0
    params = dict(model.named_parameters())
    assert list(params)[:6] == expected_meta
    assert all(not params[k].requires_grad for k in expected_meta)
    assert params["conv1.op.weight"].requires_grad

    model.conv1.start_qat()
    state = model.state_dict()
    assert list(state) == expected_meta + ["conv1.op.weight", "conv1.op.bias"]
    assert model.conv1.bn is None
    for name, dtype in META_KEYS:
        assert state[f"conv1.{name}"].dtype == dtype and state[f"conv1.{name}"].shape == (1,)
    assert state["conv1.weight_bits"].item() == 8 and state["conv1.bias_bits"].item() == 8
    assert state["conv1.quantize_activation"].item() and state["conv1.adjust_output_shift"].item()
    assert model.conv1.mode is QuantMode.QAT


def test_no_bias_no_bn_and_pool_keys() -> None:
    layer = HwConv2d(4, 2, 1, batchnorm=False, bias=False, pool_size=2, relu=False)
    assert list(layer.state_dict()) == [name for name, _ in META_KEYS] + ["op.weight"]
    assert isinstance(layer.pool, nn.MaxPool2d)
    assert isinstance(HwConv2d(4, 2, 3, pool_size=3, pool_stride=2, pool_type="avg").pool, nn.AvgPool2d)


def test_hardware_layers_in_registration_order() -> None:
    model = nn.Sequential()
    model.add_module("stem", HwConv2d(3, 4, 3))
    inner = nn.Module()
    inner.b = HwConv2d(4, 4, 1)
    inner.a = HwConv2d(4, 4, 3)
    model.add_module("body", inner)
    model.add_module("head", HwConv2d(4, 2, 1, relu=False, wide=True))
    assert [name for name, _ in hardware_layers(model)] == ["stem", "body.b", "body.a", "head"]
    weights = [k for k in model.state_dict() if k.endswith(".op.weight")]
    assert weights == ["stem.op.weight", "body.b.op.weight", "body.a.op.weight", "head.op.weight"]


# --------------------------------------------------------------------------------------------------
# FLOAT mode and BN folding


def test_float_forward_is_conv_bn_div4_and_fold_matches() -> None:
    g = torch.Generator().manual_seed(1)
    layer = HwConv2d(3, 5, 3, relu=False, bn_eps=0.05)  # a large eps makes a fold that ignores it detectable
    _set_params(layer, 0.3, g)
    _randomize_bn(layer.bn, g)
    layer.eval()
    assert layer.bn.eps == 0.05
    x = to_training_scale(_random_input(3, 128, g))

    float_out = layer(x)
    bn = layer.bn
    conv = F.conv2d(x, layer.op.weight, layer.op.bias, padding=1)
    normalized = (conv - bn.running_mean.view(1, -1, 1, 1)) / torch.sqrt(bn.running_var.view(1, -1, 1, 1) + bn.eps)
    manual = (normalized * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)) / 4
    assert torch.allclose(float_out, manual.clamp(-1, 127 / 128), atol=1e-6)
    inside = (float_out > -1) & (float_out < 127 / 128)
    assert inside.float().mean() > 0.9, "the fold check must not be dominated by clamping"

    weight_id = id(layer.op.weight)
    layer.start_qat()
    assert id(layer.op.weight) == weight_id, "folding works in place (optimizer keeps its parameters)"
    folded = F.conv2d(x, layer.op.weight, layer.op.bias, padding=1).clamp(-1, 127 / 128)
    assert torch.allclose(folded, float_out, atol=1e-5)
    # Without the v1 /4 factor the folded conv would be four times larger: make sure that is detectable.
    assert not torch.allclose(folded * 4, float_out, atol=1e-2)


def test_float_mode_clamps_non_wide_outputs() -> None:
    g = torch.Generator().manual_seed(2)
    x = to_training_scale(_random_input(3, 128, g))
    for relu, low in ((False, -1.0), (True, 0.0)):
        layer = HwConv2d(3, 8, 3, batchnorm=False, relu=relu)
        _set_params(layer, 4.0, g)
        out = layer(x)
        assert out.min().item() == low
        assert out.max().item() == 127 / 128
        inside = (out > low) & (out < 127 / 128)
        assert inside.any(), "values between the limits are not rounded or clamped"
        assert not torch.equal(out * 128, torch.round(out * 128)), "FLOAT mode does not round"

    wide = HwConv2d(3, 8, 3, batchnorm=False, relu=False, wide=True)
    _set_params(wide, 4.0, g)
    out = wide(x)
    assert out.abs().max() > 1.0, "wide outputs are only clamped at +-32768"
    assert torch.allclose(out, F.conv2d(x, wide.op.weight, wide.op.bias, padding=1))


def test_float_avg_pool_clamps_without_rounding() -> None:
    layer = HwConv2d(1, 1, 1, batchnorm=False, relu=False, pool_size=2, pool_type="avg")
    with torch.no_grad():
        layer.op.weight.fill_(1.0)
        layer.op.bias.zero_()
    x = torch.tensor([[[[0.5, 0.25], [0.0, 0.0078125]]]])  # mean 0.189453125 = 24.25 / 128
    assert layer(x).item() == pytest.approx(0.189453125)
    layer.start_qat()  # QAT truncates the pooled value to the 1/128 grid: 24 / 128
    assert layer(x).item() == 24 / 128


# --------------------------------------------------------------------------------------------------
# QAT <-> SIMULATE equivalence

REGIMES = {
    # name: (weight scale, expected sign of output_shift = QAT shift = -bit_shift)
    "large": (8.0, +1),  # |w| up to 8: bit_shift = -3 (negative), output_shift = +3
    "small": (1.0 / 64.0, -1),  # |w| < 2**-6: bit_shift = +6, output_shift = -6
}


def _input_amplitude(scale: float, fan_in: int) -> int:
    """Integer input range that keeps typical outputs around 0.5 (so outputs are neither all 0 nor saturated)."""
    return max(1, min(128, int(192 / (math.sqrt(fan_in) * scale))))


@pytest.mark.parametrize("activation", ["relu", "linear", "wide"])
@pytest.mark.parametrize("regime", sorted(REGIMES))
@pytest.mark.parametrize("pool", ["none", "max", "avg"])
@pytest.mark.parametrize("kernel", [3, 1])
@pytest.mark.parametrize("bits", [8, 4, 2, 1])
def test_simulate_equals_scaled_qat(bits: int, kernel: int, pool: str, regime: str, activation: str) -> None:
    scale, shift_sign = REGIMES[regime]
    case = (bits, kernel, pool, regime, activation)
    g = torch.Generator().manual_seed(zlib.crc32(repr(case).encode()))
    in_channels = 8
    wide = activation == "wide"
    layer = HwConv2d(
        in_channels,
        6,
        kernel,
        batchnorm=False,
        relu=activation == "relu",
        wide=wide,
        weight_bits=bits,
        pool_size=0 if pool == "none" else 2,
        pool_type="max" if pool == "none" else pool,
    )
    _set_params(layer, scale, g)
    x_int = _random_input(in_channels, _input_amplitude(scale, in_channels * kernel * kernel), g, size=10)

    qat, sim = _qat_and_simulate(layer, x_int)
    _assert_simulate_matches_qat(layer, qat, sim)

    output_shift = int(layer.output_shift.item())
    assert output_shift * shift_sign > 0, f"regime {regime} must produce output_shift with sign {shift_sign}"
    assert output_shift == (3 if regime == "large" else -6)
    if layer.relu and pool == "max" and bits == 1:
        # 1-bit weights and biases are {-1, 0} * 2**shift, so sum(w * x) + b <= 0 wherever the max-pooled
        # inputs are >= 0 (almost everywhere): this ReLU layer is legitimately all zero. "linear" covers it.
        return
    # The comparison must be about real values: enough non-zero, non-saturated outputs (ReLU after
    # max-pooling zeroes most outputs, hence the lower bar there).
    low = -(2.0**29) if wide else (0.0 if layer.relu else -128.0)
    high = 2.0**29 - 1 if wide else 127.0
    informative = (sim != 0) & (sim > low) & (sim < high)
    assert informative.double().mean() > (0.05 if layer.relu else 0.2)


@pytest.mark.parametrize("bits", [8, 2])
def test_simulate_equals_qat_with_stride_quantile_and_folded_bn(bits: int) -> None:
    g = torch.Generator().manual_seed(40 + bits)
    layer = HwConv2d(4, 6, 3, stride=2, weight_bits=bits, shift_quantile=0.9, relu=False)
    _set_params(layer, 0.5, g)
    _randomize_bn(layer.bn, g)
    layer.eval()
    x_int = _random_input(4, 128, g, size=12)
    layer.start_qat()
    with torch.no_grad():
        # 6 of 216 weights become outliers far above the 0.9 quantile: QAT and to_simulate must clip them.
        outliers = 4 * layer.op.weight.abs().max() * torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0, -1.0])
        layer.op.weight[:, 0, 0, 0] = outliers
    qat = layer(to_training_scale(x_int)).detach()
    layer.to_simulate()
    sim = layer(x_int)

    assert sim.shape == (2, 6, 6, 6)
    _assert_simulate_matches_qat(layer, qat, sim)
    w_int, _, _ = layer.integer_weights()
    limit = 2 ** (bits - 1)
    assert w_int[:, 0, 0, 0].tolist() == [limit - 1, -limit] * 3
    assert ((sim > -128) & (sim < 127) & (sim != 0)).double().mean() > 0.5


# --------------------------------------------------------------------------------------------------
# The low-bit recipe's arithmetic: a held, least-error shift and an 8-bit bias on the weights' grid


@pytest.mark.parametrize("activation", ["relu", "linear", "wide"])
@pytest.mark.parametrize("pool", ["none", "max", "avg"])
@pytest.mark.parametrize("bits", [8, 4, 2, 1])
def test_simulate_equals_scaled_qat_with_held_shift_and_8bit_bias(bits: int, pool: str, activation: str) -> None:
    case = ("recipe", bits, pool, activation)
    g = torch.Generator().manual_seed(zlib.crc32(repr(case).encode()))
    wide = activation == "wide"
    layer = HwConv2d(
        8,
        6,
        3,
        relu=activation == "relu",
        wide=wide,
        weight_bits=bits,
        pool_size=0 if pool == "none" else 2,
        pool_type="max" if pool == "none" else pool,
    )
    _set_params(layer, 0.05, g)
    _randomize_bn(layer.bn, g)
    with torch.no_grad():  # biases of many weight steps, as folded batch-norm offsets are
        layer.bn.bias.mul_(4.0)
    layer.eval()
    x_int = _random_input(8, 128, g, size=10)
    layer.start_qat(bias_bits=8, fixed_shift=True)
    assert layer.shift_is_fixed and not layer.adjust_output_shift.item() and layer.bias_bits.item() == 8
    held = int(layer.output_shift.item())
    assert held == int(mse_shift(layer.op.weight, bits).item())
    qat = layer(to_training_scale(x_int)).detach()
    layer.to_simulate()
    sim = layer(x_int)
    _assert_simulate_matches_qat(layer, qat, sim)
    assert int(layer.output_shift.item()) == held  # the held shift is the chip's
    _, b_int, _ = layer.integer_weights()
    assert b_int is not None and b_int.min() >= -128 and b_int.max() <= 127
    if bits < 8:  # the point of the 8-bit bias: offsets beyond the weights' own range survive
        assert b_int.abs().max() > 2 ** (bits - 1)
    if layer.relu and pool == "max" and bits == 1:
        return  # as in test_simulate_equals_scaled_qat: {-1, 0} weights after a max-pool are legitimately 0
    low = -(2.0**29) if wide else (0.0 if layer.relu else -128.0)
    high = 2.0**29 - 1 if wide else 127.0
    informative = (sim != 0) & (sim > low) & (sim < high)
    assert informative.double().mean() > (0.05 if layer.relu else 0.2)


@pytest.mark.parametrize("bits", [4, 2])
def test_mse_shift_is_the_least_error_power_of_two(bits: int) -> None:
    g = torch.Generator().manual_seed(bits)
    steps = 2.0 ** (bits - 1)
    for trial in range(20):
        # Gaussian weights with a few outliers: the maximum-based shift is rarely the best at low bits
        weight = torch.randn(16, 8, 3, 3, generator=g) * 0.05
        weight.view(-1)[:trial] *= 6
        chosen = int(mse_shift(weight, bits).item())

        def error(shift: int, weight: torch.Tensor = weight) -> float:
            scale = 2.0**shift
            q = torch.clamp(torch.floor(weight / scale * steps + 0.5) / steps, -1, 1 - 1 / steps) * scale
            return float(((weight - q) ** 2).sum())

        top = math.ceil(math.log2(float(weight.abs().max())))
        assert error(chosen) == min(error(s) for s in range(top - 3, top + 1))
        assert error(chosen) <= error(top)  # never worse than ai8x's maximum-based shift
    assert int(mse_shift(torch.zeros(4, 4, 1, 1), bits).item()) == 0


def test_hand_computed_2bit_layer_with_held_shift_and_8bit_bias() -> None:
    layer = HwConv2d(4, 1, 1, batchnorm=False, relu=False, weight_bits=2)
    with torch.no_grad():
        layer.op.weight.copy_(torch.tensor([0.3, -0.1, 0.26, -0.55]).view(1, 4, 1, 1))
        layer.op.bias.fill_(3.1)
    layer.start_qat(bias_bits=8, fixed_shift=True)
    # ai8x's shift would be 0 (max 0.55 -> levels {-1, -0.5, 0, 0.5}: 0.3 -> 0.5, 0.26 -> 0.5, 0.1 -> 0, error
    # 0.1045); shift -1 (levels {-0.5, -0.25, 0, 0.25}): 0.3 -> 0.25, -0.1 -> 0, 0.26 -> 0.25, -0.55 -> -0.5,
    # error 0.0151; shift -2: -0.55 clips to -0.25, error 0.1014; so -1.
    assert int(layer.output_shift.item()) == -1
    layer.to_simulate()
    w_int, b_int, shift = layer.integer_weights()
    assert w_int.flatten().tolist() == [1, 0, 1, -2]  # levels of 0.25: round_half_up(w * 4), clamped to [-2, 1]
    # bias 3.1 on the 0.25 grid: round_half_up(12.4) = 12 weight steps (ai8x v1 would clamp it to 1)
    assert b_int is not None and b_int.tolist() == [12]
    assert layer.op.bias.item() == 24.0  # stored times 2**(bits-1), as ai8x-synthesis reads it
    assert layer.output_shift.item() == -1.0 and shift == 5  # s = output_shift + 8 - 2
    x = torch.tensor([[100], [-50], [20], [10]], dtype=torch.int64)
    # acc = 100 + 20 - 2 * 10 + 128 * 12 = 1636; y = round_half_up(1636 * 2**5 / 128) = 409 -> clamped 127
    assert layer(x.view(1, 4, 1, 1)).flatten().tolist() == [127.0]
    x = torch.tensor([[4], [0], [-3], [60]], dtype=torch.int64)
    # acc = 4 - 3 - 120 + 1536 = 1417 -> 354.25 -> 127; and a negative case:
    assert layer(x.view(1, 4, 1, 1)).flatten().tolist() == [127.0]
    x = torch.tensor([[-128], [0], [-128], [127]], dtype=torch.int64)
    # acc = -128 - 128 - 254 + 1536 = 1026 -> 256.5 -> 127
    assert layer(x.view(1, 4, 1, 1)).flatten().tolist() == [127.0]


def test_a_held_shift_checkpoint_loads_only_into_a_layer_that_holds_it() -> None:
    g = torch.Generator().manual_seed(5)
    source = _OneLayer(batchnorm=False, weight_bits=2)
    _set_params(source.conv1, 0.5, g)
    source.conv1.start_qat(bias_bits=8, fixed_shift=True)

    def v1_layer() -> _OneLayer:  # a failed load has already overwritten the target's values: a fresh one each
        v1 = _OneLayer(batchnorm=False, weight_bits=2)
        v1.conv1.start_qat()
        return v1

    with pytest.raises(RuntimeError, match="expected"):
        v1_layer().load_state_dict(source.state_dict())
    held = _OneLayer(batchnorm=False, weight_bits=2)
    held.conv1.start_qat(bias_bits=8, fixed_shift=True)
    with pytest.raises(RuntimeError, match="expected"):
        held.load_state_dict(v1_layer().state_dict())
    same = _OneLayer(batchnorm=False, weight_bits=2)
    same.conv1.start_qat(bias_bits=8, fixed_shift=True)
    same.load_state_dict(source.state_dict())
    x = to_training_scale(_random_input(3, 128, g))
    assert torch.equal(same(x), source(x))


# --------------------------------------------------------------------------------------------------
# Hand-computed examples


def _one_by_one(weight: list[float], bias: float, bits: int, relu: bool) -> HwConv2d:
    layer = HwConv2d(len(weight), 1, 1, batchnorm=False, relu=relu, weight_bits=bits)
    with torch.no_grad():
        layer.op.weight.copy_(torch.tensor(weight).view(1, -1, 1, 1))
        layer.op.bias.fill_(bias)
    layer.start_qat()
    layer.to_simulate()
    return layer


def test_hand_computed_8bit_layer() -> None:
    # w = 81/32, b = -1/2: max |param| = 2.53 -> QAT shift ceil(log2 2.53) = 2, bit_shift -2
    # w_int = 81/32 * 128 / 4 = 81, b_int = -1/2 * 32 = -16 (stored -16 * 128 = -2048), output_shift 2, s = 2
    # y = floor(0.5 + (81 x - 2048) * 2**2 / 128) = floor(0.5 + (81 x - 2048) / 32), clamp [-128, 127]
    plain = _one_by_one([81 / 32], -0.5, bits=8, relu=False)
    w_int, b_int, shift = plain.integer_weights()
    assert w_int.dtype == torch.int64 and w_int.flatten().tolist() == [81]
    assert b_int is not None and b_int.tolist() == [-16]
    assert plain.op.bias.item() == -2048.0
    assert plain.output_shift.item() == 2.0 and shift == 2

    x = torch.tensor([0, 1, 16, -16, -128, 127, 48, 40], dtype=torch.int64).view(1, 1, 1, 8)
    # -64: exact; -61.47 -> -61; -23.5 -> -23 and -104.5 -> -104 (halves go up); -388 -> -128;
    # 257.47 -> 127; 57.5 -> 58; 37.25 -> 37
    assert plain(x).flatten().tolist() == [-64, -61, -23, -104, -128, 127, 58, 37]
    with_relu = _one_by_one([81 / 32], -0.5, bits=8, relu=True)
    assert with_relu(x).flatten().tolist() == [0, 0, 0, 0, 0, 127, 58, 37]


def test_hand_computed_4bit_checkpoint_and_output() -> None:
    # max |param| = 1.0 -> shift 0; w_int = round_half_up(8 w) = [6, -2, 0, -8]; b: 8 -> clamped to 7, stored 7*8
    layer = _one_by_one([0.75, -0.3, 0.05, -1.0], 1.0, bits=4, relu=False)
    w_int, b_int, shift = layer.integer_weights()
    assert w_int.flatten().tolist() == [6, -2, 0, -8]
    assert b_int is not None and b_int.tolist() == [7]
    assert layer.op.bias.item() == 56.0
    assert layer.output_shift.item() == 0.0 and shift == 4  # s = output_shift + 8 - 4
    # acc = 6 x0 - 2 x1 - 8 x3 + 128 * 7; y = floor(0.5 + acc * 16 / 128)
    x = torch.tensor([[10, -100, 127], [20, 50, -128], [30, 0, 127], [1, 30, -128]], dtype=torch.int64)
    y = layer(x.view(1, 4, 1, 3)).flatten().tolist()
    assert y == [114, -5, 127]  # acc 908 -> 113.5 -> 114; acc -44 -> -5.5 -> -5; acc 2938 -> 367.25 -> 127


def test_quantize_input_and_training_scale() -> None:
    images = torch.tensor([0.0, 1.0, 0.5, 0.25, 0.5 + 0.5 / 256, 0.5 - 0.5 / 256, 0.5 - 1.5 / 256, 0.999])
    x_int = quantize_input(images)
    assert x_int.dtype == torch.int64
    assert x_int.tolist() == [-128, 127, 0, -64, 1, 0, -1, 127]
    scaled = to_training_scale(x_int)
    assert scaled.dtype == torch.float32
    assert scaled.tolist() == [-1.0, 127 / 128, 0.0, -0.5, 1 / 128, 0.0, -1 / 128, 127 / 128]


# --------------------------------------------------------------------------------------------------
# Integer checkpoint properties


@pytest.mark.parametrize("bits", [8, 4, 2, 1])
def test_to_simulate_produces_hardware_ranges(bits: int) -> None:
    g = torch.Generator().manual_seed(60 + bits)
    for scale, quantile in ((3.0, 1.0), (0.01, 0.985), (200.0, 1.0)):
        layer = HwConv2d(5, 7, 3, weight_bits=bits, shift_quantile=quantile)
        _set_params(layer, scale, g)
        _randomize_bn(layer.bn, g)
        layer.start_qat()
        layer.to_simulate()
        limit = 2 ** (bits - 1)
        weight = layer.op.weight.detach()
        assert torch.equal(weight, torch.round(weight))
        assert weight.min() >= -limit and weight.max() <= limit - 1
        stored_bias = layer.op.bias.detach()
        assert torch.equal(torch.remainder(stored_bias, limit), torch.zeros_like(stored_bias))
        output_shift = layer.output_shift.item()
        assert output_shift == round(output_shift) and bits - 23 <= output_shift <= bits + 7
        w_int, b_int, shift = layer.integer_weights()
        assert torch.equal(w_int, weight.to(torch.int64))
        assert b_int is not None and b_int.min() >= -limit and b_int.max() <= limit - 1
        # The shift is the tightest one: the largest parameter lands in the upper half of the integer range.
        largest = max(w_int.abs().max().item(), b_int.abs().max().item())
        assert largest >= max(1, limit // 2)
        assert -15 <= shift <= 15
        assert layer.weight_bits.item() == bits and layer.bias_bits.item() == bits
        assert layer.quantize_activation.item() and not layer.adjust_output_shift.item()
        assert layer.mode is QuantMode.SIMULATE


def test_to_simulate_clamps_bit_shift_for_tiny_weights() -> None:
    layer = HwConv2d(2, 2, 1, batchnorm=False, weight_bits=4)
    with torch.no_grad():
        layer.op.weight.fill_(2.0**-22)
        layer.op.bias.zero_()
    layer.start_qat()
    layer.to_simulate()
    # Unclamped bit_shift would be 22 (weights 2**-22 * 8 * 2**22 = 8 -> clamped 7); quantize.py clamps the
    # bit_shift to 23 - 4 = 19, so the weights become 2**-22 * 8 * 2**19 = 1 and s hits the hardware limit -15.
    assert layer.output_shift.item() == -19.0
    assert layer.integer_weights()[2] == -15
    assert layer.op.weight.flatten().tolist() == [1.0] * 4


def test_all_zero_parameters_give_zero_shift_and_no_nan() -> None:
    layer = HwConv2d(3, 4, 3, batchnorm=False, relu=False)
    with torch.no_grad():
        layer.op.weight.zero_()
        layer.op.bias.zero_()
    layer.start_qat()
    x = to_training_scale(_random_input(3, 128, torch.Generator().manual_seed(5)))
    out = layer(x)
    assert torch.isfinite(out).all() and torch.count_nonzero(out) == 0
    layer.to_simulate()
    assert layer.output_shift.item() == 0.0
    assert torch.count_nonzero(layer(x * 128)) == 0


# --------------------------------------------------------------------------------------------------
# Gradients


def test_qat_straight_through_gradients() -> None:
    g = torch.Generator().manual_seed(7)
    layer = HwConv2d(3, 6, 3, pool_size=2, pool_type="avg", weight_bits=4)
    _set_params(layer, 0.5, g)
    layer.start_qat()
    x = to_training_scale(_random_input(3, 128, g)).requires_grad_(True)
    target = torch.rand(2, 6, 4, 4, generator=g) * 0.5
    loss = F.mse_loss(layer(x), target)
    loss.backward()
    for grad in (layer.op.weight.grad, layer.op.bias.grad, x.grad):
        assert grad is not None and torch.isfinite(grad).all()
        assert grad.abs().sum() > 0
    assert (layer.op.weight.grad != 0).float().mean() > 0.5, "rounding must not zero most weight gradients"
    assert all(p.grad is None for name, p in layer.named_parameters() if not name.startswith("op."))


# --------------------------------------------------------------------------------------------------
# Mode handling and validation


def test_mode_transitions_are_enforced() -> None:
    layer = HwConv2d(3, 4, 3)
    assert layer.mode is QuantMode.FLOAT and layer.target_bits == 8
    with pytest.raises(RuntimeError):
        layer.to_simulate()
    with pytest.raises(RuntimeError):
        layer.integer_weights()
    layer.start_qat()
    with pytest.raises(RuntimeError):
        layer.start_qat()
    layer.to_simulate()
    with pytest.raises(RuntimeError):
        layer.to_simulate()
    with pytest.raises(AttributeError):
        layer.mode = QuantMode.FLOAT  # type: ignore[misc]


def test_loading_checks_mode_of_checkpoint() -> None:
    g = torch.Generator().manual_seed(9)
    source = _OneLayer(batchnorm=False)
    _set_params(source.conv1, 0.5, g)
    source.conv1.start_qat()
    source.conv1.to_simulate()
    x_int = _random_input(3, 128, g)

    target = _OneLayer(batchnorm=False)
    target.conv1.start_qat()
    target.conv1.to_simulate()
    target.load_state_dict(source.state_dict())
    assert torch.equal(target(x_int), source(x_int))

    qat_target = _OneLayer(batchnorm=False)
    qat_target.conv1.start_qat()
    with pytest.raises(RuntimeError, match="expected"):
        qat_target.load_state_dict(source.state_dict())
    four_bit = _OneLayer(batchnorm=False, weight_bits=4)
    four_bit.conv1.start_qat()
    four_bit.conv1.to_simulate()
    with pytest.raises(RuntimeError, match="target_bits=4"):
        four_bit.load_state_dict(source.state_dict())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"wide": True},  # relu defaults to True
        {"weight_bits": 3},
        {"pool_type": "sum", "pool_size": 2},
        {"batchnorm": True, "bias": False},
        {"shift_quantile": 0.0},
    ],
)
def test_invalid_configurations_raise(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        HwConv2d(3, 4, 3, **kwargs)


def test_default_padding_and_stride_shapes() -> None:
    x = torch.zeros(1, 3, 16, 16)
    assert HwConv2d(3, 4, 3)(x).shape == (1, 4, 16, 16)
    assert HwConv2d(3, 4, 1)(x).shape == (1, 4, 16, 16)
    assert HwConv2d(3, 4, 3, stride=2)(x).shape == (1, 4, 8, 8)
    assert HwConv2d(3, 4, 3, pool_size=2)(x).shape == (1, 4, 8, 8)
