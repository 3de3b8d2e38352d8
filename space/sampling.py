"""The search space: bounds from a study file, and the map from an Optuna trial to an ArchSpec.

The space generalises both seed designs: a chain of backbone *slots* (each with a width range, kernel
choices, fixed pooling in front, and optionally the right to be dropped), a stem choice (the seeds'
stride-2 conv, hardware-legal max-pool + conv, or data folding), CPM depth/width/kernels, head width and
weight bits per layer. ``sample_arch`` asks the trial for each decision; ``fixed_params`` is its inverse,
so every baseline can be enqueued as a fixed trial and reproduces exactly through the same path.

Weight bits are asked in two steps: first the network's lowest bits (``lowest.bits``), then each layer's
bits, raised to that floor. Asked per layer alone, a uniform draw over {8, 4, 2} gives a 13-layer network
at least one 2-bit layer 99 % of the time; such layers can wipe out a network's AP at the QAT switch
(BENCHMARKS.md, "Fidelity"), so a search sampled that way hardly ever saw an all-8-bit or 4/8-bit network
(measured: 34 of 34 searched networks of the default had a 2-bit layer). With the floor, a third of the
draws are all at the top bits, a third at or above the middle, and mixed precision stays fully reachable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from posenas.catalog import check_keys
from posenas.errors import SpecOutsideSpace
from posenas.space.spec import WEIGHT_BITS, ArchSpec, HeadSpec, LayerSpec, SpecError

STEMS = ("pool", "fold", "stride2")
SPACE_KEYS = ("input_size", "stems", "width_step", "bits", "backbone", "cpm", "head")
SLOT_KEYS = ("name", "width", "kernels", "pool", "optional")
CPM_KEYS = ("depth", "width", "kernels")
HEAD_KEYS = ("width",)
HEAD_OUTPUTS = (("heat", 19), ("paf", 38))
MAX_WIDTH = 1024  # channels of a layer, and the input's side: the MAX78000 has 64 processors x 16 channels
LOWEST_BITS = "lowest.bits"  # the trial parameter of a network's lowest weight bits (a floor for every layer)


class TrialLike(Protocol):
    """The part of ``optuna.Trial`` the sampler uses (``optuna.trial.FixedTrial`` fits too)."""

    number: int

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1) -> int: ...

    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


@dataclass(frozen=True)
class SlotBounds:
    """One backbone position: width range, kernel choices, fixed pooling, whether it may be dropped."""

    name: str
    width: tuple[int, int]
    kernels: tuple[int, ...] = (3,)
    pool: int = 0
    optional: bool = False


@dataclass(frozen=True)
class SearchSpace:
    input_size: int
    stems: tuple[str, ...]
    width_step: int
    bits: tuple[int, ...]
    backbone: tuple[SlotBounds, ...]
    cpm_depth: tuple[int, int]
    cpm_width: tuple[int, int]
    cpm_kernels: tuple[int, ...]
    head_width: tuple[int, int]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchSpace:
        """Parse the ``space`` section of a study file; SpecError names the key and its place.

        Unknown keys are refused at every level (a typo such as ``widht`` must not silently fall back to a
        default)."""
        _known_keys(data, SPACE_KEYS, "space")
        try:
            stems = tuple(_list(data.get("stems", ["pool"]), "space.stems"))
            bad = [s for s in stems if s not in STEMS]
            if bad or not stems:
                raise SpecError(f"space: stems {bad or stems} must be a non-empty subset of {list(STEMS)}")
            if not isinstance(data["backbone"], list) or not data["backbone"]:
                raise SpecError("space.backbone: must be a non-empty list of slots")
            slots = tuple(_slot(raw, f"space.backbone[{i}]") for i, raw in enumerate(data["backbone"]))
            cpm, head = _mapping(data["cpm"], "space.cpm"), _mapping(data["head"], "space.head")
            _known_keys(cpm, CPM_KEYS, "space.cpm")
            _known_keys(head, HEAD_KEYS, "space.head")
            space = cls(
                input_size=_int(data.get("input_size", 128), "space.input_size", 8, MAX_WIDTH, multiple=8),
                stems=stems,
                width_step=_int(data.get("width_step", 8), "space.width_step", 1, MAX_WIDTH),
                bits=_bits(data.get("bits", [8])),
                backbone=slots,
                cpm_depth=_range(cpm["depth"], "cpm.depth"),
                cpm_width=_range(cpm["width"], "cpm.width"),
                cpm_kernels=_kernels(cpm.get("kernels", [3]), "cpm.kernels"),
                head_width=_range(head["width"], "head.width"),
            )
        except KeyError as exc:
            raise SpecError(f"space: missing key {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise SpecError(f"space: {exc}") from None
        space._validate()
        return space

    def _validate(self) -> None:
        if self.width_step < 1:
            raise SpecError("space: width_step must be positive")
        if self.backbone and self.backbone[0].optional:
            raise SpecError(f"space: the stem slot {self.backbone[0].name} cannot be optional")
        for slot in self.backbone:
            if slot.pool and slot.optional:
                raise SpecError(f"space: {slot.name} carries pooling and cannot be optional")
        low_depth = self.cpm_depth[0]
        if low_depth < 1:
            raise SpecError("space: cpm.depth must be at least 1")
        # Build the widest and narrowest networks once so that a bad space fails at load, not mid-study.
        for stem in self.stems:
            for pick in (min, max):
                try:
                    sample_arch(_Chooser({"stem": stem}, pick), self)
                except SpecError as exc:
                    raise SpecError(f"space (stem {stem}): {exc}") from exc


def sample_arch(trial: TrialLike, space: SearchSpace, name: str | None = None) -> ArchSpec:
    """Ask ``trial`` for every decision of ``space`` and build the architecture."""
    stem = trial.suggest_categorical("stem", list(space.stems)) if len(space.stems) > 1 else space.stems[0]
    floor = _choice(trial, LOWEST_BITS, space.bits)

    def bits(key: str) -> int:
        return max(_choice(trial, key, space.bits), floor)

    backbone = []
    for i, slot in enumerate(space.backbone):
        if slot.optional and not trial.suggest_categorical(f"{slot.name}.keep", [True, False]):
            continue
        pool, stride = slot.pool, 1
        if i == 0 and stem == "pool":
            pool = 2
        elif i == 0 and stem == "stride2":
            stride = 2
        backbone.append(
            LayerSpec(
                slot.name,
                _width(trial, f"{slot.name}.width", slot.width, space.width_step),
                kernel_size=_choice(trial, f"{slot.name}.kernel", slot.kernels),
                stride=stride,
                pool=pool,
                weight_bits=bits(f"{slot.name}.bits"),
            )
        )
    depth = trial.suggest_int("cpm.depth", *space.cpm_depth)
    cpm_width = _width(trial, "cpm.width", space.cpm_width, space.width_step)
    cpm = tuple(
        LayerSpec(
            f"cpm{j}",
            cpm_width,
            kernel_size=_choice(trial, f"cpm{j}.kernel", space.cpm_kernels),
            weight_bits=bits(f"cpm{j}.bits"),
        )
        for j in range(1, depth + 1)
    )
    head_width = _width(trial, "head.width", space.head_width, space.width_step)
    heads = tuple(
        HeadSpec(
            head,
            channels,
            hidden=(LayerSpec(f"{head}_conv", head_width, kernel_size=1, weight_bits=bits(f"{head}_conv.bits")),),
            out_bits=bits(f"{head}_out.bits"),
        )
        for head, channels in HEAD_OUTPUTS
    )
    return ArchSpec(
        name=name or f"trial{trial.number}",
        backbone=tuple(backbone),
        cpm=cpm,
        heads=heads,
        input_size=space.input_size,
        fold=2 if stem == "fold" else 1,
    )


def fixed_params(spec: ArchSpec, space: SearchSpace) -> dict[str, Any]:
    """The trial parameters that make ``sample_arch`` rebuild ``spec``; SpecOutsideSpace if impossible."""
    params: dict[str, Any] = {}

    def put(key: str, value: Any, allowed: Any) -> None:
        ok = allowed(value) if callable(allowed) else value in allowed
        if not ok:
            raise SpecOutsideSpace(f"{spec.name}: {key} = {value!r} is outside the search space")
        params[key] = value

    if spec.input_size != space.input_size:
        raise SpecOutsideSpace(f"{spec.name}: input_size {spec.input_size} differs from the space's {space.input_size}")
    first = spec.backbone[0]
    stem = "fold" if spec.fold == 2 else "stride2" if first.stride == 2 else "pool" if first.pool == 2 else None
    if stem is None or (stem == "fold" and (first.pool or first.stride != 1)) or spec.fold not in (1, 2):
        raise SpecOutsideSpace(f"{spec.name}: its stem is none of {list(STEMS)}")
    if len(space.stems) > 1:
        put("stem", stem, space.stems)
    elif stem != space.stems[0]:
        raise SpecOutsideSpace(f"{spec.name}: stem {stem} is outside the search space")

    layers = {layer.name: layer for layer in spec.backbone}
    slot_names = [slot.name for slot in space.backbone]
    if [n for n in slot_names if n in layers] != [layer.name for layer in spec.backbone]:
        raise SpecOutsideSpace(f"{spec.name}: backbone {list(layers)} does not follow the slots {slot_names}")
    for i, slot in enumerate(space.backbone):
        layer = layers.get(slot.name)
        if slot.optional:
            params[f"{slot.name}.keep"] = layer is not None
        if layer is None:
            if not slot.optional:
                raise SpecOutsideSpace(f"{spec.name}: {slot.name} is missing and may not be dropped")
            continue
        expected_pool = 2 if i == 0 and stem == "pool" else slot.pool
        if layer.pool != expected_pool or (layer.stride == 2) != (i == 0 and stem == "stride2"):
            raise SpecOutsideSpace(f"{spec.name}: {slot.name} pooling/stride differ from the slot's")
        put(f"{slot.name}.width", layer.out_channels, _in_range(slot.width, space.width_step))
        _put_choice(put, f"{slot.name}.kernel", layer.kernel_size, slot.kernels)
        _put_choice(put, f"{slot.name}.bits", layer.weight_bits, space.bits)

    put("cpm.depth", len(spec.cpm), _in_range(space.cpm_depth, 1))
    widths = {layer.out_channels for layer in spec.cpm}
    if len(widths) != 1:
        raise SpecOutsideSpace(f"{spec.name}: CPM layers of different widths {sorted(widths)}")
    put("cpm.width", widths.pop(), _in_range(space.cpm_width, space.width_step))
    for j, layer in enumerate(spec.cpm, start=1):
        if layer.name != f"cpm{j}":
            raise SpecOutsideSpace(f"{spec.name}: CPM layer {layer.name} should be named cpm{j}")
        _put_choice(put, f"cpm{j}.kernel", layer.kernel_size, space.cpm_kernels)
        _put_choice(put, f"cpm{j}.bits", layer.weight_bits, space.bits)

    head_widths = set()
    for head, (name, channels) in zip(spec.heads, HEAD_OUTPUTS):
        if head.out_channels != channels or len(head.hidden) != 1 or head.hidden[0].name != f"{name}_conv":
            raise SpecOutsideSpace(f"{spec.name}: head {head.name} is not one {name}_conv layer + {channels} outputs")
        head_widths.add(head.hidden[0].out_channels)
        _put_choice(put, f"{name}_conv.bits", head.hidden[0].weight_bits, space.bits)
        _put_choice(put, f"{name}_out.bits", head.out_bits, space.bits)
    if len(head_widths) != 1:
        raise SpecOutsideSpace(f"{spec.name}: the two heads differ in width {sorted(head_widths)}")
    put("head.width", head_widths.pop(), _in_range(space.head_width, space.width_step))
    _put_choice(put, LOWEST_BITS, spec.lowest_bits, space.bits)  # every layer's bits are then at or above it
    return params


def _known_keys(data: Any, known: tuple[str, ...], where: str) -> None:
    check_keys(data, known=known, where=where, error=SpecError)


def _slot(raw: Any, where: str) -> SlotBounds:
    _known_keys(raw, SLOT_KEYS, where)
    if "name" not in raw or "width" not in raw:
        raise SpecError(f"{where}: needs name and width")
    if not isinstance(raw["name"], str) or not raw["name"]:
        raise SpecError(f"{where}.name: must be a layer name, got {raw['name']!r}")
    name = raw["name"]
    optional = raw.get("optional", False)
    if not isinstance(optional, bool):
        raise SpecError(f"space: {name}.optional must be true or false, got {optional!r}")
    return SlotBounds(
        name=name,
        width=_range(raw["width"], f"{name}.width"),
        kernels=_kernels(raw.get("kernels", [3]), f"{name}.kernels"),
        pool=_int(raw.get("pool", 0), f"space: {name}.pool", 0, 16),
        optional=optional,
    )


def _int(value: Any, key: str, low: int, high: int, multiple: int = 1) -> int:
    """A study file's integer at ``key`` (a bool, a float or a string is not one)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high or value % multiple:
        what = "an integer" if multiple == 1 else f"a multiple of {multiple}"
        raise SpecError(f"{key}: must be {what} in [{low}, {high}], got {value!r}")
    return value


