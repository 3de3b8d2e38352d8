"""Scoring a subnet of a trained supernet in seconds: inherit, recalibrate batch-norm, fold, QAT AP.

A subnet's inherited BN statistics are a mixture over all the subnets the supernet trained, so they are
first re-estimated on a fixed set of training images (``calibration_images``, cumulative average); BN is
then folded as ``start_qat`` does and the network runs in QAT arithmetic at the spec's weight bits on
the validation images: COCO keypoint AP after decoding, and, from the same forward pass, the masked L2
loss against the targets (a cheaper signal that needs no decoding).

Everything that does not depend on the subnet (letterboxed validation images, their targets and the
matrices that map poses back, the calibration images) is prepared once per scorer, so a score costs one
extraction, one calibration pass, ``finetune_steps`` training steps (none by default; the default study
takes 30, see ``SubnetScorer._finetune``), one validation pass, and for AP decoding and COCOeval.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
import torch

from posenas.posenet.nets.config import LowBitRecipe
from posenas.posenet.nets.layers import QuantMode
from posenas.posenet.nets.model import PoseNet
from posenas.posenet.nets.supernet import SuperNet, recalibrate_batchnorm
from posenas.posenet.nets.train import PreloadedSamples, foreground_loss, model_input, pose_loss
from posenas.posenet.pose.coco import CocoPoseDataset
from posenas.posenet.pose.decode import DecodeConfig, decode
from posenas.posenet.pose.evaluate import evaluate_results, poses_to_results
from posenas.posenet.pose.transforms import letterbox_matrix
from posenas.space.spec import ArchSpec


@dataclass(frozen=True)
class SubnetScore:
    """A subnet's score: QAT AP and AP50 on the validation images, their masked L2 loss (``pose_loss``'s
    target term), their foreground loss (``foreground_loss``), and the time."""

    ap: float
    ap50: float
    val_loss: float
    seconds: float
    fg_loss: float = float("nan")

    def to_dict(self) -> dict[str, float]:
        return {
            "ap": self.ap,
            "ap50": self.ap50,
            "val_loss": self.val_loss,
            "fg_loss": self.fg_loss,
            "seconds": self.seconds,
        }


class SubnetScorer:
    """Scores subnets of ``supernet`` on ``data``: BN recalibrated on ``calibration_images`` training images
    (drawn with ``seed``), QAT AP on the first ``val_images`` validation images (``val_offset`` skips some,
    to measure the score's noise over validation subsets).

    ``mode`` FLOAT scores the float network instead, the weight bits ignored. It is the only meaningful mode
    for a supernet that never trained in QAT (its wide output layers have not learnt the QAT output scale,
    2**-shift); for a short supernet it can also rank better than QAT, whose subnets with 2-bit layers are
    all broken after one QAT epoch (BENCHMARKS.md, "Fidelity")."""

    def __init__(
        self,
        supernet: SuperNet,
        data: str | os.PathLike,
        *,
        calibration_images: int = 256,
        val_images: int | None = 100,
        val_offset: int = 0,
        batch_size: int = 64,
        seed: int = 0,
        device: str | torch.device | None = None,
        mode: QuantMode = QuantMode.QAT,
        finetune_steps: int = 0,
        finetune_batch: int = 16,
        finetune_lr: float = 1e-3,
        recipe: LowBitRecipe | None = None,
    ) -> None:
        if mode not in (QuantMode.FLOAT, QuantMode.QAT):
            raise ValueError(f"subnets are scored in FLOAT or QAT, not {mode.value}")
        if finetune_steps < 0 or finetune_batch < 1 or not finetune_lr > 0:
            raise ValueError("finetune_steps must be >= 0, finetune_batch >= 1 and finetune_lr > 0")
        self.supernet, self.data, self.batch_size, self.mode = supernet, data, batch_size, mode
        # the low-bit recipe of the fold and the fine-tuning steps: by default the supernet's own
        self.recipe = recipe if recipe is not None else supernet.lowbit
        self.finetune_steps, self.finetune_batch, self.finetune_lr, self.seed = (
            finetune_steps,
            finetune_batch,
            finetune_lr,
            seed,
        )
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        size = supernet.space.input_size
        train = CocoPoseDataset(data, "train", input_size=size, people_only=True)
        rng = np.random.default_rng(seed)
        picked = sorted(
            rng.choice(len(train.image_ids), size=min(calibration_images, len(train.image_ids)), replace=False).tolist()
        )
        train.image_ids = [train.image_ids[i] for i in picked]
        train_tensors = PreloadedSamples(train).tensors
        self.calibration = model_input(train_tensors["images"], QuantMode.FLOAT).to(self.device)
        # the same images, with their targets, for the few fine-tuning steps
        self.calibration_targets = {k: train_tensors[k].to(self.device) for k in ("heatmaps", "pafs", "mask")}
        val = CocoPoseDataset(data, "val", input_size=size)
        val.image_ids = (
            val.image_ids[val_offset:][:val_images] if val_images is not None else val.image_ids[val_offset:]
        )
        self.val = val
        tensors = PreloadedSamples(val).tensors
        self.val_input = model_input(tensors["images"], QuantMode.FLOAT).to(self.device)
        self.val_targets = {k: tensors[k].to(self.device) for k in ("heatmaps", "pafs", "mask")}
        self.matrices = [
            letterbox_matrix(val.coco.imgs[i]["width"], val.coco.imgs[i]["height"], size) for i in val.image_ids
        ]
        self.decode_config = DecodeConfig.for_input(size)

    def _batches(self, x: torch.Tensor):
        return (x[i : i + self.batch_size] for i in range(0, len(x), self.batch_size))

    def inherited(self, spec: ArchSpec) -> PoseNet:
        """``spec``'s float model with the supernet's weights and BN statistics re-estimated on the
        calibration images: the start of a stand-alone training (the search's last stage)."""
        model = self.supernet.extract(spec).to(self.device)
        recalibrate_batchnorm(model, self._batches(self.calibration))
        return model

    def prepare(self, spec: ArchSpec) -> PoseNet:
        """The stand-alone model that ``score`` measures: extracted, BN recalibrated, folded (QAT), fine-tuned
        for ``finetune_steps`` steps, eval mode."""
        model = self.inherited(spec)
        if self.mode is QuantMode.QAT:
            model.start_qat(self.recipe)
        if self.finetune_steps:
            self._finetune(model)
        return model.eval()

    def _finetune(self, model: PoseNet) -> None:
        """A few steps of training (Adam, the targets, the scorer's arithmetic) on the calibration images.

        Why: a subnet's inherited weights say how good it is *now*; stand-alone training says how good it
        *becomes*. The two part most at low weight bits: at the QAT switch every network with a 2-bit layer
        loses its AP, and stand-alone QAT then recovers some of them and not others. A few steps from the
        inherited weights show which recover (BENCHMARKS.md, "Fidelity"). Deterministic for the scorer's seed."""
        generator = torch.Generator().manual_seed(self.seed)
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=self.finetune_lr)
        model.train()
        for _ in range(self.finetune_steps):
            index = torch.randint(0, len(self.calibration), (self.finetune_batch,), generator=generator).to(self.device)
            batch = {k: v[index] for k, v in self.calibration_targets.items()}
            heatmaps, pafs = model(self.calibration[index])
            loss, _ = pose_loss(heatmaps, pafs, batch, None, 1.0)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    def maps(self, spec: ArchSpec) -> tuple[torch.Tensor, torch.Tensor, float]:
        """(heatmaps, PAFs) of the prepared subnet on the validation images, and their masked L2 loss."""
        model = self.prepare(spec)
        heat, paf = [], []
        with torch.no_grad():
            for x in self._batches(self.val_input):
                h, p = model(x)
                heat.append(h)
                paf.append(p)
        heatmaps, pafs = torch.cat(heat), torch.cat(paf)
        loss, _ = pose_loss(heatmaps, pafs, self.val_targets, None, 1.0)
        return heatmaps, pafs, float(loss)

    def results(self, heatmaps: torch.Tensor, pafs: torch.Tensor) -> list[dict]:
        """COCO keypoint results of the decoded maps (one entry per detected person)."""
        results: list[dict] = []
        hm, pf = heatmaps.float().cpu().numpy(), pafs.float().cpu().numpy()
        for image_id, matrix, h, p in zip(self.val.image_ids, self.matrices, hm, pf):
            results.extend(poses_to_results(decode(h, p, self.decode_config), matrix, image_id))
        return results

    def score(self, spec: ArchSpec, *, ap: bool = True) -> SubnetScore:
        """Extract ``spec``, recalibrate its BN, fold it and measure QAT AP and loss on the validation images.

        ``ap=False`` measures the loss alone (no decoding, no COCOeval): AP and AP50 are then -1."""
        started = time.perf_counter()
        heatmaps, pafs, loss = self.maps(spec)
        fg_loss = float(foreground_loss(heatmaps, pafs, self.val_targets))
        if not ap:
            return SubnetScore(-1.0, -1.0, loss, time.perf_counter() - started, fg_loss)
        metrics = evaluate_results(self.val.coco, self.results(heatmaps, pafs), self.val.image_ids)
        return SubnetScore(metrics.ap, metrics.ap50, loss, time.perf_counter() - started, fg_loss)
