"""One MAX78000 CNN hardware layer with ai8x-training "QAT v1" semantics.

Why this module exists: posenas trains networks whose checkpoints must be interchangeable with ADI's
ai8x-training (so ai8x-synthesis can read them) and whose integer behaviour must be known exactly (so
our exporter and C code can be checked bit for bit). ``HwConv2d`` therefore reproduces, per layer:

* the state_dict layout of an ai8x ``QuantizationAwareModule`` (six meta ``Parameter``\\ s, then
  ``op.*``, then ``bn.*``), because ai8x-synthesis assigns layers by walking the keys in order;
* the three arithmetic regimes of ai8x-training v1 (see ``QuantMode``);
* the ai8x-synthesis ``quantize.py`` conversion of a QAT layer to its integer checkpoint.

Scales (v1): activations travel on a 1/128 grid in [-1, 127/128] during training ("training scale")
and as integers in [-128, 127] in SIMULATE mode, so for non-wide layers
``simulate(x_int) == 128 * qat(x_int / 128)`` exactly, and for wide layers
``simulate(x_int) == 128 * 2**(bits-1) * qat(x_int / 128)`` (raw accumulator vs. Q17.14 value scaled
by ``2**-shift``). Both identities hold as long as the QAT accumulator stays exactly representable in
float32 (|acc| well below 2**23, true for hardware-sized layers and the usual activation ranges).

The mode is per-layer state (no module globals): a layer starts in FLOAT, ``start_qat`` moves it to
QAT, ``to_simulate`` to SIMULATE. Load checkpoints into a layer that is already in the checkpoint's
mode; a mismatch between the loaded meta parameters and the layer's mode raises instead of silently
mis-computing.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from posenas.posenet.nets.config import QuantMode

__all__ = [
    "QuantMode",
    "HwConv2d",
    "quantize_input",
    "to_training_scale",
    "hardware_layers",
    "wide_output_scale",
]

SUPPORTED_BITS = (1, 2, 4, 8)
MAX_BIAS_BITS = 8  # the chip's bias memory holds 8-bit values whatever the weights' bits

_ACT_STEPS = 128.0  # 8-bit activations: one integer step is 1/128 in training scale
_ACT_MIN, _ACT_MAX = -1.0, 127.0 / 128.0
_WIDE_STEPS = 2.0**14  # wide outputs are Q17.14 (ai8x WIDE_LAYER_RESOLUTION_BITS = 15)
_WIDE_LIMIT = 32768.0  # 2**(30 - 14 - 1), the training-scale clamp of a wide output
_ACC_MIN, _ACC_MAX = float(-(2**29)), float(2**29 - 1)  # hardware clamp of a 32-bit output
_QAT_SHIFT_LIMIT = 15  # ai8x OutputShiftLimit
_BN_OUTPUT_SCALE = 0.25  # v1 divides the BN output by 4 (and folds g/4, beta/4 accordingly)


def _round_half_up(x: torch.Tensor) -> torch.Tensor:
    """Hardware rounding rule: halves go towards +inf."""
    return torch.floor(x + 0.5)


def _straight_through(x: torch.Tensor, quantized: torch.Tensor) -> torch.Tensor:
    """Value of ``quantized`` with the gradient of the identity, so rounding does not block training."""
    return x + (quantized - x).detach()


def _fake_quantize(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Round to the 2**-(bits-1) grid and clamp to [-1, 1 - 2**-(bits-1)] (ai8x weight/bias quantizer)."""
    steps = 2.0 ** (bits - 1)
    rounded = _straight_through(x, _round_half_up(x * steps) / steps)
    return torch.clamp(rounded, -1.0, 1.0 - 1.0 / steps)


def _fake_quantize_bias(x: torch.Tensor, bits: int, bias_bits: int) -> torch.Tensor:
    """A bias on the ``bits``-bit weights' grid, clamped to the signed ``bias_bits`` range of that grid
    (``_fake_quantize`` when the two are equal)."""
    steps = 2.0 ** (bits - 1)
    rounded = _straight_through(x, _round_half_up(x * steps) / steps)
    limit = 2.0 ** (bias_bits - 1)
    return torch.clamp(rounded, -limit / steps, (limit - 1) / steps)