def _list(value: Any, key: str) -> list:
    if not isinstance(value, list):
        raise SpecError(f"{key}: must be a list, got {value!r}")
    return value


def _mapping(value: Any, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SpecError(f"{key}: must be a mapping, got {value!r}")
    return value


def _kernels(value: Any, key: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not value or any(k not in (1, 3) or isinstance(k, bool) for k in value):
        raise SpecError(f"space: {key} must be a non-empty list from [1, 3], got {value!r}")
    return tuple(value)


def _bits(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not value or any(b not in WEIGHT_BITS or isinstance(b, bool) for b in value):
        raise SpecError(f"space: bits must be a non-empty list from {list(WEIGHT_BITS)}, got {value!r}")
    return tuple(value)


def _range(value: Any, key: str) -> tuple[int, int]:
    if not (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        and 0 < value[0] <= value[1] <= MAX_WIDTH
    ):
        raise SpecError(f"space: {key} must be [low, high] with 0 < low <= high <= {MAX_WIDTH}, got {value!r}")
    return value[0], value[1]


def _width(trial: TrialLike, key: str, bounds: tuple[int, int], step: int) -> int:
    low, high = bounds
    high = low + (high - low) // step * step  # Optuna needs high reachable from low in steps
    return trial.suggest_int(key, low, high, step=step)


def _choice(trial: TrialLike, key: str, choices: tuple[Any, ...]) -> Any:
    return trial.suggest_categorical(key, list(choices)) if len(choices) > 1 else choices[0]


def _put_choice(put: Any, key: str, value: Any, choices: tuple[Any, ...]) -> None:
    if len(choices) > 1:
        put(key, value, choices)
    elif value != choices[0]:
        raise SpecOutsideSpace(f"{key} = {value!r} is outside the search space (fixed to {choices[0]!r})")


def _in_range(bounds: tuple[int, int], step: int) -> Any:
    low, high = bounds
    return lambda v: low <= v <= high and (v - low) % step == 0


class _Chooser:
    """A trial stand-in that answers every question with the low or high end (used to validate spaces)."""

    number = 0

    def __init__(self, fixed: dict[str, Any], pick: Any) -> None:  # pick: min or max
        self.fixed, self.pick = fixed, pick

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1) -> int:
        return self.fixed.get(name, self.pick(low, high))

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        return self.fixed.get(name, choices[0])
