"""Training a weight-sharing supernet: the sandwich rule with in-place distillation, then QAT.

Per step (``SupernetConfig``): the largest network of one stem (stems take turns), the smallest network of
the same stem, and a few random networks that the budget checker accepts, each forward and backward on the
same batch; one optimizer step on the summed gradients. The largest network learns from the targets and
the study's teacher (its cached maps); the others from the targets and a blend of the largest network's
maps (detached: the in-place teacher) and the study's teacher. In the last ``qat_epochs`` epochs the
supernet runs in QAT (each subnet folds its BN slice and fake-quantizes), with weight bits drawn per layer
from the space for every subnet but the largest, which stays 8-bit as the teacher.

The run folder holds ``supernet.pt`` (weights-only: ``torch.load(weights_only=True)`` reads it) and
``supernet.json`` (the study, its space, the schedule, the history), both written atomically after every
epoch. Rerunning the same command resumes after the last finished epoch; the result does not depend on
where the run stopped, because every random choice is a function of (seed, epoch, step).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from posenas.budgets.device import Budget
from posenas.budgets.feasible import feasible_random_arch
from posenas.errors import CheckpointError, TrainingError, UsageError
from posenas.files import atomic_write_stream, atomic_write_text
from posenas.posenet.nets.config import LowBitRecipe, SupernetConfig
from posenas.posenet.nets.distill import TeacherCache
from posenas.posenet.nets.layers import QuantMode
from posenas.posenet.nets.pacing import QAT_STEP_COST, Pacer
from posenas.posenet.nets.supernet import SuperNet
from posenas.posenet.nets.train import WARM_UP_STEPS, PreloadedSamples, _collate, model_input, pose_loss
from posenas.posenet.nets.weights import check_state_dict, read_weights_only
from posenas.posenet.pose.coco import CocoPoseDataset
from posenas.space.sampling import SearchSpace
from posenas.space.spec import ArchSpec
from posenas.space.subnets import largest_arch, smallest_arch, with_random_bits

FORMAT_VERSION = 1
WEIGHTS = "supernet.pt"
INFO = "supernet.json"


def space_dict(space: SearchSpace) -> dict[str, Any]:
    """The space as plain JSON values (tuples become lists), for saving and comparing."""
    return json.loads(json.dumps(dataclasses.asdict(space)))


def space_from_dict(data: dict[str, Any]) -> SearchSpace:
    """Inverse of ``space_dict``."""
    from posenas.space.sampling import SlotBounds

    values = dict(data)
    values["backbone"] = tuple(
        SlotBounds(
            name=s["name"], width=tuple(s["width"]), kernels=tuple(s["kernels"]), pool=s["pool"], optional=s["optional"]
        )
        for s in data["backbone"]
    )
    for key in ("stems", "bits", "cpm_depth", "cpm_width", "cpm_kernels", "head_width"):
        values[key] = tuple(values[key])
    return SearchSpace(**values)


@dataclass
class SupernetEpoch:
    epoch: int
    mode: str
    loss_largest: float
    loss_subnets: float
    images_per_s: float
    seconds: float
    subnets: int
    images: int = 0  # trained on this epoch (fewer than the set when a deadline paced it)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Sandwich:
    """The networks of one step: the largest (the in-place teacher), then the smallest and random ones."""

    largest: ArchSpec
    others: tuple[ArchSpec, ...]


def sandwich(space: SearchSpace, budget: Budget, config: SupernetConfig, epoch: int, step: int, qat: bool) -> Sandwich:
    """The step's networks, a function of (seed, epoch, step) only; the random ones all fit ``budget``."""
    rng = np.random.default_rng([config.seed, epoch, step])
    stem = space.stems[step % len(space.stems)]
    largest = largest_arch(space, stem, bits=8 if 8 in space.bits else max(space.bits))
    smallest = smallest_arch(space, stem)
    if qat:
        smallest = with_random_bits(smallest, rng, space.bits)
    randoms = tuple(feasible_random_arch(space, budget, rng, name=f"random{i}") for i in range(config.random_subnets))
    return Sandwich(largest, (smallest, *randoms))


