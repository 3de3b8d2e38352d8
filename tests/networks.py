"""Networks with random but realistic weights for tests of the integer paths."""

from __future__ import annotations

import dataclasses

import torch

from posenas.posenet.nets.checkpoint import RunCheckpoint
from posenas.posenet.nets.config import LowBitRecipe
from posenas.posenet.nets.layers import QuantMode
from posenas.posenet.nets.model import PoseNet, build_model
from posenas.space.spec import ArchSpec


def randomise_batchnorm(model: torch.nn.Module, seed: int) -> None:
    """Batch-norm statistics and scales away from their identity defaults, so that folding matters."""
    gen = torch.Generator().manual_seed(seed)
    for layer in model.hardware_layers():
        if layer.bn is not None:
            n = layer.bn.num_features
            layer.bn.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            layer.bn.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            layer.bn.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            layer.bn.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)


def random_model(spec: ArchSpec, seed: int) -> PoseNet:
    torch.manual_seed(seed)
    model = build_model(spec).eval()
    randomise_batchnorm(model, seed)
    return model


def random_checkpoint(
    spec: ArchSpec, seed: int, mode: QuantMode = QuantMode.QAT, recipe: LowBitRecipe | None = None
) -> RunCheckpoint:
    """A run checkpoint with random weights (batch-norm folded for QAT), its low-bit layers made with
    ``recipe`` (None: ai8x v1), which the checkpoint records as training does."""
    model = random_model(spec, seed)
    if recipe is not None:  # folded batch-norm offsets of many weight steps: the 8-bit bias's case
        for layer in model.hardware_layers():
            if layer.bn is not None:
                layer.bn.bias.data.mul_(8.0)
    if mode is QuantMode.QAT:
        model.start_qat(recipe)
    train_config = {} if recipe is None else {"lowbit": dataclasses.asdict(recipe)}
    return RunCheckpoint(spec=spec, mode=mode, epoch=seed, state_dict=model.state_dict(), train_config=train_config)
