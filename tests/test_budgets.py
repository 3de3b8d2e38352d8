"""The budget checker against the facts of docs/max78000.md (sections 1.3, 1.4, 2, 3, 6.2, 9)."""

from __future__ import annotations

from pathlib import Path

import pytest

from posenas.budgets.checker import check, check_graph
from posenas.budgets.device import BudgetError, load_budget
from posenas.budgets.kernels import KernelRequest, allocate_kernels, kernel_words
from posenas.budgets.latency import layer_cycles
from posenas.budgets.plan import hwc_layout
from posenas.space.baselines import BASELINES
from tests.graphs import chain

MAX78000 = load_budget("max78000")


def resources(report) -> set[str]:
    return {v.resource for v in report.violations}


# -- kernel words (section 1.3, every example confirmed by running izer) -------------------------------
@pytest.mark.parametrize(
    "cin, cout, kernel, bits, words",
    [
        (64, 64, 3, 8, 64),
        (64, 64, 1, 8, 8),
        (64, 10, 1, 4, 1),
        (10, 64, 3, 2, 16),
        (16, 65, 3, 8, 72),  # 65 outputs -> 2 passes x 36 processors
        (128, 128, 3, 8, 256),
        (500, 500, 1, 8, 456),
    ],
)
def test_kernel_words_match_izer(cin, cout, kernel, bits, words):
    src, dst = hwc_layout(cin), hwc_layout(cout)
    assert kernel_words(src.passes, dst.passes, dst.per_pass, kernel, bits) == words


def test_multipass_layout_rounds_processors_to_four():
    layout = hwc_layout(100)
    assert (layout.passes, layout.per_pass) == (2, 52)
    assert hwc_layout(65).per_pass == 36 and hwc_layout(64).passes == 1


def test_sub_byte_kernels_pad_an_incomplete_group():
    # 3 four-bit 3x3 kernels: 3*9*4 bits + one padding kernel lane (1*9*1) = 117 bits -> 2 words
    assert kernel_words(1, 1, 3, 3, 4) == 2
    assert kernel_words(1, 1, 4, 3, 4) == 2  # 144 bits exactly
    assert kernel_words(1, 1, 9, 1, 1) == 1


# -- first-fit allocation and the failing examples of section 9 -----------------------------------------
def test_twelve_64_to_64_layers_fill_kernel_memory_exactly_and_a_thirteenth_fails():
    inp, nodes = chain(64, 8, [(64, 3)] * 12)
    report = check_graph(inp, nodes, MAX78000)
    assert report.fits
    assert report.usage_of("kernel_memory").used == 768
    inp, nodes = chain(64, 8, [(64, 3)] * 13)
    report = check_graph(inp, nodes, MAX78000)
    assert resources(report) == {"kernel_memory"}
    (v,) = report.violations
    assert v.layer == "l12" and "processor 0" in v.message and "needed 64 words" in v.message


def test_three_128_channel_layers_fit_and_four_do_not():
    assert check_graph(*chain(128, 8, [(128, 3)] * 3), MAX78000).fits
    report = check_graph(*chain(128, 8, [(128, 3)] * 4), MAX78000)
    assert resources(report) == {"kernel_memory"}


def test_narrow_chain_runs_out_after_24_layers_though_half_the_memory_is_free():
    assert check_graph(*chain(32, 8, [(32, 3)] * 24), MAX78000).fits
    report = check_graph(*chain(32, 8, [(32, 3)] * 25), MAX78000)
    assert resources(report) == {"kernel_memory"}
    # 24 x 32 words on processors 0-31 is 50 % of the weight memory: a naive total says "fits".
    assert report.usage_of("weight_bytes_naive").fraction < 0.55


def test_fragmentation_from_different_processor_sets():
    # 16->500 3x3 on processors 0-15 needs 512 words there, but the all-64 1x1 500->500 layer is placed
    # first and takes columns 0-455 everywhere: 73 % of the naive weight memory, and it does not fit.
    report = check_graph(*chain(16, 4, [(500, 3), (500, 1)]), MAX78000)
    assert resources(report) == {"kernel_memory"}
    (v,) = report.violations
    assert v.layer == "l0" and "needed 512 words" in v.message
    assert 0.72 < report.usage_of("weight_bytes_naive").fraction < 0.74
    assert check_graph(*chain(16, 4, [(500, 3)]), MAX78000).fits