class SupernetTrainer:
    """Trains the supernet of ``space`` on a COCO root into ``out``, resuming from ``out/supernet.pt``."""

    def __init__(
        self,
        space: SearchSpace,
        budget: Budget,
        data: str | os.PathLike,
        out: str | Path,
        config: SupernetConfig = SupernetConfig(),
        *,
        study: str = "",
        teacher_cache: TeacherCache | None = None,
        device: str | torch.device | None = None,
        on_batch: Callable[[int, int, torch.Tensor], None] | None = None,
        on_epoch: Callable[[SupernetEpoch], None] | None = None,
        deadline: float | None = None,
    ) -> None:
        self.space, self.budget, self.config, self.study = space, budget, config, study
        # a time.monotonic() reading: each epoch takes the steps its share of the time left allows
        self.pacer = None if deadline is None else Pacer(deadline, qat_cost=QAT_STEP_COST)
        self.out = Path(out)
        self.teacher_cache = teacher_cache
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.on_batch, self.on_epoch = on_batch, on_epoch
        self.train_set = CocoPoseDataset(
            data, "train", input_size=space.input_size, people_only=True, seed=config.seed, limit=config.train_images
        )
        if len(self.train_set) < config.batch_size:
            raise CheckpointError(f"{data}: {len(self.train_set)} training images, fewer than a batch")
        if teacher_cache is not None and not teacher_cache.covers(self.train_set.image_ids):
            raise CheckpointError(f"the teacher cache does not cover the training images of {data}")
        self._preloaded: PreloadedSamples | None = None

    # -- state -------------------------------------------------------------------------------------
    def info(self, epoch: int, mode: QuantMode, history: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "study": self.study,
            "space": space_dict(self.space),
            "budget": self.budget.device.name,
            "config": self.config.to_dict(),
            "epoch": epoch,
            "mode": mode.value,
            "history": history,
        }

    def _resume(self) -> tuple[SuperNet, int, list[dict[str, Any]], dict | None]:
        torch.manual_seed(self.config.seed)
        net = SuperNet(self.space, self.config.lowbit)
        path = self.out / WEIGHTS
        if not path.is_file():
            return net, 0, [], None
        saved = load_supernet_file(path)
        meta = saved["posenas_supernet"]
        if meta["space"] != space_dict(self.space):
            raise CheckpointError(f"{path}: holds the supernet of another search space; use another output folder")
        if meta["config"] != self.config.to_dict():
            raise CheckpointError(
                f"{path}: was trained with other settings; use another output folder or the same settings"
            )
        check_state_dict(net.state_dict(), saved["state_dict"], str(path), CheckpointError)
        net.set_mode(QuantMode(meta["mode"]))
        net.load_state_dict(saved["state_dict"])
        return net, int(meta["epoch"]) + 1, list(meta["history"]), saved.get("optimizer_state_dict") or None

    def _optimizer(self, net: SuperNet, mode: QuantMode) -> torch.optim.Optimizer:
        lr = self.config.qat_lr if mode is QuantMode.QAT else self.config.lr
        return torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=lr)

    def _lr_at(self, epoch: int, progress_in_epoch: float) -> float:
        """Cosine decay within each phase (float, then QAT), as posenas's stand-alone training."""
        config = self.config
        start, end, base = 0, config.qat_start or config.epochs, config.lr
        if config.phase_of(epoch) is QuantMode.QAT:
            start, end, base = config.qat_start or 0, config.epochs, config.qat_lr
        progress = (epoch - start + progress_in_epoch) / max(1, end - start)
        return base * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    def seconds_per_image(self, steps: int = 2) -> float:
        """Measured wall seconds per training image of a float sandwich step (every network of the step,
        forward and backward), over ``steps`` steps of a fresh supernet after ``WARM_UP_STEPS`` untimed passes
        over the same networks (a new shape's first steps are far slower): how the search sizes the supernet
        to its share of a time budget. (A QAT step costs about 1.4x: BENCHMARKS.md.)"""
        net = SuperNet(self.space, self.config.lowbit).to(self.device)
        net.train()
        batch = _collate([self.train_set[i] for i in range(min(self.config.batch_size, len(self.train_set)))])
        x = model_input(batch["images"], QuantMode.FLOAT).to(self.device)
        started = 0.0
        for timed in [False] * WARM_UP_STEPS + [True]:
            if timed:
                started = time.perf_counter()
            for step in range(steps):
                nets = sandwich(self.space, self.budget, self.config, 0, step, qat=False)
                for spec in (nets.largest, *nets.others):
                    heatmaps, pafs = net(x, spec)
                    (heatmaps.pow(2).mean() + pafs.pow(2).mean()).backward()
                net.zero_grad(set_to_none=True)
        return (time.perf_counter() - started) / (steps * len(x))

    # -- loop --------------------------------------------------------------------------------------
    def run(self) -> SuperNet:
        """Train the remaining epochs; returns the supernet (also when nothing was left to train)."""
        net, first, history, optimizer_state = self._resume()
        net.to(self.device)
        optimizer = self._optimizer(net, net.mode)
        if optimizer_state:
            optimizer.load_state_dict(optimizer_state)
        self.out.mkdir(parents=True, exist_ok=True)
        for epoch in range(first, self.config.epochs):
            if self.config.phase_of(epoch) is QuantMode.QAT and net.mode is QuantMode.FLOAT:
                net.start_qat()
                optimizer = self._optimizer(net, QuantMode.QAT)
            record = self._epoch(net, optimizer, epoch)
            history.append(record.to_dict())
            self._save(net, optimizer, epoch, history)
            if self.on_epoch:
                self.on_epoch(record)
        return net

    def _save(self, net: SuperNet, optimizer: torch.optim.Optimizer, epoch: int, history: list[dict]) -> None:
        info = self.info(epoch, net.mode, history)
        payload = {
            "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
            "optimizer_state_dict": optimizer.state_dict(),
            "epoch": epoch,
            "posenas_supernet": info,
        }
        atomic_write_stream(self.out / WEIGHTS, lambda stream: torch.save(payload, stream))
        atomic_write_text(self.out / INFO, json.dumps(info, indent=2) + "\n")

    def _epoch(self, net: SuperNet, optimizer: torch.optim.Optimizer, epoch: int) -> SupernetEpoch:
        batches, steps = self._batches(epoch)
        qat = net.mode is QuantMode.QAT
        net.train()
        started, seen, subnets = time.perf_counter(), 0, 0
        total_largest = torch.zeros((), device=self.device)
        total_others = torch.zeros((), device=self.device)
        pacer = self.pacer
        if pacer is not None:
            pacer.start_epoch([self.config.phase_of(e) is QuantMode.QAT for e in range(epoch, self.config.epochs)])
        for step, batch in enumerate(batches):
            # The clock bends the schedule only where it cuts the epoch: step 0 starts it at 0, else a far deadline
            # (its fraction a few microseconds above 0) would change the learning rate, and the run would not
            # repeat bit for bit.
            progress = step / max(1, steps)
            if pacer is not None and step:
                progress = max(progress, pacer.fraction())
            for group in optimizer.param_groups:
                group["lr"] = self._lr_at(epoch, progress)
            batch = {k: v.to(self.device) for k, v in batch.items()}
            x = model_input(batch["images"], QuantMode.FLOAT)  # QAT takes the same training-scale input
            teacher = None if self.teacher_cache is None else self.teacher_cache.lookup(batch["image_ids"], self.device)
            nets = sandwich(self.space, self.budget, self.config, epoch, step, qat)
            optimizer.zero_grad(set_to_none=True)
            heatmaps, pafs = net(x, nets.largest)
            loss, _ = pose_loss(heatmaps, pafs, batch, teacher, self.config.alpha)
            _finite(loss, nets.largest, epoch)
            loss.backward()
            total_largest += loss.detach()
            soft = _blend((heatmaps.detach(), pafs.detach()), teacher, self.config.inplace)
            for spec in nets.others:
                sub_heatmaps, sub_pafs = net(x, spec)
                sub_loss, _ = pose_loss(sub_heatmaps, sub_pafs, batch, soft, self.config.alpha)
                _finite(sub_loss, spec, epoch)
                sub_loss.backward()
                total_others += sub_loss.detach() / max(1, len(nets.others))
            optimizer.step()
            seen += x.shape[0]
            subnets += 1 + len(nets.others)
            if self.on_batch:
                self.on_batch(step + 1, steps, loss.detach())
            if pacer is not None and pacer.over():
                break  # this epoch's share of the time to the deadline is spent
        seconds = time.perf_counter() - started
        taken = max(1, seen // self.config.batch_size)
        return SupernetEpoch(
            epoch,
            net.mode.value,
            float(total_largest) / taken,
            float(total_others) / taken,
            seen / max(seconds, 1e-9),
            seconds,
            subnets,
            seen,
        )

    def _batches(self, epoch: int) -> tuple[Iterator[dict[str, torch.Tensor]], int]:
        generator = torch.Generator().manual_seed(self.config.seed * 1000 + epoch)
        size = self.config.batch_size
        if PreloadedSamples.fits(self.train_set):
            if self._preloaded is None:
                self._preloaded = PreloadedSamples(self.train_set)
            return self._preloaded.batches(size, generator), len(self._preloaded) // size
        loader = torch.utils.data.DataLoader(
            self.train_set, batch_size=size, shuffle=True, drop_last=True, collate_fn=_collate, generator=generator
        )
        return iter(loader), len(loader)


def _blend(
    largest: tuple[torch.Tensor, torch.Tensor], teacher: tuple[torch.Tensor, torch.Tensor] | None, share: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The subnets' soft targets: ``share`` x the largest network's maps + the rest x the study's teacher.

    L2 to this blend equals the same blend of the two L2 losses up to a constant, so it is in-place
    distillation plus teacher distillation in one term."""
    if teacher is None:
        return largest
    return (share * largest[0] + (1 - share) * teacher[0], share * largest[1] + (1 - share) * teacher[1])


def _finite(loss: torch.Tensor, spec: ArchSpec, epoch: int) -> None:
    if not torch.isfinite(loss):
        raise TrainingError(
            f"supernet epoch {epoch + 1}: the loss of {spec.name} is {float(loss)}; lower the learning rate (lr)"
        )


def load_supernet_file(path: str | Path) -> dict[str, Any]:
    """A ``supernet.pt`` read weights-only and checked for posenas's section (CheckpointError otherwise)."""
    raw = read_weights_only(path, "supernet checkpoint", CheckpointError)
    meta = raw.get("posenas_supernet") if isinstance(raw, dict) else None
    if not isinstance(meta, dict) or not isinstance(raw.get("state_dict"), dict):
        raise CheckpointError(f"{path}: not a posenas supernet checkpoint (no posenas_supernet section)")
    if meta.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: supernet format {meta.get('format')!r}, expected {FORMAT_VERSION}")
    for key in ("space", "config", "mode", "epoch", "history"):
        if key not in meta:
            raise CheckpointError(f"{path}: the posenas_supernet section lacks {key!r}")
    return raw


def load_supernet(folder: str | Path, space: SearchSpace | None = None) -> tuple[SuperNet, dict[str, Any]]:
    """The supernet in ``folder`` (made by ``posenas supernet``) and its info; with ``space``, CheckpointError
    unless it was trained on exactly that space."""
    folder = Path(folder)
    path = folder / WEIGHTS
    if not path.is_file():
        raise CheckpointError(f"{folder}: not a supernet folder (no {WEIGHTS}; make one with posenas supernet)")
    saved = load_supernet_file(path)
    meta = saved["posenas_supernet"]
    if space is not None and meta["space"] != space_dict(space):
        raise CheckpointError(
            f"{folder}: a supernet of another search space (study {meta.get('study') or '?'}); "
            "train one for this study or use none"
        )
    try:
        saved_space = space_from_dict(meta["space"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable search space ({exc.__class__.__name__})") from None
    try:
        # a supernet saved before the recipe existed trained in ai8x v1 arithmetic throughout
        lowbit = LowBitRecipe.from_value(meta.get("config", {}).get("lowbit", {"enabled": False}))
    except UsageError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    net = SuperNet(saved_space, lowbit)
    check_state_dict(net.state_dict(), saved["state_dict"], str(path), CheckpointError)
    net.set_mode(QuantMode(meta["mode"]))
    net.load_state_dict(saved["state_dict"])
    return net, meta
