"""Distillation + quantization-aware training of a pose network, faithful to ai8x-training's QAT v1.

One run: a float phase, then (from ``qat_start``) batch-norm folded into the weights and QAT, as
ai8x-training does at its policy's start epoch; the optimizer is rebuilt at that point because the
parameters change. The loss is ``alpha`` x masked L2 to the OpenPose targets + (1 - alpha) x L2 to the
teacher's maps (alpha 0.3 as in the seeds). Every epoch ends with validation AP (COCOeval) in the current
arithmetic, ``last.pt`` (for resuming) and, when the AP improves within the current phase, ``best.pt``;
at the switch to QAT the float phase's best is kept as ``best-float.pt``.

Rerunning the same command resumes from ``last.pt``. Determinism: the weights are seeded, and every
augmentation is a function of (seed, epoch, index), whatever the number of loader workers.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from torch import nn

from posenas.errors import TrainingError
from posenas.files import atomic_write, atomic_write_text
from posenas.posenet.nets.checkpoint import CheckpointError, RunCheckpoint, load_checkpoint, model_for, save_checkpoint
from posenas.posenet.nets.config import LowBitRecipe, TrainConfig
from posenas.posenet.nets.diagnostics import LayerDiagnostics, collapse_warning, layer_diagnostics
from posenas.posenet.nets.layers import QuantMode, quantize_input, to_training_scale, wide_output_scale
from posenas.posenet.nets.model import PoseNet, build_model
from posenas.posenet.nets.pacing import Pacer
from posenas.posenet.nets.weights import check_state_dict
from posenas.posenet.pose.coco import CocoPoseDataset
from posenas.posenet.pose.evaluate import KeypointMetrics, evaluate_results, prediction_results
from posenas.posenet.pose.keypoints import NUM_BODY_KEYPOINTS, NUM_HEATMAPS, NUM_PAFS
from posenas.posenet.pose.transforms import Augmentation
from posenas.space.spec import ArchSpec

if TYPE_CHECKING:  # distill imports this module (to train a teacher); the cache is only a type here
    from posenas.posenet.nets.distill import TeacherCache


class Teacher(Protocol):
    """Anything that maps RGB [0, 1] images (N, 3, S, S) to (heatmaps, pafs) at the student's stride."""

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


def model_input(images: torch.Tensor, mode: QuantMode) -> torch.Tensor:
    """uint8 (N, S, S, 3) RGB -> the network's input: integers in SIMULATE, x / 128 otherwise."""
    x = images.permute(0, 3, 1, 2).to(torch.float32) / 255.0
    x_int = quantize_input(x)
    return x_int.to(torch.float64) if mode is QuantMode.SIMULATE else to_training_scale(x_int)


