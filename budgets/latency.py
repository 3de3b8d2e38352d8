"""izer's per-layer cycle estimate for the MAX78000 (docs/max78000.md section 6.2).

The accelerator writes about one output value (one channel of one pixel, per input pass) per clock, plus
the cycles spent reading padded and pooled input rows. This is our own implementation of that published
frame equation for a non-streaming, non-passthrough convolution with pooling applied first; izer adds
one start-up cycle per network.
"""

from __future__ import annotations

NETWORK_STARTUP_CYCLES = 1


def layer_cycles(
    in_passes: int,
    pool: int,
    pooled_size: tuple[int, int],
    kernel_size: int,
    padding: int,
    out_width: int,
    hw_out_channels: int,
    operands: int = 1,
) -> int:
    """Cycles of one layer.

    ``hw_out_channels`` is the output channel count as the hardware sees it: output processors spanned
    times output passes (padding processors included). ``pool`` is the square pooling window (0 = none).
    """
    m, e = in_passes, operands
    window = max(pool, 1) ** 2
    rows, cols = pooled_size
    k, pad = kernel_size, padding
    pad_read = 2 * m * e  # a padded position: one read and one TRAM write per pass and operand
    data_read = m * e * (window + 1)  # a data position: reads across the pooling window, one write
    first_pad_row = 2 * pad * (pad_read + 1) + cols * (pad_read + 1)
    row_no_conv = 2 * pad * (pad_read + 1) + cols * (data_read + 1)
    row_conv = pad * (pad_read + 1) + (k - 1 - pad) * (data_read + 1) + (out_width - pad) * data_read + pad_read * pad
    bottom_pad_row = (
        pad * (pad_read + 1) + (k - 1 - pad) * (pad_read + 1) + (out_width - pad) * pad_read + pad_read * pad
    )
    single = 1 if hw_out_channels == 1 and m == 1 else 0
    out_row = m * out_width * hw_out_channels + hw_out_channels * single
    return (
        pad * first_pad_row
        + (k - 1 - pad) * row_no_conv
        + (row_conv + out_row) * (rows - (k - 1 - pad))
        + pad * (bottom_pad_row + out_row)
    )