def test_a_single_layer_wider_than_a_processor_column_fails():
    report = check_graph(*chain(16, 4, [(1024, 3)]), MAX78000)
    kernel = [v for v in report.violations if v.resource == "kernel_memory"]
    assert len(kernel) == 1 and "needed 1024 words" in kernel[0].message and kernel[0].available == 768


def test_first_fit_places_all_64_processor_layers_first_on_aligned_columns():
    full, low = (1 << 64) - 1, (1 << 16) - 1
    alloc = allocate_kernels(
        [KernelRequest(0, low, 6), KernelRequest(1, full, 3), KernelRequest(2, low, 5)], [768] * 64
    )
    assert alloc.offsets == {1: 0, 0: 4, 2: 12}
    used = alloc.columns_used(64)
    assert used[0] == 17 and used[16] == 3 and used[63] == 3
    assert alloc.high_water == 17 and alloc.busiest_processor == 0 and alloc.occupied_words == 16 * 11 + 64 * 3


def test_kernel_offsets_of_every_tiny_hw_layer():
    plan = check(BASELINES["tiny-hw"], MAX78000).plan
    offsets = {layer.name: (layer.kernel_offset, layer.kernel_words) for layer in plan.layers}
    assert offsets == {
        "conv1": (8, 16),
        "conv2": (24, 24),
        "conv3": (48, 32),
        "conv4": (80, 32),
        "conv5": (112, 48),
        "conv6": (160, 48),
        "conv7": (208, 64),
        "cpm1": (0, 6),
        "cpm2": (272, 48),
        "heat_conv": (320, 4),
        "heat_out": (324, 3),
        "paf_conv": (328, 4),
        "paf_out": (332, 5),
    }


# -- bias (section 2) ----------------------------------------------------------------------------------
def test_bias_for_more_than_512_outputs_fails_although_2_kib_exist():
    report = check_graph(*chain(16, 4, [(600, 1)]), MAX78000)
    assert "operation" in resources(report)
    assert any("bias for 600 outputs" in v.message for v in report.violations)


def test_bias_quadrants_fill_by_size_descending():
    report = check_graph(*chain(64, 4, [(64, 1)] * 8 + [(512, 1)]), MAX78000)
    assert "bias_memory" not in resources(report)
    placed = {layer.name: layer.bias_quadrant for layer in report.plan.layers}
    assert placed["l8"] == 0  # the largest bias goes first, into the emptiest (first) quadrant
    report = check_graph(*chain(64, 4, [(512, 1)] * 5), MAX78000)
    bias = [v for v in report.violations if v.resource == "bias_memory"]
    assert [v.layer for v in bias] == ["l4"] and bias[0].needed == 512 and bias[0].available == 0


# -- data memory (section 3) ---------------------------------------------------------------------------
def test_hwc_input_of_96x96_overflows_a_data_memory_and_90x90_fits():
    big = check_graph(*chain(3, 96, [(16, 3)]), MAX78000, input_format="HWC")
    assert "input" in resources(big) and big.violations[0].needed == 36864
    small = check_graph(*chain(3, 90, [(16, 3)]), MAX78000, input_format="HWC")
    assert small.plan.input_bytes == 32400 and "input" not in resources(small)
    # izer accepts this net when the output is sent to other memories (e7c); the canonical plan packs
    # every tensor from processor 0, so input and output collide in memory 0: conservative, and named.
    (v,) = small.violations
    assert v.resource == "data_memory" and "memory 0 holds 32,400" in v.message


def test_3x128x128_fits_as_chw_with_pooling_in_the_first_layer():
    report = check_graph(*chain(3, 128, [(16, 3, 8, 2), (16, 3)]), MAX78000)
    assert report.fits and report.plan.input_format == "CHW"
    assert report.plan.layers[0].in_processors == 0x111


def test_a_128_channel_64x64_tensor_leaves_no_room_for_its_input():
    report = check_graph(*chain(64, 64, [(128, 3)]), MAX78000)
    assert "data_memory" in resources(report)


def test_cpm_output_stays_live_until_the_second_head_reads_it():
    plan = check(BASELINES["tiny-hw"], MAX78000).plan
    by_name = {layer.name: layer for layer in plan.layers}
    trunk = by_name["cpm2"]
    assert by_name["paf_conv"].source == trunk.index and by_name["paf_conv"].in_offset == trunk.out_offset
    span = range(trunk.out_offset, trunk.out_offset + trunk.out_bytes)
    for name in ("heat_conv", "heat_out"):  # written while the CPM output must survive
        layer = by_name[name]
        written = range(layer.out_offset, layer.out_offset + layer.out_bytes)
        assert not set(span) & set(written), name
    heat, paf = by_name["heat_out"], by_name["paf_out"]  # both outputs coexist at the end
    assert heat.out_offset + heat.out_bytes <= paf.out_offset or paf.out_offset + paf.out_bytes <= heat.out_offset