def predictor_for(model: PoseNet, device: torch.device) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """A ``posenet.evaluate`` predictor running ``model`` in its own arithmetic (maps in target scale)."""

    def predict(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mode = model.mode
        with torch.no_grad():
            heatmaps, pafs = model(model_input(torch.from_numpy(images).to(device), mode))
        if mode is QuantMode.SIMULATE:  # raw accumulators -> the maps QAT trained (per head: bits may differ)
            heat_layer, paf_layer = model.output_layers()
            heatmaps = heatmaps / wide_output_scale(heat_layer.target_bits)
            pafs = pafs / wide_output_scale(paf_layer.target_bits)
        return heatmaps.float().cpu().numpy(), pafs.float().cpu().numpy()

    return predict


def evaluate_model(model: PoseNet, dataset: CocoPoseDataset, device: torch.device | str = "cpu") -> KeypointMetrics:
    """COCO keypoint AP of ``model`` (in its current arithmetic) on ``dataset``."""
    was_training = model.training
    model.eval()
    results = prediction_results(predictor_for(model, torch.device(device)), dataset)
    model.train(was_training)
    return evaluate_results(dataset.coco, results, dataset.image_ids)


def validation_losses(model: PoseNet, samples: dict[str, torch.Tensor], batch_size: int = 64) -> dict[str, float]:
    """{"loss": the masked L2 loss, "fg_loss": the foreground loss} of ``model`` (in its current arithmetic)
    against the targets of ``samples`` (``PreloadedSamples.tensors`` of validation images): the search's
    ``loss`` and ``fg_loss`` objectives. They need no decoding, and they still separate networks whose AP
    is 0 (a short CPU schedule)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    heat, paf = [], []
    with torch.no_grad():
        for start in range(0, len(samples["images"]), batch_size):
            images = samples["images"][start : start + batch_size].to(device)
            heatmaps, pafs = model(model_input(images, model.mode))
            heat.append(heatmaps.float().cpu())
            paf.append(pafs.float().cpu())
    model.train(was_training)
    targets = {k: samples[k] for k in ("heatmaps", "pafs", "mask")}
    heatmaps, pafs = torch.cat(heat), torch.cat(paf)
    return {
        "loss": float(pose_loss(heatmaps, pafs, targets, None, 1.0)[0]),
        "fg_loss": float(foreground_loss(heatmaps, pafs, targets)),
    }


SWITCH_CHECKPOINT = "switch-float.pt"
"""The float network at the QAT switch, in the run folder (the float teacher of the low-bit recipe)."""
QUANTIZATION_REPORT = "quantization.json"
"""Per-layer quantization diagnostics at the switch and after the latest QAT epoch, in the run folder."""
DIAGNOSTIC_IMAGES = 16


FOREGROUND = 0.05
"""A heatmap target above this (a Gaussian's tail at about 2.4 sigma) is a keypoint's neighbourhood."""


def foreground_loss(heatmaps: torch.Tensor, pafs: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean squared error on the foreground only: keypoint heatmaps where their target exceeds
    ``FOREGROUND`` plus PAFs where their target is non-zero (inside the mask), each averaged over its own
    cells. The masked L2 of ``pose_loss`` averages over every cell, and at 128x128 almost every cell is
    background, so a network that paints faint blobs scores nearly as well as one that places sharp peaks;
    this signal weighs only where people are. A candidate ranking signal of the supernet scorer."""
    mask = targets["mask"].unsqueeze(1)
    keypoints = targets["heatmaps"][:, :NUM_BODY_KEYPOINTS]
    heat_cells = (keypoints > FOREGROUND) * mask
    paf_cells = (targets["pafs"] != 0) * mask
    heat = ((heatmaps[:, :NUM_BODY_KEYPOINTS] - keypoints) ** 2 * heat_cells).sum() / heat_cells.sum().clamp(min=1)
    paf = ((pafs - targets["pafs"]) ** 2 * paf_cells).sum() / paf_cells.sum().clamp(min=1)
    return heat + paf


def pose_loss(
    heatmaps: torch.Tensor,
    pafs: torch.Tensor,
    batch: dict[str, torch.Tensor],
    teacher_maps: tuple[torch.Tensor, torch.Tensor] | None,
    alpha: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """alpha x masked L2 to the targets + (1 - alpha) x L2 to the teacher (targets only without one).

    The parts come back as detached tensors: turning them into Python numbers every step would make a
    GPU wait for each batch."""
    mask = batch["mask"].unsqueeze(1)
    target = ((heatmaps - batch["heatmaps"]) ** 2 * mask).mean() + ((pafs - batch["pafs"]) ** 2 * mask).mean()
    if teacher_maps is None:
        return target, {"target": target.detach()}
    distill = distill_loss(heatmaps, pafs, teacher_maps)
    return alpha * target + (1 - alpha) * distill, {"target": target.detach(), "distill": distill.detach()}


def distill_loss(
    heatmaps: torch.Tensor, pafs: torch.Tensor, teacher_maps: tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """L2 to the teacher's maps: the whole loss of an image without annotations."""
    t_heatmaps, t_pafs = teacher_maps
    return ((heatmaps - t_heatmaps) ** 2).mean() + ((pafs - t_pafs) ** 2).mean()


def _collate(samples: list) -> dict[str, torch.Tensor]:
    return {
        "images": torch.from_numpy(np.stack([s.image for s in samples])),
        "heatmaps": torch.from_numpy(np.stack([s.heatmaps for s in samples])),
        "pafs": torch.from_numpy(np.stack([s.pafs for s in samples])),
        "mask": torch.from_numpy(np.stack([s.mask for s in samples])),
        "image_ids": torch.from_numpy(np.array([s.image_id for s in samples], dtype=np.int64)),
    }


class PreloadedSamples:
    """Every un-augmented sample of a dataset, made once and kept as tensors ("cached targets").

    Without augmentation a sample never changes, so rendering it every epoch is waste; batches are then
    slices of these tensors, with no loader processes or collation. ``fits`` says whether a dataset is
    small enough to keep (the synthetic set is 2000 x 107 KB; full COCO is not kept)."""

    MAX_BYTES = 2 * 1024**3

    def __init__(self, dataset: CocoPoseDataset) -> None:
        if dataset.augmentation is not None:
            raise ValueError("only un-augmented samples can be preloaded")
        batches = [
            _collate([dataset[i] for i in range(start, min(start + 256, len(dataset)))])
            for start in range(0, len(dataset), 256)
        ]
        self.tensors = {key: torch.cat([b[key] for b in batches]) for key in batches[0]}

    @staticmethod
    def fits(dataset: CocoPoseDataset) -> bool:
        side = dataset.input_size // dataset.targets.stride
        per_sample = dataset.input_size**2 * 3 + 4 * side * side * (NUM_HEATMAPS + NUM_PAFS + 1) + 8
        return per_sample * len(dataset) <= PreloadedSamples.MAX_BYTES

    def __len__(self) -> int:
        return len(self.tensors["images"])

    def batches(self, batch_size: int, generator: torch.Generator) -> Iterator[dict[str, torch.Tensor]]:
        """Shuffled full batches (the last partial one dropped, as the loader does)."""
        order = torch.randperm(len(self), generator=generator)
        for step in range(len(self) // batch_size):
            rows = order[step * batch_size : (step + 1) * batch_size]
            yield {key: tensor[rows] for key, tensor in self.tensors.items()}


@dataclass
class EpochRecord:
    epoch: int
    mode: str
    loss: float
    images_per_s: float
    seconds: float
    ap: float
    ap50: float
    images: int = 0  # trained on this epoch (fewer than the set when a deadline paced it)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def quantization_diagnostics(
    model: PoseNet, dataset: CocoPoseDataset, device: torch.device | str = "cpu", images: int = DIAGNOSTIC_IMAGES
) -> list[LayerDiagnostics]:
    """Per-layer quantization diagnostics (``diagnostics.layer_diagnostics``) of a QAT-mode ``model`` on the
    first ``images`` images of ``dataset``."""
    batch = _collate([dataset[i] for i in range(min(images, len(dataset)))])
    return layer_diagnostics(model, model_input(batch["images"].to(device), QuantMode.QAT))


def best_aps(history: list[dict[str, Any]]) -> tuple[float, float]:
    """(the run's score, its best float AP) from a checkpoint's history: the score is the best QAT epoch's
    AP (the network as the chip runs it), or the best float AP for a float-only run; NaN float AP when
    every epoch was QAT."""
    # an epoch a deadline left unvalidated has AP NaN: it is not a score
    qat = [h["ap"] for h in history if h["mode"] == "qat" and h["ap"] == h["ap"]]
    floating = [h["ap"] for h in history if h["mode"] == "float" and h["ap"] == h["ap"]]
    if not qat and not floating:
        return float("nan"), float("nan")
    return (max(qat) if qat else max(floating)), (max(floating) if floating else float("nan"))


WARM_UP_STEPS = 3  # untimed steps before a speed measurement


def seconds_per_training_image(
    model: nn.Module,
    images: torch.Tensor,
    steps: int = 2,
    forward: Callable[[nn.Module, torch.Tensor], Any] | None = None,
) -> float:
    """Measured wall seconds per image of a training step (forward and backward) of ``model`` on the batch
    ``images`` (model input), averaged over ``steps`` steps after ``WARM_UP_STEPS`` untimed ones (on a CPU
    the first two steps of a shape cost up to 20 times a later one: measured 2.2, 0.95, then 0.09 s for a
    small network's batch of 16). The search sizes its
    time-limited phases with it; the model's weights and BN statistics are left unchanged."""
    forward = forward or (lambda m, x: m(x))
    was_training = model.training
    model.train()
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    started = 0.0
    for step in range(WARM_UP_STEPS + steps):
        if step == WARM_UP_STEPS:
            started = time.perf_counter()
        outputs = forward(model, images)
        sum(o.float().pow(2).mean() for o in outputs).backward()
        model.zero_grad(set_to_none=True)
    seconds = (time.perf_counter() - started) / (steps * len(images))
    model.load_state_dict(saved)  # BN running statistics moved: put them back
    model.train(was_training)
    return seconds


class Trainer:
    """Trains ``spec`` on a COCO root into ``out`` (``last.pt``, ``best.pt``), resuming if possible.

    ``teacher`` runs live on each batch; ``teacher_cache`` (maps per un-augmented image) replaces it when
    training without augmentation, so the teacher never runs again. ``init_state`` (a float state dict of
    ``build_model(spec)``, e.g. weights inherited from a supernet) replaces the random initialisation of a
    fresh run; a resumed run continues from its own checkpoint. ``deadline`` (a ``time.monotonic()``
    reading) paces the run to end then: each epoch takes the steps its share of the time left allows, at
    the speed measured while it runs (``posenet.nets.pacing``)."""

    def __init__(
        self,
        spec: ArchSpec,
        data: str | os.PathLike,
        out: str | Path,
        config: TrainConfig = TrainConfig(),
        teacher: Teacher | None = None,
        device: str | torch.device | None = None,
        on_batch: Callable[[int, int, torch.Tensor], None] | None = None,
        on_epoch: Callable[[EpochRecord], None] | None = None,
        teacher_cache: TeacherCache | None = None,
        init_state: dict[str, torch.Tensor] | None = None,
        on_quantization: Callable[[str, list[LayerDiagnostics]], None] | None = None,
        deadline: float | None = None,
    ) -> None:
        # A network with weights below 8 bits trains with the low-bit recipe's schedule (QAT length and rate).
        # Checkpoints record the schedule asked for, so that the same request resumes the run.
        self.requested = config
        config = config.for_lowest_bits(spec.lowest_bits)
        self.spec, self.config, self.teacher, self.teacher_cache = spec, config, teacher, teacher_cache
        self.on_quantization = on_quantization  # (when, rows) for a network with weights below 8 bits
        self.init_state = init_state
        self.pacer = None if deadline is None else Pacer(deadline)
        self.out = Path(out)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.on_batch, self.on_epoch = on_batch, on_epoch
        augmentation = Augmentation() if config.augment else None
        self.train_set = CocoPoseDataset(
            data,
            "train",
            input_size=spec.input_size,
            augmentation=augmentation,
            people_only=True,
            seed=config.seed,
            limit=config.train_images,
        )
        self.val_set = CocoPoseDataset(data, "val", input_size=spec.input_size, limit=config.val_images)
        if teacher_cache is not None and not config.augment and not teacher_cache.covers(self.train_set.image_ids):
            raise CheckpointError(f"the teacher cache does not cover the training images of {data}")
        self._preloaded: PreloadedSamples | None = None
        self._switch_teacher: PoseNet | None = None
        if isinstance(self.teacher, nn.Module):
            self.teacher = self.teacher.to(self.device).eval()

    @property
    def recipe(self) -> LowBitRecipe | None:
        """The low-bit recipe where it applies to this network, else None (ai8x v1 throughout)."""
        lowbit = self.config.lowbit
        return lowbit if lowbit.applies_to(self.spec.lowest_bits) else None

    @property
    def distilling(self) -> bool:
        return (self.teacher is not None or self.teacher_cache is not None) and self.config.alpha < 1.0

    # -- state -------------------------------------------------------------------------------------
    def _fresh(self) -> tuple[PoseNet, int, dict[str, Any], list[dict[str, Any]]]:
        torch.manual_seed(self.config.seed)
        model = build_model(self.spec)
        if self.init_state is not None:
            check_state_dict(model.state_dict(), self.init_state, "the initial weights", CheckpointError)
            model.load_state_dict(self.init_state)
        return model, 0, {"best_mAP": -1.0, "best_epoch": -1}, []

    def _resume(self) -> tuple[PoseNet, int, dict[str, Any], list[dict[str, Any]], dict | None]:
        last = self.out / "last.pt"
        if not last.is_file():
            return (*self._fresh(), None)
        checkpoint = load_checkpoint(last)
        if checkpoint.spec.spec_hash() != self.spec.spec_hash():
            raise CheckpointError(f"{last}: holds another architecture; use another output folder or delete it")
        if checkpoint.train_config != self.requested.to_dict():
            raise CheckpointError(f"{last}: was trained with other settings; use another output folder or delete it")
        return (
            model_for(checkpoint, str(last)),
            checkpoint.epoch + 1,
            checkpoint.extras,
            checkpoint.history,
            checkpoint.optimizer_state,
        )

    def _optimizer(self, model: nn.Module, mode: QuantMode) -> torch.optim.Optimizer:
        lr = self.config.qat_lr if mode is QuantMode.QAT else self.config.lr
        params = [p for p in model.parameters() if p.requires_grad]
        return torch.optim.Adam(params, lr=lr, weight_decay=self.config.weight_decay)

    def _lr_at(self, epoch: int, step: float) -> float:
        """Cosine decay within each phase (float, then QAT), so each ends near zero."""
        config = self.config
        start, end, base = 0, config.qat_start or config.epochs, config.lr
        if config.phase_of(epoch) is QuantMode.QAT:
            start, end, base = config.qat_start or 0, config.epochs, config.qat_lr
        progress = (epoch - start + step) / max(1, end - start)
        return base * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    # -- loop --------------------------------------------------------------------------------------
    def run(self) -> list[EpochRecord]:
        model, first, extras, history, optimizer_state = self._resume()
        model.to(self.device)
        if self.device.type == "cuda":
            model.to(memory_format=torch.channels_last)
        optimizer = self._optimizer(model, model.mode)
        if optimizer_state:
            optimizer.load_state_dict(optimizer_state)
        loader_generator = torch.Generator().manual_seed(self.config.seed)
        records = []
        for epoch in range(first, self.config.epochs):
            if self.config.phase_of(epoch) is QuantMode.QAT and model.mode is QuantMode.FLOAT:
                # The float phase's best, for float-AP comparisons. A best.pt already in QAT mode was left by a
                # run killed in its first QAT epoch, after this copy was made: keep that copy.
                best = self.out / "best.pt"
                if best.is_file() and load_checkpoint(best).mode is QuantMode.FLOAT:
                    atomic_write(self.out / "best-float.pt", lambda partial, best=best: shutil.copyfile(best, partial))
                if self.recipe is not None and self.recipe.float_distill:
                    # the network the QAT phase starts from: the recipe's float teacher, kept for a resume
                    switch = RunCheckpoint(
                        spec=self.spec,
                        mode=QuantMode.FLOAT,
                        epoch=epoch - 1,
                        state_dict={k: v.detach().cpu() for k, v in model.state_dict().items()},
                        train_config=self.requested.to_dict(),
                    )
                    save_checkpoint(switch, self.out / SWITCH_CHECKPOINT)
                model.start_qat(self.recipe)  # folds BN (the keys disappear) and switches to fake quantization
                model.to(self.device)
                optimizer = self._optimizer(model, QuantMode.QAT)
                extras = {"best_mAP": -1.0, "best_epoch": -1}  # ai8x resets the best score at QAT start
                self._diagnose(model, "switch")
            if model.mode is QuantMode.QAT:
                model.calibrate_shifts()  # held shifts follow the weights, between epochs only
            record = self._epoch(model, optimizer, epoch, loader_generator)
            history.append(record.to_dict())
            improved = record.ap > extras.get("best_mAP", -1.0)
            if improved:
                extras = {"best_mAP": record.ap, "best_epoch": epoch}
            extras["current_mAP"] = record.ap
            checkpoint = RunCheckpoint(
                spec=self.spec,
                mode=model.mode,
                epoch=epoch,
                state_dict={k: v.detach().cpu() for k, v in model.state_dict().items()},
                optimizer_state=optimizer.state_dict(),
                extras=extras,
                history=history,
                train_config=self.requested.to_dict(),
            )
            # best.pt before last.pt: last.pt is the commit point of an epoch. A kill between the two
            # writes reruns the epoch (deterministically) on resume instead of leaving best.pt stale.
            if improved:
                save_checkpoint(checkpoint, self.out / "best.pt")
            save_checkpoint(checkpoint, self.out / "last.pt")
            records.append(record)
            if model.mode is QuantMode.QAT:
                self._diagnose(model, "end")
            if self.on_epoch:
                self.on_epoch(record)
        return records

    # -- the low-bit recipe's parts ----------------------------------------------------------------
    def _diagnose(self, model: PoseNet, when: str) -> None:
        """Per-layer diagnostics of a network with weights below 8 bits, in QAT, on the first validation
        images, into ``quantization.json`` (``switch``: right after the switch; ``end``: after the latest QAT
        epoch). All-8-bit networks skip it: nothing there collapses, and the search retrains many."""
        if self.spec.lowest_bits >= 8:
            return
        rows = quantization_diagnostics(model, self.val_set, self.device)
        path = self.out / QUANTIZATION_REPORT
        report = json.loads(path.read_text()) if path.is_file() and when != "switch" else {}
        report[when] = [row.to_dict() for row in rows]
        report[f"{when}_warning"] = collapse_warning(rows)
        atomic_write_text(path, json.dumps(report, indent=1))
        if self.on_quantization:
            self.on_quantization(when, rows)

    def _float_teacher(self) -> PoseNet | None:
        """The float network of the switch (``switch-float.pt``), in eval mode, when the recipe distils from it."""
        if self.recipe is None or not self.recipe.float_distill:
            return None
        if self._switch_teacher is None:
            checkpoint = load_checkpoint(self.out / SWITCH_CHECKPOINT)
            self._switch_teacher = model_for(checkpoint).to(self.device).eval()
            for parameter in self._switch_teacher.parameters():
                parameter.requires_grad_(False)
        return self._switch_teacher

    def _epoch(
        self, model: PoseNet, optimizer: torch.optim.Optimizer, epoch: int, generator: torch.Generator
    ) -> EpochRecord:
        batches, steps = self._batches(epoch, generator)
        mode = model.mode
        # AMP only in the float phase: fake quantization must see exact float32 values.
        amp = self.config.amp and self.device.type == "cuda" and mode is QuantMode.FLOAT
        model.train()
        started, seen, total_loss = time.perf_counter(), 0, torch.zeros((), device=self.device)
        unlabeled = self._unlabeled_batches(epoch)
        float_teacher = self._float_teacher() if mode is QuantMode.QAT else None
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
            batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
            x = model_input(batch["images"], mode)
            if self.device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            teacher_maps = self._teacher_maps(batch)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
                heatmaps, pafs = model(x)
            loss, _ = pose_loss(heatmaps.float(), pafs.float(), batch, teacher_maps, self.config.alpha)
            if float_teacher is not None:  # the recipe: the quantized network also learns the float one's maps
                with torch.no_grad():
                    float_maps = float_teacher(x)
                share = self.recipe.float_distill  # type: ignore[union-attr]
                loss = (1 - share) * loss + share * distill_loss(heatmaps.float(), pafs.float(), float_maps)
            if unlabeled is not None:  # the user's own images: distillation loss only
                u_images, u_maps = next(unlabeled)
                u_x = model_input(u_images.to(self.device, non_blocking=True), mode)
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
                    u_heatmaps, u_pafs = model(u_x)
                u_maps = u_maps.to(self.device, non_blocking=True).float()
                u_teacher = (u_maps[:, :NUM_HEATMAPS], u_maps[:, NUM_HEATMAPS:])
                u_loss = distill_loss(u_heatmaps.float(), u_pafs.float(), u_teacher)
                loss = loss + (1 - self.config.alpha) * u_loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += x.shape[0]
            total_loss += loss.detach() * x.shape[0]
            if self.on_batch:
                self.on_batch(step + 1, steps, loss.detach())
            if pacer is not None and pacer.over():
                break  # this epoch's share of the time to the deadline is spent
        seconds = time.perf_counter() - started
        if not bool(torch.isfinite(total_loss)):  # one sync per epoch; the epoch is neither scored nor saved
            raise TrainingError(
                f"{self.spec.name}: the training loss became NaN or infinite in epoch {epoch + 1} "
                f"({mode.value}); lower the learning rate ({'qat_lr' if mode is QuantMode.QAT else 'lr'})"
            )
        last_of_phase = epoch + 1 == self.config.epochs or self.config.phase_of(epoch + 1) is not mode
        if pacer is not None and not pacer.worth_validating(self.config.epochs - epoch, last_of_phase):
            # short of time: not validated (AP NaN), never chosen as the best epoch
            return EpochRecord(
                epoch, mode.value, float(total_loss) / max(1, seen), seen / seconds, seconds, math.nan, math.nan, seen
            )
        validation_started = time.perf_counter()
        metrics = evaluate_model(model, self.val_set, self.device)
        if pacer is not None:
            pacer.validated(time.perf_counter() - validation_started)
        return EpochRecord(
            epoch, mode.value, float(total_loss) / max(1, seen), seen / seconds, seconds, metrics.ap, metrics.ap50, seen
        )

    def _batches(self, epoch: int, generator: torch.Generator) -> tuple[Iterator[dict[str, torch.Tensor]], int]:
        """This epoch's shuffled batches: slices of the preloaded samples when nothing is augmented and
        they fit in memory, else a loader (with ``workers`` processes) rendering each sample."""
        generator.manual_seed(self.config.seed * 1000 + epoch)
        size = self.config.batch_size
        if not self.config.augment and PreloadedSamples.fits(self.train_set):
            if self._preloaded is None:
                self._preloaded = PreloadedSamples(self.train_set)
            return self._preloaded.batches(size, generator), len(self._preloaded) // size
        self.train_set.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(
            self.train_set,
            batch_size=size,
            shuffle=True,
            drop_last=True,
            num_workers=self.config.workers,
            collate_fn=_collate,
            generator=generator,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
        )
        return iter(loader), len(loader)

    def _unlabeled_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]] | None:
        """Endless shuffled batches of the teacher cache's unlabeled images and maps (one per labeled batch),
        or None when there are none or nothing is distilled."""
        unlabeled = getattr(self.teacher_cache, "unlabeled", None)
        if unlabeled is None or not self.distilling or len(unlabeled) == 0:
            return None
        images, maps = torch.from_numpy(np.asarray(unlabeled.images)), torch.from_numpy(np.asarray(unlabeled.maps))
        if images.shape[1] != self.spec.input_size:
            raise CheckpointError(
                f"the teacher's unlabeled images are {images.shape[1]} px, the network's input {self.spec.input_size}"
            )
        generator = torch.Generator().manual_seed(self.config.seed * 1000 + epoch + 7)
        size = min(self.config.batch_size, len(images))

        def cycle() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            while True:
                order = torch.randperm(len(images), generator=generator)
                for start in range(0, len(order) - size + 1, size):
                    rows = order[start : start + size]
                    yield images[rows], maps[rows]

        return cycle()

    def _teacher_maps(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor] | None:
        if not self.distilling:
            return None
        if self.teacher_cache is not None and not self.config.augment:
            return self.teacher_cache.lookup(batch["image_ids"], self.device)
        if self.teacher is None:
            raise CheckpointError("augmented training needs the teacher itself, not only its cache")
        with torch.no_grad():
            return self.teacher(batch["images"].permute(0, 3, 1, 2).float() / 255.0)
