"""Scoring subnets: the scorer's QAT AP is posenas's evaluation of the extracted, recalibrated, folded model;
scores are deterministic; calibration makes the BN statistics the subnet's own."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from posenas.errors import SpecOutsideSpace
from posenas.posenet.nets.layers import QuantMode
from posenas.posenet.nets.supernet import SuperNet, recalibrate_batchnorm
from posenas.posenet.nets.supernet_score import SubnetScorer
from posenas.posenet.nets.train import evaluate_model
from posenas.search.settings import load_settings
from posenas.space.baselines import get_arch
from posenas.space.subnets import random_arch


@pytest.fixture(scope="module")
def scorer(synth_root) -> SubnetScorer:
    torch.manual_seed(0)
    net = SuperNet(load_settings("max78000").space)
    return SubnetScorer(net, synth_root(16, 6, 1), calibration_images=12, val_images=6, batch_size=4)


def test_score_is_the_evaluation_of_the_prepared_model(scorer: SubnetScorer) -> None:
    spec = get_arch("tiny-hw")
    score = scorer.score(spec)
    model = scorer.prepare(spec)
    assert model.mode is QuantMode.QAT
    metrics = evaluate_model(model, scorer.val)
    assert score.ap == metrics.ap and score.ap50 == metrics.ap50
    assert score.val_loss > 0 and np.isfinite(score.val_loss) and score.seconds > 0
    assert scorer.score(spec).val_loss == score.val_loss  # deterministic


def test_recalibration_gives_each_subnet_its_own_statistics(scorer: SubnetScorer) -> None:
    rng = np.random.default_rng(0)
    spec = random_arch(scorer.supernet.space, rng)
    model = scorer.supernet.extract(spec)
    first = model.hardware_layers()[0]
    recalibrate_batchnorm(model, [scorer.calibration])
    with torch.no_grad():  # the first layer's BN statistics are now those of its conv output on these images
        x = scorer.calibration
        if spec.fold > 1:
            x = torch.nn.functional.pixel_unshuffle(x, spec.fold)
        y = first.op(first.pool(x) if first.pool is not None else x)
    assert torch.allclose(
        first.bn.running_mean, y.mean((0, 2, 3)), atol=1e-4
    )  # float32 sums over batches vs one mean: ~3e-5 apart
    assert torch.allclose(first.bn.running_var, y.var((0, 2, 3), unbiased=True), rtol=1e-3, atol=1e-6)
    assert first.bn.momentum == 0.05  # restored after calibration


def test_spec_outside_the_space_is_refused(scorer: SubnetScorer) -> None:
    with pytest.raises(SpecOutsideSpace):
        scorer.score(dataclasses.replace(get_arch("tiny-hw"), input_size=96))


def test_finetuning_trains_the_extracted_subnet_deterministically_and_leaves_the_supernet_alone(scorer) -> None:
    spec = get_arch("tiny-hw")
    tuned = SubnetScorer(
        scorer.supernet,
        scorer.data,
        calibration_images=12,
        val_images=6,
        batch_size=4,
        finetune_steps=5,
        finetune_batch=4,
        finetune_lr=1e-2,
    )
    before = {k: v.clone() for k, v in scorer.supernet.state_dict().items()}
    inherited, trained = scorer.prepare(spec), tuned.prepare(spec)
    changed = [
        k
        for k, v in trained.state_dict().items()
        if v.dtype.is_floating_point and not torch.equal(v, inherited.state_dict()[k])
    ]
    assert any(k.endswith("op.weight") for k in changed)  # the steps trained the weights
    assert all(torch.equal(v, scorer.supernet.state_dict()[k]) for k, v in before.items())  # the supernet untouched
    first, second = tuned.score(spec, ap=False), tuned.score(spec, ap=False)
    assert first.val_loss == second.val_loss and first.fg_loss == second.fg_loss  # deterministic
    # Five steps at a high rate on the calibration images lower the loss on those same images.
    with torch.no_grad():
        targets = tuned.calibration_targets
        losses = [float(((m(tuned.calibration)[0] - targets["heatmaps"]) ** 2).mean()) for m in (inherited, trained)]
    assert losses[1] < losses[0]
    with pytest.raises(ValueError, match="finetune_steps"):
        SubnetScorer(scorer.supernet, scorer.data, calibration_images=12, val_images=6, finetune_steps=-1)
