"""The teacher: Lightweight OpenPose (Osokin 2018), built to load the released checkpoint as it is.

The module nesting reproduces the released ``state_dict`` key names and shapes exactly
(docs/pose.md, section 7): a MobileNet v1 backbone cut at stride 8 (``model.*``), the CPM
(``cpm.*``), the initial stage and N refinement stages. The network is fully convolutional, so it runs
at the student's 128 x 128 input and gives 16 x 16 maps.

Checkpoints come from the internet: they are read with ``torch.load(weights_only=True)`` (no pickled
code runs) and every key and shape is checked before anything is copied. The released
``checkpoint_iter_370000.pth`` holds three refinement stages; a teacher with fewer keeps the first ones.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from posenas.errors import TeacherError
from posenas.posenet.nets.weights import check_state_dict, read_weights_only
from posenas.posenet.pose.keypoints import NUM_HEATMAPS, NUM_PAFS


def _conv(
    cin: int,
    cout: int,
    kernel: int = 3,
    padding: int = 1,
    *,
    bn: bool = True,
    relu: bool = True,
    bias: bool = True,
    stride: int = 1,
    dilation: int = 1,
) -> nn.Sequential:
    """Conv [+ BN] [+ ReLU] as one Sequential: the indices (.0 conv, .1 BN) are the checkpoint's keys."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, padding, dilation, bias=bias)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _conv_dw(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """Depthwise 3x3 + BN + ReLU, pointwise 1x1 + BN + ReLU (keys .0/.1 and .3/.4)."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride, dilation, dilation=dilation, groups=cin, bias=False),
        nn.BatchNorm2d(cin),
        nn.ReLU(inplace=True),
        nn.Conv2d(cin, cout, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def _conv_dw_no_bn(cin: int, cout: int) -> nn.Sequential:
    """The CPM trunk's depthwise separable block, with ELU and no BN (keys .0 and .2)."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, 1, 1, groups=cin, bias=False),
        nn.ELU(inplace=True),
        nn.Conv2d(cin, cout, 1, bias=False),
        nn.ELU(inplace=True),
    )


def _backbone() -> nn.Sequential:
    """MobileNet v1 to conv5_5 with output stride 8 (conv4_2 keeps stride 1; block 7 is dilated)."""
    blocks: list[nn.Module] = [_conv(3, 32, stride=2, bias=False)]
    plan = [
        (32, 64, 1, 1),
        (64, 128, 2, 1),
        (128, 128, 1, 1),
        (128, 256, 2, 1),
        (256, 256, 1, 1),
        (256, 512, 1, 1),
        (512, 512, 1, 2),
    ] + [(512, 512, 1, 1)] * 4
    blocks += [_conv_dw(cin, cout, stride, dilation) for cin, cout, stride, dilation in plan]
    return nn.Sequential(*blocks)


class Cpm(nn.Module):
    """Channel reduction 512 -> 128 with a residual depthwise trunk."""

    def __init__(self, cin: int = 512, cout: int = 128) -> None:
        super().__init__()
        self.align = _conv(cin, cout, 1, 0, bn=False)
        self.trunk = nn.Sequential(*(_conv_dw_no_bn(cout, cout) for _ in range(3)))
        self.conv = _conv(cout, cout, bn=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        aligned = self.align(x)
        return self.conv(aligned + self.trunk(aligned))


def _head(cin: int, hidden: int, cout: int) -> nn.Sequential:
    return nn.Sequential(_conv(cin, hidden, 1, 0, bn=False), _conv(hidden, cout, 1, 0, bn=False, relu=False))


class InitialStage(nn.Module):
    def __init__(self, channels: int = 128) -> None:
        super().__init__()
        self.trunk = nn.Sequential(*(_conv(channels, channels, bn=False) for _ in range(3)))
        self.heatmaps = _head(channels, 512, NUM_HEATMAPS)
        self.pafs = _head(channels, 512, NUM_PAFS)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = self.trunk(x)
        return [self.heatmaps(features), self.pafs(features)]


class RefinementStageBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.initial = _conv(cin, cout, 1, 0, bn=False)
        self.trunk = nn.Sequential(_conv(cout, cout), _conv(cout, cout, dilation=2, padding=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        initial = self.initial(x)
        return initial + self.trunk(initial)


class RefinementStage(nn.Module):
    def __init__(self, cin: int, channels: int = 128) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            RefinementStageBlock(cin, channels), *(RefinementStageBlock(channels, channels) for _ in range(4))
        )
        self.heatmaps = _head(channels, channels, NUM_HEATMAPS)
        self.pafs = _head(channels, channels, NUM_PAFS)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = self.trunk(x)
        return [self.heatmaps(features), self.pafs(features)]


class LightweightOpenPose(nn.Module):
    """Lightweight OpenPose with ``refinement_stages`` refinement stages (1 is the deployed network).

    ``forward`` takes the reference's input, BGR with (pixel - 128) / 256, and returns the last stage's
    (heatmaps, pafs); ``forward_rgb`` takes posenas's [0, 1] RGB batches.
    """

    def __init__(self, refinement_stages: int = 1, channels: int = 128) -> None:
        super().__init__()
        if refinement_stages < 0:
            raise ValueError("refinement_stages must be >= 0")
        self.model = _backbone()
        self.cpm = Cpm(512, channels)
        self.initial_stage = InitialStage(channels)
        cin = channels + NUM_HEATMAPS + NUM_PAFS
        self.refinement_stages = nn.ModuleList(RefinementStage(cin, channels) for _ in range(refinement_stages))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.cpm(self.model(x))
        heatmaps, pafs = self.initial_stage(features)
        for stage in self.refinement_stages:
            heatmaps, pafs = stage(torch.cat([features, heatmaps, pafs], dim=1))
        return heatmaps, pafs

    def forward_rgb(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3, H, W) RGB in [0, 1] -> the last stage's maps."""
        return self(to_teacher_input(images))


def to_teacher_input(images: torch.Tensor) -> torch.Tensor:
    """RGB [0, 1] -> the reference's normalisation: BGR, (pixel - 128) / 256."""
    return (images.flip(1) * 255.0 - 128.0) / 256.0


def _state_dict_of(checkpoint: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, dict) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise TeacherError(f"{path}: not a Lightweight OpenPose checkpoint (no state_dict of tensors)")
    # Checkpoints saved from DataParallel carry a "module." prefix.
    return {k.removeprefix("module."): v for k, v in checkpoint.items()}


def load_state_checked(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy ``state`` into ``model`` after checking every key and shape; extra keys (e.g. refinement
    stages the model does not have) are ignored, ``num_batches_tracked`` may be absent."""
    expected = model.state_dict()
    check_state_dict(expected, state, source, TeacherError, allow_extra=True)
    model.load_state_dict({k: state[k] for k in expected if k in state}, strict=False)


def load_lightweight_openpose(path: str | os.PathLike, refinement_stages: int = 1) -> LightweightOpenPose:
    """The released checkpoint (or any with its keys) as an eval-mode teacher, loaded without pickle."""
    checkpoint = read_weights_only(path, "teacher checkpoint", TeacherError)
    model = LightweightOpenPose(refinement_stages)
    load_state_checked(model, _state_dict_of(checkpoint, Path(path)), str(path))
    return model.eval()
