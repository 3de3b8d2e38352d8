"""Training: ai8x-style checkpoints, QAT switch-over, resume after a kill, simulate == QAT, the loss."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from posenas.errors import UsageError
from posenas.posenet.nets.checkpoint import CheckpointError, load_checkpoint, model_for
from posenas.posenet.nets.layers import QuantMode
from posenas.posenet.nets.model import build_model
from posenas.posenet.nets.train import PreloadedSamples, TrainConfig, Trainer, foreground_loss, pose_loss, predictor_for
from posenas.posenet.pose.coco import CocoPoseDataset
from posenas.posenet.pose.transforms import Augmentation
from posenas.space.baselines import get_arch

CONFIG = TrainConfig(epochs=2, qat_start=1, batch_size=4, val_images=3, augment=True, seed=5)


@pytest.fixture(scope="module")
def root(synth_root):
    return synth_root(train=8, val=3, seed=2)


class _Killed(Exception):
    pass


def _kill_after_first_epoch(record):
    raise _Killed()


def test_checkpoints_qat_and_resume_after_a_kill(root, tmp_path):
    torch.set_num_threads(1)
    spec = get_arch("tiny-hw")
    whole = Trainer(spec, root, tmp_path / "whole", CONFIG).run()
    assert [(r.epoch, r.mode) for r in whole] == [(0, "float"), (1, "qat")]
    assert all(r.images_per_s > 0 and np.isfinite(r.loss) for r in whole)

    # ai8x-training's checkpoint dict, loadable without pickle, in QAT form after the switch.
    raw = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)
    assert {"epoch", "state_dict", "arch", "optimizer_state_dict", "optimizer_type", "extras"} <= set(raw)
    assert raw["epoch"] == 1 and raw["arch"] == "tiny-hw" and "best_mAP" in raw["extras"]
    keys = list(raw["state_dict"])
    assert keys[0] == "conv1.output_shift" or keys[0].startswith("conv1.")
    assert "conv1.op.weight" in keys and not any(".bn." in k for k in keys)  # BN folded at QAT start
    assert load_checkpoint(tmp_path / "whole" / "last.pt").mode is QuantMode.QAT
    assert (tmp_path / "whole" / "best.pt").is_file()

    # Killed after epoch 0, the same command resumes at epoch 1 and ends where the whole run ended.
    with pytest.raises(_Killed):
        Trainer(spec, root, tmp_path / "killed", CONFIG, on_epoch=_kill_after_first_epoch).run()
    assert load_checkpoint(tmp_path / "killed" / "last.pt").epoch == 0
    resumed = Trainer(spec, root, tmp_path / "killed", CONFIG).run()
    assert [r.epoch for r in resumed] == [1]
    a = load_checkpoint(tmp_path / "whole" / "last.pt").state_dict
    b = load_checkpoint(tmp_path / "killed" / "last.pt").state_dict
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)

    # Another architecture or schedule in the same folder is refused, not silently mixed.
    with pytest.raises(CheckpointError, match="holds another architecture"):
        Trainer(get_arch("student-hw"), root, tmp_path / "whole", CONFIG).run()
    with pytest.raises(CheckpointError, match="other settings"):
        Trainer(spec, root, tmp_path / "whole", TrainConfig(epochs=3, qat_start=1, batch_size=4)).run()


def test_simulate_maps_equal_qat_maps(root, tmp_path):
    model = model_for(load_checkpoint(_trained(root, tmp_path)))
    assert model.mode is QuantMode.QAT
    images = CocoPoseDataset(root, "val")[0].image[None]
    qat = predictor_for(model.eval(), torch.device("cpu"))(images)
    simulated = copy.deepcopy(model)
    simulated.to_simulate()
    sim = predictor_for(simulated, torch.device("cpu"))(images)
    for q, s in zip(qat, sim):
        assert np.array_equal(q, s) and np.abs(q).max() > 0


def _trained(root, tmp_path):
    Trainer(
        get_arch("tiny-hw"), root, tmp_path / "run", TrainConfig(epochs=1, qat_start=0, batch_size=4, val_images=1)
    ).run()
    return tmp_path / "run" / "last.pt"


def test_loss_masks_and_mixes():
    shape_h, shape_p = (2, 19, 16, 16), (2, 38, 16, 16)
    batch = {"heatmaps": torch.zeros(shape_h), "pafs": torch.zeros(shape_p), "mask": torch.ones(2, 16, 16)}
    heatmaps, pafs = torch.ones(shape_h), torch.zeros(shape_p)
    loss, parts = pose_loss(heatmaps, pafs, batch, None, 0.3)
    assert (
        float(loss) == pytest.approx(1.0) and set(parts) == {"target"} and float(parts["target"]) == pytest.approx(1.0)
    )
    batch["mask"][0] = 0  # the first image fully masked: half the cells count
    assert float(pose_loss(heatmaps, pafs, batch, None, 0.3)[0]) == pytest.approx(0.5)
    teacher = (torch.ones(shape_h), torch.zeros(shape_p))  # the student matches the teacher exactly
    loss, parts = pose_loss(heatmaps, pafs, batch, teacher, 0.3)
    assert float(loss) == pytest.approx(0.3 * 0.5) and float(parts["distill"]) == 0.0


def test_foreground_loss_weighs_only_where_people_are(root):
    targets = PreloadedSamples(CocoPoseDataset(root, "val", input_size=128)).tensors
    heatmaps, pafs = targets["heatmaps"].clone(), targets["pafs"].clone()
    assert float(foreground_loss(heatmaps, pafs, targets)) == 0.0
    # Noise on the background cells only: the all-cells loss grows, the foreground loss stays 0.
    background = (targets["heatmaps"][:, :18] <= 0.05).float()
    noisy = heatmaps.clone()
    noisy[:, :18] += 0.3 * background
    assert float(pose_loss(noisy, pafs, targets, None, 1.0)[0]) > 0.01
    assert float(foreground_loss(noisy, pafs, targets)) == 0.0
    # Maps that paint nothing: tiny by the all-cells loss (people cover few cells), large by the foreground's.
    blank_h, blank_p = torch.zeros_like(heatmaps), torch.zeros_like(pafs)
    blank_h[:, 18] = targets["heatmaps"][:, 18]  # the background channel right
    everywhere, foreground = (
        float(pose_loss(blank_h, blank_p, targets, None, 1.0)[0]),
        float(foreground_loss(blank_h, blank_p, targets)),
    )
    assert foreground > 10 * everywhere > 0
    # Each part is averaged over its own cells: PAFs wrong everywhere they are set cost exactly their mean square.
    paf_cells = targets["pafs"] != 0
    expected = float((targets["pafs"][paf_cells] ** 2).mean())
    assert float(foreground_loss(heatmaps, torch.zeros_like(pafs), targets)) == pytest.approx(expected, rel=1e-5)


def test_bad_configs_are_refused():
    with pytest.raises(UsageError, match="qat_start"):
        TrainConfig(epochs=3, qat_start=3)
    with pytest.raises(UsageError, match="alpha"):
        TrainConfig(alpha=1.5)


def test_preloaded_samples_are_the_datasets_samples(root):
    from posenas.posenet.nets.train import PreloadedSamples

    dataset = CocoPoseDataset(root, "train", people_only=True)
    preloaded = PreloadedSamples(dataset)
    assert len(preloaded) == len(dataset) == 8 and PreloadedSamples.fits(dataset)
    sample = dataset[5]
    assert np.array_equal(preloaded.tensors["images"][5].numpy(), sample.image)
    assert np.array_equal(preloaded.tensors["pafs"][5].numpy(), sample.pafs)
    assert int(preloaded.tensors["image_ids"][5]) == sample.image_id
    batches = list(preloaded.batches(3, torch.Generator().manual_seed(0)))
    ids = torch.cat([b["image_ids"] for b in batches]).tolist()
    # Two full batches of 3 (the partial one dropped, as the loader does), no image twice.
    assert [len(b["images"]) for b in batches] == [3, 3] and len(set(ids)) == 6
    with pytest.raises(ValueError, match="un-augmented"):
        PreloadedSamples(CocoPoseDataset(root, "train", augmentation=Augmentation()))


@pytest.mark.parametrize("bits", [(4, 2), (8, 1)])
def test_simulate_maps_equal_qat_maps_for_narrow_output_heads(bits):
    # A wide head's accumulator is 128 * 2^(bits-1) times its QAT map: the scale depends on each head's bits.
    base = get_arch("tiny-hw")
    heads = tuple(dataclasses.replace(h, out_bits=b) for h, b in zip(base.heads, bits))
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(base, heads=heads)).eval()
    model.start_qat()
    images = np.random.default_rng(0).integers(0, 256, size=(1, 128, 128, 3), dtype=np.uint8)
    qat = predictor_for(model, torch.device("cpu"))(images)
    model.to_simulate()
    sim = predictor_for(model, torch.device("cpu"))(images)
    for q, s in zip(qat, sim):
        assert np.array_equal(q, s) and np.abs(q).max() > 0
