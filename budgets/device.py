"""Device descriptions and budgets, read from YAML data files.

A *device* is the accelerator's structural limits (budgets/max78000.yaml, budgets/max78002.yaml). A
*budget* is a device plus optional user limits (MACs, latency). A budget file is either a full device
description, or ``{device: max78000, limits: {max_macs: ..., max_latency_ms: ...}}`` naming a built-in
device.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from posenas.catalog import check_keys, load_dataclass, lookup, read_mapping
from posenas.errors import BudgetError


@dataclass(frozen=True)
class Limits:
    """User limits on top of the device's structural ones; None means no limit."""

    max_macs: int | None = None
    max_latency_ms: float | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Limits:
        return load_dataclass(cls, data or {}, where="limits", error=BudgetError)

    def __post_init__(self) -> None:
        # NaN compares False with everything: unchecked, a NaN limit would silently mean "no limit".
        for key in ("max_macs", "max_latency_ms"):
            value = getattr(self, key)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0
            ):
                raise BudgetError(f"limits: {key} must be a positive finite number, got {value!r}")


@dataclass(frozen=True)
class Device:
    """Structural limits of a CNN accelerator, as izer enforces them."""

    name: str
    processors: int
    processors_per_quadrant: int
    processors_per_memory: int
    kernel_words: int
    kernel_column_alignment: int
    bias_bytes_per_quadrant: int
    data_memory_bytes: int
    max_layers: int
    max_channels: int
    max_dim: int
    kernel_sizes: tuple[int, ...]
    max_padding: int
    conv_strides: tuple[int, ...]
    max_pool: int
    weight_bits: tuple[int, ...]
    clock_mhz: float
    latency_model: bool
    large_kernel_words: Mapping[int, int] = field(default_factory=dict)

    @property
    def quadrants(self) -> int:
        return self.processors // self.processors_per_quadrant

    @property
    def data_memories(self) -> int:
        return self.processors // self.processors_per_memory

    def words_at(self, processor: int) -> int:
        """Kernel words available on one processor."""
        return self.large_kernel_words.get(processor, self.kernel_words)

    @functools.cached_property
    def kernel_capacities(self) -> tuple[int, ...]:
        """Kernel words per processor, indexed by processor."""
        return tuple(self.words_at(p) for p in range(self.processors))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Device:
        body = {k: v for k, v in data.items() if k != "limits"}
        device = load_dataclass(cls, body, where="device", error=BudgetError)
        ints = (
            "processors",
            "processors_per_quadrant",
            "processors_per_memory",
            "kernel_words",
            "kernel_column_alignment",
            "bias_bytes_per_quadrant",
            "data_memory_bytes",
            "max_layers",
            "max_channels",
            "max_dim",
            "max_padding",
            "max_pool",
        )
        may_be_zero = ("max_padding", "max_pool")
        for key in ints:
            value, low = getattr(device, key), 0 if key in may_be_zero else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise BudgetError(f"device {device.name}: {key} must be an integer >= {low}, got {value!r}")
        if (
            isinstance(device.clock_mhz, bool)
            or not isinstance(device.clock_mhz, (int, float))
            or not math.isfinite(device.clock_mhz)
            or device.clock_mhz <= 0
        ):
            raise BudgetError(
                f"device {device.name}: clock_mhz must be a positive finite number, got {device.clock_mhz!r}"
            )
        if not device.weight_bits or not device.kernel_sizes or not device.conv_strides:
            raise BudgetError(f"device {device.name}: weight_bits, kernel_sizes and conv_strides must not be empty")
        if device.processors % device.processors_per_quadrant or device.processors % device.processors_per_memory:
            raise BudgetError(f"device {device.name}: processors must split evenly into quadrants and memories")
        return device


@dataclass(frozen=True)
class Budget:
    """What a network is checked against: a device and optional user limits."""

    device: Device
    limits: Limits = Limits()

    def with_limits(self, **overrides: Any) -> Budget:
        """A copy whose limits take the given non-None overrides (command-line flags beat the file)."""
        chosen = {k: v for k, v in overrides.items() if v is not None}
        return replace(self, limits=replace(self.limits, **chosen)) if chosen else self


def builtin_devices() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("posenas.budgets").iterdir() if p.name.endswith(".yaml"))


def load_budget(name_or_path: str | Path) -> Budget:
    """A built-in device by name (``max78000``, ``max78002``) or a budget YAML file."""
    return lookup(
        name_or_path,
        kind="budget",
        names=builtin_devices(),
        fold_case=True,
        builtin=lambda name: _budget_from(_read_yaml(resources.files("posenas.budgets") / f"{name}.yaml", name)),
        from_file=lambda path: _budget_from(_read_yaml(path, str(path))),
        suffixes=(".yaml", ".yml"),
        error=BudgetError,
    )


def _budget_from(data: Mapping[str, Any]) -> Budget:
    limits = Limits.from_dict(data.get("limits"))
    if "device" in data:
        check_keys(data, known=("device", "limits"), where="budget", error=BudgetError)
        base = data["device"]
        if isinstance(base, str):
            if base.lower() not in builtin_devices():
                raise BudgetError(f"budget: unknown device {base!r} (known: {', '.join(builtin_devices())})")
            device = load_budget(base).device
        elif isinstance(base, Mapping):
            device = Device.from_dict(base)
        else:
            raise BudgetError("budget: device must be a device name or a device mapping")
        return Budget(device, limits)
    return Budget(Device.from_dict(data), limits)


def _read_yaml(source: Any, label: str) -> Mapping[str, Any]:
    return read_mapping(source, label, BudgetError)
