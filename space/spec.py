"""Architecture specs: immutable, validated descriptions of an OpenPose-style pose network.

A spec says *what* the network is (layers, widths, kernels, pooling, bits), never how it is placed on a
device: hardware legality is the budget checker's business (``budgets``), so a spec may describe a
network the MAX78000 cannot run (the seeds' stride-2 first convolution) and still be valid here.

Every network has the same shape: a backbone chain, a CPM chain, and two heads (heatmaps and PAFs) that
both read the CPM output. Each head is a few 1x1 hidden layers followed by a wide (32-bit) output layer.
Specs round-trip through plain dicts, YAML and JSON, and have a stable hash that ignores the name.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from posenas.catalog import load_dataclass, parse_mapping, read_mapping
from posenas.errors import SpecError

OUTPUT_STRIDE = 8
KERNEL_SIZES = (1, 3)
CONV_STRIDES = (1, 2)
WEIGHT_BITS = (1, 2, 4, 8)
ARCH_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
POOL_TYPES = ("max", "avg")
MAX_CHANNELS = 1024
FOLD_FACTORS = (1, 2, 4)
HEAD_NAMES = ("heat", "paf")


@dataclass(frozen=True)
class LayerSpec:
    """One convolution layer, optionally with a max/avg pool in front of it.

    ``pool`` is the pooling window (and its stride); 0 means no pooling. ``stride`` is the convolution
    stride; only the seeds use 2.
    """

    name: str
    out_channels: int
    kernel_size: int = 3
    stride: int = 1
    pool: int = 0
    pool_type: str = "max"
    weight_bits: int = 8

    def __post_init__(self) -> None:
        _check_name(self.name)
        _check_int(self.name, "out_channels", self.out_channels, 1, MAX_CHANNELS)
        _check_choice(self.name, "kernel_size", self.kernel_size, KERNEL_SIZES)
        _check_choice(self.name, "stride", self.stride, CONV_STRIDES)
        _check_int(self.name, "pool", self.pool, 0, 16)
        _check_choice(self.name, "pool_type", self.pool_type, POOL_TYPES)
        _check_choice(self.name, "weight_bits", self.weight_bits, WEIGHT_BITS)

    @property
    def downsampling(self) -> int:
        """Factor by which this layer shrinks the feature map (pool and stride together)."""
        return max(self.pool, 1) * self.stride


@dataclass(frozen=True)
class HeadSpec:
    """An output head: 1x1 hidden layers (BN + ReLU), then a wide 1x1 output layer ``<name>_out``."""

    name: str
    out_channels: int
    hidden: tuple[LayerSpec, ...] = ()
    out_bits: int = 8

    def __post_init__(self) -> None:
        if self.name not in HEAD_NAMES:
            raise SpecError(f"head name {self.name!r} must be one of {', '.join(HEAD_NAMES)}")
        _check_int(self.name, "out_channels", self.out_channels, 1, MAX_CHANNELS)
        _check_choice(self.name, "out_bits", self.out_bits, WEIGHT_BITS)
        for layer in self.hidden:
            if layer.kernel_size != 1 or layer.pool or layer.stride != 1:
                raise SpecError(f"{layer.name}: head layers are 1x1 convolutions without pooling")

    @property
    def out_name(self) -> str:
        return f"{self.name}_out"


@dataclass(frozen=True)
class ArchSpec:
    """A whole pose network: input, backbone, CPM and the two heads.

    ``fold`` is data folding (space-to-depth on the host): a 3x128x128 image with fold 2 reaches the
    first layer as 12x64x64, which the MAX78000 can hold without streaming.
    """

    name: str
    backbone: tuple[LayerSpec, ...]
    cpm: tuple[LayerSpec, ...]
    heads: tuple[HeadSpec, ...]
    input_size: int = 128
    in_channels: int = 3
    fold: int = 1

    def __post_init__(self) -> None:
        _check_arch_name(self.name)
        _check_int(self.name, "input_size", self.input_size, OUTPUT_STRIDE, 4096)
        _check_int(self.name, "in_channels", self.in_channels, 1, 64)
        _check_choice(self.name, "fold", self.fold, FOLD_FACTORS)
        if not self.backbone:
            raise SpecError(f"{self.name}: the backbone needs at least one layer")
        if not self.cpm:
            raise SpecError(f"{self.name}: the CPM needs at least one layer")
        if tuple(h.name for h in self.heads) != HEAD_NAMES:
            raise SpecError(f"{self.name}: heads must be exactly {list(HEAD_NAMES)} in that order")
        names = [layer.name for layer in self.layers()] + [h.out_name for h in self.heads]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise SpecError(f"{self.name}: duplicate layer names {duplicates}")
        for layer in self.cpm:
            if layer.pool or layer.stride != 1:
                raise SpecError(f"{layer.name}: CPM layers keep the resolution (no pooling or stride)")
        total = self.fold
        for layer in self.backbone:
            total *= layer.downsampling
        if total != OUTPUT_STRIDE:
            raise SpecError(
                f"{self.name}: fold x pooling x strides must be {OUTPUT_STRIDE} (outputs at stride 8), got {total}"
            )
        if self.input_size % OUTPUT_STRIDE:
            raise SpecError(f"{self.name}: input_size {self.input_size} is not a multiple of {OUTPUT_STRIDE}")

    # -- structure -------------------------------------------------------------------------------
    def layers(self) -> tuple[LayerSpec, ...]:
        """The BN + ReLU layers in execution order (backbone, CPM, then each head's hidden layers)."""
        hidden = tuple(layer for head in self.heads for layer in head.hidden)
        return self.backbone + self.cpm + hidden

    @property
    def output_size(self) -> int:
        return self.input_size // OUTPUT_STRIDE

    @property
    def lowest_bits(self) -> int:
        """The lowest weight bits of any layer, the heads' output layers included."""
        return min(*(layer.weight_bits for layer in self.layers()), *(head.out_bits for head in self.heads))

    # -- serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (lists, not tuples) suitable for YAML/JSON."""
        return _plain(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArchSpec:
        """Build and validate a spec from its dict form; unknown or missing keys raise SpecError."""
        if not isinstance(data, Mapping):
            raise SpecError("an architecture must be a mapping")
        name = data.get("name")
        where = f"architecture {name}" if isinstance(name, str) else "architecture"
        return load_dataclass(cls, data, where=where, error=SpecError)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> ArchSpec:
        return cls.from_dict(parse_mapping(text, "an architecture", SpecError))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ArchSpec:
        return cls.from_dict(parse_mapping(text, "an architecture", SpecError, json_text=True))

    @classmethod
    def from_file(cls, path: str | Path) -> ArchSpec:
        """Read a spec from a .yaml/.yml or .json file."""
        return cls.from_dict(read_mapping(Path(path), f"architecture file {path}", SpecError))

    def spec_hash(self) -> str:
        """Stable 16-hex-digit hash of the architecture, independent of its name.

        It hashes the dataclass repr of everything but the name: deterministic for ints, strings and
        tuples, and about ten times faster than canonical JSON (the search hashes every sampled spec).
        """
        body = (self.backbone, self.cpm, self.heads, self.input_size, self.in_channels, self.fold)
        return hashlib.sha256(repr(body).encode()).hexdigest()[:16]

    def renamed(self, name: str) -> ArchSpec:
        return ArchSpec(**{**{f.name: getattr(self, f.name) for f in fields(self)}, "name": name})


# -- validation helpers ----------------------------------------------------------------------------
def _check_arch_name(name: Any) -> None:
    """Architecture names become file names (``<name>-q.pth.tar``), C identifiers' prefixes and words of
    printed shell commands, and they come from untrusted checkpoints: letters, digits, '.', '_' and '-'
    only, starting with a letter or digit, no '..', at most 64 characters."""
    if not isinstance(name, str) or not ARCH_NAME.fullmatch(name) or ".." in name:
        raise SpecError(
            f"architecture name {name!r} must be 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (it names files)"
        )


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not name.isidentifier():
        raise SpecError(f"layer name {name!r} must be a Python identifier (it becomes a state_dict key)")


def _check_int(owner: str, key: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{owner}: {key} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise SpecError(f"{owner}: {key} {value} is out of range [{low}, {high}]")


def _check_choice(owner: str, key: str, value: Any, choices: tuple) -> None:
    if isinstance(value, bool) or value not in choices:
        raise SpecError(f"{owner}: {key} {value!r} is not one of {list(choices)}")


def _plain(value: Any) -> Any:
    """Dataclasses to dicts and tuples to lists (dataclasses.asdict deep-copies, ten times slower)."""
    if isinstance(value, (LayerSpec, HeadSpec, ArchSpec)):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