def _ceil_log2(value: torch.Tensor) -> torch.Tensor:
    """Exact ceil(log2(value)) for value > 0, and 0 where value == 0.

    ``frexp`` writes value = m * 2**e with m in [0.5, 1), so exact powers of two (m == 0.5) give e - 1.
    Unlike float ``log2`` this cannot round across a power of two, which guarantees that QAT and
    ``to_simulate`` pick the same shift. All-zero parameters get shift 0 instead of -inf (their
    output is 0 whatever the shift).
    """
    mantissa, exponent = torch.frexp(value)
    ceil = torch.where(mantissa == 0.5, exponent - 1, exponent).to(value.dtype)
    return torch.where(value > 0, ceil, torch.zeros_like(ceil))


def _to_signed_int(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Round half up and clamp to the signed ``bits`` integer range (ai8x-synthesis quantize.py)."""
    return torch.clamp(_round_half_up(x), -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1)


def _meta_parameter(value: torch.Tensor) -> nn.Parameter:
    """ai8x keeps its meta values as frozen Parameters (not buffers); we mirror that for checkpoint parity."""
    return nn.Parameter(value, requires_grad=False)


class HwConv2d(nn.Module):
    """One MAX78000 hardware layer: optional fused pooling -> Conv2d -> optional BatchNorm -> optional ReLU
    -> quantize/clamp.

    With ``wide=True``: no activation, 32-bit output (no output shift applied, as the hardware).

    Submodules: ``pool`` (``nn.MaxPool2d``/``nn.AvgPool2d`` or None), ``op`` (``nn.Conv2d``), ``bn``
    (affine ``nn.BatchNorm2d``, None once folded). ``wide`` and ``relu`` are kept as plain attributes for
    the exporter. Hardware limits (kernel 1/3, stride 1, ...) are not
    enforced here; that is the budget checker's job, and stride > 1 works in FLOAT and QAT.

    SIMULATE mode accepts integer-valued tensors of any dtype, computes in float64 (exact for these
    sums) and returns float64 integers.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        padding: int | None = None,
        stride: int = 1,
        pool_size: int = 0,
        pool_stride: int | None = None,
        pool_type: str = "max",
        batchnorm: bool = True,
        relu: bool = True,
        wide: bool = False,
        weight_bits: int = 8,
        bias: bool = True,
        bn_momentum: float = 0.05,
        bn_eps: float = 1e-5,
        shift_quantile: float = 1.0,
    ) -> None:
        super().__init__()
        _validate_config(pool_type, batchnorm, relu, wide, weight_bits, bias, shift_quantile)
        self.wide = wide
        self.relu = relu
        self._target_bits = weight_bits
        self._mode = QuantMode.FLOAT
        self._bias_bits, self._fixed_shift = weight_bits, False  # QAT choices (start_qat); ai8x v1 by default

        # Registration order is the ai8x state_dict order: meta parameters, then op, then bn.
        self.output_shift = _meta_parameter(torch.zeros(1, dtype=torch.float32))
        self.weight_bits = _meta_parameter(torch.zeros(1, dtype=torch.int64))
        self.bias_bits = _meta_parameter(torch.zeros(1, dtype=torch.int64))
        self.quantize_activation = _meta_parameter(torch.zeros(1, dtype=torch.bool))
        self.adjust_output_shift = _meta_parameter(torch.zeros(1, dtype=torch.bool))
        self.shift_quantile = _meta_parameter(torch.tensor([shift_quantile], dtype=torch.float32))
        # shift_quantile's value on the host: reading the parameter on every forward pass would make a GPU
        # wait for each layer. Kept equal by set_shift_quantile and by loading (_mirror_loaded_quantile).
        self._shift_quantile = float(shift_quantile)

        self.pool: nn.Module | None = _make_pool(pool_type, pool_size, pool_stride)
        self.op = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2 if padding is None else padding,
            bias=bias,
        )
        self.bn: nn.BatchNorm2d | None = (
            nn.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum) if batchnorm else None
        )
        self.register_load_state_dict_post_hook(_check_loaded_meta)
        self.register_load_state_dict_post_hook(_mirror_loaded_quantile)

    @property
    def mode(self) -> QuantMode:
        """Current arithmetic regime; changed only by ``start_qat`` and ``to_simulate``."""
        return self._mode

    @property
    def target_bits(self) -> int:
        """Weight (and bias) bits QAT and the integer checkpoint use: 8, 4, 2 or 1."""
        return self._target_bits

    def _meta_for(self, mode: QuantMode) -> tuple[int, int, bool, bool]:
        """(weight_bits, bias_bits, quantize_activation, adjust_output_shift) that ai8x stores in ``mode``, for
        this layer's QAT choices (``start_qat``)."""
        if mode is QuantMode.FLOAT:
            return 0, 0, False, False
        bits = self._target_bits
        return bits, self._bias_bits, True, mode is QuantMode.QAT and not self._fixed_shift

    def _enter(self, mode: QuantMode) -> None:
        weight_bits, bias_bits, quantize_activation, adjust_output_shift = self._meta_for(mode)
        with torch.no_grad():
            self.weight_bits.fill_(weight_bits)
            self.bias_bits.fill_(bias_bits)
            self.quantize_activation.fill_(quantize_activation)
            self.adjust_output_shift.fill_(adjust_output_shift)
        self._mode = mode

    def _require(self, mode: QuantMode, action: str) -> None:
        if self._mode is not mode:
            raise RuntimeError(f"{action} needs a layer in {mode.value} mode, this one is in {self._mode.value} mode")

    def start_qat(self, *, bias_bits: int | None = None, fixed_shift: bool = False) -> None:
        """FLOAT -> QAT: fold BN into the conv (v1 factor 1/4, running statistics), drop ``bn``, set meta values.

        Mirrors ai8x ``fuse_bn_layers`` + ``initiate_qat``. Parameters are updated in place so that an
        optimizer holding ``op.weight``/``op.bias`` keeps working.

        The defaults are ai8x v1: the bias quantized to the weights' bits and the shift recomputed from a
        quantile of |[w; b]| on every forward pass. ``bias_bits=8`` keeps the bias at the 8 bits the
        chip's bias memory holds, on the weights' grid (a 2-bit layer's bias may then be -128..127 weight
        steps instead of -2..1); ``fixed_shift`` holds the shift in ``output_shift`` (chosen by
        ``calibrate_shift``, minimum weight quantization error) instead of recomputing it. Both are stored
        in the layer's meta values (``bias_bits``, ``adjust_output_shift``), so a checkpoint says which
        arithmetic it was trained in, and ``to_simulate`` converts with the same rules (the low-bit recipe,
        BENCHMARKS.md "Low-bit QAT").
        """
        self._require(QuantMode.FLOAT, "start_qat")
        if bias_bits is not None and bias_bits not in (self._target_bits, MAX_BIAS_BITS):
            raise ValueError(
                f"bias_bits must be the weight bits ({self._target_bits}) or {MAX_BIAS_BITS}, got {bias_bits}"
            )
        if self.bn is not None:
            self._fold_batchnorm()
            self.bn = None
        self._bias_bits, self._fixed_shift = bias_bits or self._target_bits, fixed_shift
        self._enter(QuantMode.QAT)
        if fixed_shift:
            self.calibrate_shift()

    @property
    def quantile(self) -> float:
        """The quantile of |[w; b]| that ai8x v1's QAT shift follows (``shift_quantile``; 1 is the maximum)."""
        return self._shift_quantile

    def set_shift_quantile(self, quantile: float) -> None:
        """Follow ``quantile`` of |[w; b]| in ai8x v1's QAT shift (the low-bit recipe's ``quantile`` rule)."""
        _check_quantile(quantile)
        with torch.no_grad():
            self.shift_quantile.fill_(quantile)
        self._shift_quantile = float(quantile)

    @property
    def shift_is_fixed(self) -> bool:
        """QAT with the shift held in ``output_shift`` (not recomputed per forward pass)."""
        return self._mode is QuantMode.QAT and self._fixed_shift

    def calibrate_shift(self) -> int:
        """QAT: fix the shift at the power of two that minimises the weights' quantization error now, and
        return it. Called at the switch and again between epochs (the weights move; a shift recomputed on
        every step instead flips whenever the largest weight crosses a power of two)."""
        self._require(QuantMode.QAT, "calibrate_shift")
        if not self._fixed_shift:
            raise RuntimeError("calibrate_shift needs a layer whose QAT shift is held (start_qat(fixed_shift=True))")
        shift = mse_shift(self.op.weight, self._target_bits)
        with torch.no_grad():
            self.output_shift.copy_(shift)
        return int(shift.item())

    def exact_output(self, x: torch.Tensor) -> torch.Tensor:
        """QAT mode: this layer's output on ``x`` with its folded weights unquantized and no activation
        rounding, what the fake quantization approximates (for diagnostics). A wide output comes at the
        QAT output's scale (2**-shift)."""
        self._require(QuantMode.QAT, "exact_output")
        x = self._pool(x)
        y = self._conv(x, self.op.weight, self.op.bias)
        if self.wide:
            return y * torch.exp2(-self._qat_shift())
        return float_activation(y, wide=False, relu=self.relu)

    def _qat_shift(self) -> torch.Tensor:
        """The QAT shift (weights scaled by 2**-shift): held, or from the quantile as ai8x v1."""
        if self.shift_is_fixed:
            return self.output_shift.detach()
        return quantile_shift(self.op.weight, self.op.bias, self._shift_quantile)

    def _fold_batchnorm(self) -> None:
        bn = self.bn
        assert bn is not None and self.op.bias is not None  # guaranteed by _validate_config
        with torch.no_grad():
            weight, bias = fold_batchnorm(
                self.op.weight, self.op.bias, bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.eps
            )
            self.op.weight.copy_(weight)
            self.op.bias.copy_(bias)

    def to_simulate(self) -> None:
        """QAT -> SIMULATE: replace ``op.weight``/``op.bias`` by the ai8x-synthesis integer checkpoint.

        bit_shift = clamp(-ceil(log2(quantile(|[w; b]|, q))), -7-b, 23-b) (or minus the held shift); weights
        become clamp(round_half_up(w * 2**(b-1) * 2**bit_shift)) in the signed b-bit range, the bias the same
        in the signed ``bias_bits`` range, stored times 2**(b-1) (quantize.py's format, which
        ai8x-synthesis divides back), output_shift = -bit_shift.
        """
        self._require(QuantMode.QAT, "to_simulate")
        bits, bias_bits = self._target_bits, self._bias_bits
        with torch.no_grad():
            if self.shift_is_fixed:  # QAT used this shift; its range is within the clamp below
                bit_shift = torch.clamp(-self.output_shift.detach(), -7 - bits, 23 - bits)
            else:
                magnitude = self._parameter_magnitude()
                bit_shift = torch.clamp(-_ceil_log2(magnitude), -7 - bits, 23 - bits)
            factor = torch.exp2(bit_shift + (bits - 1))
            self.op.weight.copy_(_to_signed_int(self.op.weight * factor, bits))
            if self.op.bias is not None:
                self.op.bias.copy_(_to_signed_int(self.op.bias * factor, bias_bits) * 2.0 ** (bits - 1))
            self.output_shift.copy_(-bit_shift)
        self._enter(QuantMode.SIMULATE)

    def integer_weights(self) -> tuple[torch.Tensor, torch.Tensor | None, int]:
        """SIMULATE mode only: (w_int int64, b_int int64 in 8-bit range or None, effective shift s).

        s = output_shift + 8 - bits is the shift the hardware applies: y = round(acc * 2**s / 128).
        The bias is decoded as ai8x-synthesis does: floor(stored / 2**(bits-1)).
        """
        self._require(QuantMode.SIMULATE, "integer_weights")
        bits = self._target_bits
        w_int = self.op.weight.detach().to(torch.int64)
        b_int = None
        if self.op.bias is not None:
            b_int = torch.floor(self.op.bias.detach() / 2.0 ** (bits - 1)).to(torch.int64)
        shift = int(self.output_shift.item()) + 8 - bits
        return w_int, b_int, shift

    def _parameter_magnitude(self) -> torch.Tensor:
        """quantile(|[w; b]|, shift_quantile) over the detached parameters, shape [1]."""
        return parameter_magnitude(self.op.weight, self.op.bias, self._shift_quantile)

    def _conv(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        op = self.op
        return F.conv2d(x, weight, bias, op.stride, op.padding, op.dilation, op.groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the layer in its current mode (training scale in FLOAT/QAT, integers in SIMULATE)."""
        if self._mode is QuantMode.SIMULATE:
            x = x.to(torch.float64)
        x = self._pool(x)
        if self._mode is QuantMode.FLOAT:
            return self._forward_float(x)
        if self._mode is QuantMode.QAT:
            return self._forward_qat(x)
        return self._forward_simulate(x)

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return apply_pool(self.pool, x, self._mode)

    def _forward_float(self, x: torch.Tensor) -> torch.Tensor:
        y = self.op(x)
        if self.bn is not None:
            y = self.bn(y) * _BN_OUTPUT_SCALE
        return float_activation(y, wide=self.wide, relu=self.relu)

    def _forward_qat(self, x: torch.Tensor) -> torch.Tensor:
        return qat_conv(
            x,
            self.op.weight,
            self.op.bias,
            self._target_bits,
            self._qat_shift(),
            wide=self.wide,
            relu=self.relu,
            conv=self._conv,
            bias_bits=self._bias_bits,
        )

    def _forward_simulate(self, x: torch.Tensor) -> torch.Tensor:
        w_int, b_int, shift = self.integer_weights()
        bias = None if b_int is None else 128.0 * b_int.to(torch.float64)  # bias enters the sum x128
        acc = self._conv(x, w_int.to(torch.float64), bias)
        if self.wide:
            return torch.clamp(acc, _ACC_MIN, _ACC_MAX)
        y = torch.clamp(_round_half_up(acc * 2.0 ** (shift - 7)), -128.0, 127.0)
        return torch.clamp(y, min=0.0) if self.relu else y


# -- the arithmetic of one layer, as functions: HwConv2d uses them, and so does the weight-sharing supernet
# (posenet/nets/supernet.py), which runs slices of its weights through exactly the same steps.
def fold_batchnorm(
    weight: torch.Tensor,
    bias: torch.Tensor,
    gamma: torch.Tensor,
    beta: torch.Tensor,
    mean: torch.Tensor,
    var: torch.Tensor,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of a conv with its batch-norm folded in (v1: the BN output is divided by 4)."""
    factor = gamma * _BN_OUTPUT_SCALE / torch.sqrt(var + eps)
    return weight * factor.view(-1, 1, 1, 1), (bias - mean) * factor + beta * _BN_OUTPUT_SCALE


def parameter_magnitude(weight: torch.Tensor, bias: torch.Tensor | None, quantile: float) -> torch.Tensor:
    """quantile(|[w; b]|, quantile) over the detached parameters, shape [1]: what the QAT shift follows.
    ``quantile`` is a number on the host, so that choosing the default's branch makes no GPU wait."""
    params = weight.detach().flatten()
    if bias is not None:
        params = torch.cat([params, bias.detach().flatten()])
    if quantile == 1.0:  # the default: the maximum, exactly what quantile 1 gives, without sorting
        return params.abs().max().reshape(1)
    # at the parameters' precision, as ai8x computes it with its stored float32 quantile
    return torch.quantile(params.abs(), torch.tensor([quantile], dtype=params.dtype, device=params.device))


def weight_levels(layer: HwConv2d) -> tuple[torch.Tensor, torch.Tensor, int]:
    """QAT mode: (the weights' integer levels, the value of one level, the shift) as the layer quantizes
    them now; levels * value is the fake-quantized weight."""
    shift = layer._qat_shift()
    steps = 2.0 ** (layer.target_bits - 1)
    levels = _to_signed_int(layer.op.weight.detach() * torch.exp2(-shift) * steps, layer.target_bits)
    return levels, torch.exp2(shift) / steps, int(shift.item())


def apply_pool(pool: nn.Module | None, x: torch.Tensor, mode: QuantMode) -> torch.Tensor:
    """The pooling in front of a layer, with the hardware's truncation of averages outside FLOAT."""
    if pool is None:
        return x
    x = pool(x)
    if isinstance(pool, nn.MaxPool2d):
        return x  # a max of grid values is on the grid: nothing to quantize
    # Average pooling truncates toward zero on the hardware; FLOAT mode does not quantize (ai8x v1).
    if mode is QuantMode.SIMULATE:
        return torch.clamp(torch.trunc(x), -128.0, 127.0)
    if mode is QuantMode.QAT:
        x = _straight_through(x, torch.trunc(x * _ACT_STEPS) / _ACT_STEPS)
    return torch.clamp(x, _ACT_MIN, _ACT_MAX)


def float_activation(y: torch.Tensor, *, wide: bool, relu: bool) -> torch.Tensor:
    """FLOAT mode after conv (+ BN / 4): the wide clamp, or ReLU and the activation clamp."""
    if wide:
        return torch.clamp(y, -_WIDE_LIMIT, _WIDE_LIMIT)
    if relu:
        y = F.relu(y)
    return torch.clamp(y, _ACT_MIN, _ACT_MAX)


def quantile_shift(weight: torch.Tensor, bias: torch.Tensor | None, quantile: float) -> torch.Tensor:
    """ai8x v1's QAT shift, recomputed from the current parameters on every forward pass (never written
    back): ceil(log2(quantile(|[w; b]|))), clamped to the output-shift limit; shape [1]."""
    return torch.clamp(_ceil_log2(parameter_magnitude(weight, bias, quantile)), -_QAT_SHIFT_LIMIT, _QAT_SHIFT_LIMIT)


MSE_SHIFT_CANDIDATES = 4
"""How many shifts ``mse_shift`` tries, from the one that keeps the largest weight down (ai8x's) to three
powers of two below it: at 2 bits the error minimum of trained layers lies one or two below (most
weights would round to 0 at ai8x's shift, a few large ones clip at the lower ones)."""


def mse_shift(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """The power-of-two shift (weights scaled by 2**-shift before rounding to ``bits``) with the least
    squared quantization error of ``weight``, among ``MSE_SHIFT_CANDIDATES`` from ai8x's maximum-based one
    down; ties go to the larger shift. Shape [1]; a pure function of the weights, so QAT and
    ``to_simulate`` agree."""
    w = weight.detach().to(torch.float32).flatten()
    top = _ceil_log2(w.abs().max().reshape(1))
    # Every tensor on the weights' device and the choice made there: on a GPU a tensor made without a device
    # would be on the CPU (a crash), and a number read back a wait (the supernet chooses on every step).
    candidates = torch.arange(MSE_SHIFT_CANDIDATES, dtype=top.dtype, device=top.device)
    shifts = torch.clamp(top - candidates, -_QAT_SHIFT_LIMIT, _QAT_SHIFT_LIMIT)
    steps = 2.0 ** (bits - 1)
    errors = []
    for shift in shifts:
        scale = torch.exp2(shift)  # a power of two: dividing by it is exact, as by the float it equals
        q = torch.clamp(_round_half_up(w / scale * steps) / steps, -1.0, 1.0 - 1.0 / steps) * scale
        errors.append(((w - q) ** 2).sum())
    best = torch.argmin(torch.stack(errors)).reshape(1)  # the first of equal errors: the larger shift
    return shifts.index_select(0, best).to(torch.float32)


def qat_conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    bits: int,
    shift: torch.Tensor,
    *,
    wide: bool,
    relu: bool,
    conv: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor],
    bias_bits: int | None = None,
) -> torch.Tensor:
    """QAT mode: fake-quantized (BN-folded) weights and bias, conv, output shift, activation quantization.

    ``shift``: weights are scaled by 2**-shift before rounding (``quantile_shift`` for ai8x v1, or a held
    one); ``bias_bits`` (default ``bits``): the bias's range, on the weights' grid."""
    weight_scale = torch.exp2(-shift)
    q_weight = _fake_quantize(weight * weight_scale, bits)
    q_bias = None if bias is None else _fake_quantize_bias(bias * weight_scale, bits, bias_bits or bits)
    y = conv(x, q_weight, q_bias)
    if wide:
        # No output shift on 32-bit outputs: the result stays scaled by 2**-shift, like the hardware.
        y = _straight_through(y, _round_half_up(y * _WIDE_STEPS) / _WIDE_STEPS)
        return torch.clamp(y, -_WIDE_LIMIT, _WIDE_LIMIT)
    y = y * torch.exp2(shift)
    if relu:
        y = F.relu(y)
    y = _straight_through(y, _round_half_up(y * _ACT_STEPS) / _ACT_STEPS)
    return torch.clamp(y, _ACT_MIN, _ACT_MAX)


def _validate_config(
    pool_type: str, batchnorm: bool, relu: bool, wide: bool, weight_bits: int, bias: bool, shift_quantile: float
) -> None:
    if pool_type not in ("max", "avg"):
        raise ValueError(f"pool_type must be 'max' or 'avg', got {pool_type!r}")
    if weight_bits not in SUPPORTED_BITS:
        raise ValueError(f"weight_bits must be one of {SUPPORTED_BITS}, got {weight_bits}")
    if wide and relu:
        raise ValueError("a wide (32-bit output) layer has no activation: pass relu=False")
    if batchnorm and not bias:
        raise ValueError("batchnorm needs bias=True: folding puts the BN offset into the conv bias")
    _check_quantile(shift_quantile)


def _check_quantile(shift_quantile: float) -> None:
    if not 0.0 < shift_quantile <= 1.0:
        raise ValueError(f"shift_quantile must be in (0, 1], got {shift_quantile}")


def _make_pool(pool_type: str, pool_size: int, pool_stride: int | None) -> nn.Module | None:
    if pool_size == 0:
        return None
    stride = pool_size if pool_stride is None else pool_stride
    if pool_type == "max":
        return nn.MaxPool2d(pool_size, stride)
    return nn.AvgPool2d(pool_size, stride)


def _mirror_loaded_quantile(module: nn.Module, incompatible_keys: object) -> None:
    """Post-load hook: the host copy of ``shift_quantile`` follows the loaded value."""
    assert isinstance(module, HwConv2d)
    module._shift_quantile = float(module.shift_quantile.item())


def _check_loaded_meta(module: nn.Module, incompatible_keys: object) -> None:
    """Post-load hook: refuse a checkpoint whose meta values belong to another mode, bit width or QAT choice.

    Without this, e.g. integer weights loaded into a QAT layer would be treated as float weights, or a held
    shift recomputed. Bring the layer to the checkpoint's mode and choices (``start_qat`` with the
    checkpoint's low-bit recipe, as ``checkpoint.model_for`` does) before loading.
    """
    assert isinstance(module, HwConv2d)
    expected = module._meta_for(module.mode)
    loaded = (
        int(module.weight_bits.item()),
        int(module.bias_bits.item()),
        bool(module.quantize_activation.item()),
        bool(module.adjust_output_shift.item()),
    )
    if loaded != expected:
        raise RuntimeError(
            f"loaded meta values (weight_bits, bias_bits, quantize_activation, adjust_output_shift) = {loaded} "
            f"do not match this {module.mode.value}-mode layer with target_bits={module.target_bits} "
            f"(expected {expected}); bring the layer to the checkpoint's mode before loading"
        )


def quantize_input(images_0_1: torch.Tensor) -> torch.Tensor:
    """ai8x input normalisation: [0, 1] images -> int64 in [-128, 127], clamp(round_half_up((img - 0.5) * 256))."""
    return torch.clamp(_round_half_up((images_0_1 - 0.5) * 256.0), -128, 127).to(torch.int64)


def to_training_scale(x_int: torch.Tensor) -> torch.Tensor:
    """Integer activations -> training scale (x / 128); integer tensors become float32."""
    x = x_int if x_int.is_floating_point() else x_int.to(torch.float32)
    return x / _ACT_STEPS


def wide_output_scale(bits: int) -> float:
    """SIMULATE / QAT ratio of a wide layer with ``bits``-bit weights: 128 (input scale) * 2**(bits-1)
    (weight scale), so 2**14 for 8 bits. The raw accumulator divided by this is the trained map."""
    return _ACT_STEPS * 2.0 ** (bits - 1)


def hardware_layers(module: nn.Module) -> list[tuple[str, HwConv2d]]:
    """All ``HwConv2d`` in ``module`` with their qualified names, in registration (= state_dict) order."""
    return [(name, m) for name, m in module.named_modules() if isinstance(m, HwConv2d)]