def test_wide_output_takes_four_bytes_per_value():
    inp, nodes = chain(32, 16, [(32, 3), (19, 1)], wide_last=True)
    plan = check_graph(inp, nodes, MAX78000).plan
    assert plan.layers[-1].out_bytes == 16 * 16 * 4 * 4


def test_more_than_32_layers_is_a_violation():
    report = check_graph(*chain(16, 4, [(16, 1)] * 33), MAX78000)
    assert "layers" in resources(report)
    assert report.usage_of("layers").used == 33


# -- latency (section 6.2) -----------------------------------------------------------------------------
def test_latency_formula_matches_izer_for_mnist_layer_0():
    cycles = layer_cycles(
        in_passes=1, pool=0, pooled_size=(28, 28), kernel_size=3, padding=1, out_width=28, hw_out_channels=60
    )
    assert cycles == 48956


def test_latency_grows_with_input_passes_not_with_kernel_area():
    args = dict(pool=0, pooled_size=(16, 16), padding=0, out_width=16, hw_out_channels=64)
    one_by_one = layer_cycles(in_passes=1, kernel_size=1, **args)
    assert one_by_one == 16 * (16 * 2 + 16 * 64)  # per row: 16 data reads (2 cycles) + 16 x 64 outputs
    assert layer_cycles(in_passes=2, kernel_size=1, **args) > 1.9 * one_by_one


# -- the baselines (issue 2's acceptance) --------------------------------------------------------------
def test_tiny_hw_fits_the_max78000():
    report = check(BASELINES["tiny-hw"], MAX78000)
    assert report.fits and report.violations == ()
    assert report.latency_cycles == 513697 and report.latency_ms == pytest.approx(10.27394)
    assert report.macs == 87_564_288


def test_tiny_fails_only_on_the_stride_of_conv1():
    report = check(BASELINES["tiny"], MAX78000)
    assert [(v.resource, v.layer) for v in report.violations] == [("operation", "conv1")]
    assert "stride 2" in report.violations[0].message


def test_student_hw_fails_kernel_memory_naming_processor_and_words():
    report = check(BASELINES["student-hw"], MAX78000)
    assert resources(report) == {"kernel_memory"}
    first = report.violations[0]
    assert first.layer == "conv6" and "processor 0" in first.message and "needed 192 words" in first.message


def test_student_fails_on_both_stride_and_kernel_memory():
    assert resources(check(BASELINES["student"], MAX78000)) == {"operation", "kernel_memory"}


def test_student_hw_fits_the_max78002_which_has_no_latency_model():
    report = check(BASELINES["student-hw"], load_budget("max78002"))
    assert report.fits and report.latency_ms is None


# -- budgets and user limits ---------------------------------------------------------------------------
def test_user_limits_become_violations():
    budget = MAX78000.with_limits(max_macs=50_000_000, max_latency_ms=5.0)
    report = check(BASELINES["tiny-hw"], budget)
    assert resources(report) == {"macs", "latency"}
    assert MAX78000.with_limits(max_macs=None).limits.max_macs is None


def test_budget_file_names_a_device_and_limits(tmp_path: Path):
    path = tmp_path / "tight.yaml"
    path.write_text("device: max78000\nlimits: {max_latency_ms: 12.5}\n")
    budget = load_budget(path)
    assert budget.device.kernel_words == 768 and budget.limits.max_latency_ms == 12.5


@pytest.mark.parametrize(
    "text, message",
    [
        ("device: max1\n", "unknown device"),
        ("device: max78000\nlimits: {max_flops: 3}\n", "unknown key"),
        ("device: max78000\nlimits: {max_macs: -3}\n", "positive"),
        ("name: X\nprocessors: [\n", "malformed YAML"),
        ("name: X\nprocessors: 64\n", "missing key"),
    ],
)
def test_bad_budget_files_are_rejected(tmp_path: Path, text: str, message: str):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(BudgetError, match=message):
        load_budget(path)


def test_unknown_budget_name():
    with pytest.raises(BudgetError, match="unknown budget 'max99'"):
        load_budget("max99")
