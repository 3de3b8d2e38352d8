"""The hand-designed students, kept exactly, and their hardware-legal twins.

``student`` (659,001 parameters) and ``tiny`` (112,257) are the seed designs distilled from Lightweight
OpenPose: conv + affine BN + ReLU layers with bias, a stride-2 first convolution, max-pools in front of
conv4 and conv6, a CPM, and two heads with wide 1x1 outputs. The MAX78000 runs convolutions at stride 1
only, so ``student-hw`` and ``tiny-hw`` replace the stride-2 first conv by max-pool 2 + conv (same
parameters, same output resolution); everything else is identical.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from posenas.catalog import lookup
from posenas.space.spec import ArchSpec, HeadSpec, LayerSpec, SpecError


def _pose_net(
    name: str,
    widths: list[int],
    cpm_width: int,
    cpm_depth: int,
    head_width: int,
    stem: str,
) -> ArchSpec:
    """A seed-shaped network: conv1..convN (pools before conv4 and conv6), CPM (1x1 then 3x3), heads."""
    backbone = []
    for i, width in enumerate(widths, start=1):
        if i == 1:
            pool, stride = (0, 2) if stem == "stride2" else (2, 1)
        else:
            pool, stride = (2 if i in (4, 6) else 0), 1
        backbone.append(LayerSpec(f"conv{i}", width, kernel_size=3, stride=stride, pool=pool))
    cpm = [LayerSpec(f"cpm{j}", cpm_width, kernel_size=1 if j == 1 else 3) for j in range(1, cpm_depth + 1)]
    heads = (
        HeadSpec("heat", 19, hidden=(LayerSpec("heat_conv", head_width, kernel_size=1),)),
        HeadSpec("paf", 38, hidden=(LayerSpec("paf_conv", head_width, kernel_size=1),)),
    )
    return ArchSpec(name=name, backbone=tuple(backbone), cpm=tuple(cpm), heads=heads)


_STUDENT = dict(widths=[32, 32, 64, 64, 96, 96, 128, 128], cpm_width=96, cpm_depth=3, head_width=64)
_TINY = dict(widths=[16, 24, 32, 32, 48, 48, 64], cpm_width=48, cpm_depth=2, head_width=32)


def _with_bits(spec: ArchSpec, name: str, bits: int, layers: set[str]) -> ArchSpec:
    """``spec`` renamed, with ``bits``-bit weights in ``layers``."""

    def chain(layer_specs: tuple[LayerSpec, ...]) -> tuple[LayerSpec, ...]:
        return tuple(dataclasses.replace(x, weight_bits=bits) if x.name in layers else x for x in layer_specs)

    return dataclasses.replace(spec, name=name, backbone=chain(spec.backbone), cpm=chain(spec.cpm))


def lowered(spec: ArchSpec, bits: int) -> ArchSpec:
    """``spec`` with ``bits``-bit weights in every layer but the first and the two output layers, which keep
    theirs (ADI's low-bit models keep the first and last layers at 8 bits), named ``<name>-w<bits>``."""
    first = spec.backbone[0].name
    layers = {layer.name for layer in spec.layers()} - {first}
    lowered_spec = _with_bits(spec, f"{spec.name}-w{bits}", bits, layers)
    heads = tuple(
        dataclasses.replace(head, hidden=tuple(dataclasses.replace(x, weight_bits=bits) for x in head.hidden))
        for head in lowered_spec.heads
    )
    return dataclasses.replace(lowered_spec, heads=heads)


_STUDENT_HW = _pose_net("student-hw", stem="pool", **_STUDENT)

BASELINES: dict[str, ArchSpec] = {
    "student": _pose_net("student", stem="stride2", **_STUDENT),
    "tiny": _pose_net("tiny", stem="stride2", **_TINY),
    "student-hw": _STUDENT_HW,
    "tiny-hw": _pose_net("tiny-hw", stem="pool", **_TINY),
    # student-hw with 2-bit weights in conv6-conv8 and cpm2-cpm3: it then fits the MAX78000's kernel memory
    # (659,001 parameters, 23.1 ms; confirmed with ai8x-synthesis, issue 14).
    "student-hw-mixed": _with_bits(_STUDENT_HW, "student-hw-mixed", 2, {"conv6", "conv7", "conv8", "cpm2", "cpm3"}),
}


def baseline_names() -> list[str]:
    return list(BASELINES)


def get_arch(name_or_path: str | Path) -> ArchSpec:
    """A named baseline, or a spec read from a YAML/JSON file; SpecError names the problem otherwise."""
    return lookup(
        name_or_path,
        kind="architecture",
        names=BASELINES,
        builtin=BASELINES.__getitem__,
        from_file=ArchSpec.from_file,
        suffixes=(".yaml", ".yml", ".json"),
        error=SpecError,
    )
