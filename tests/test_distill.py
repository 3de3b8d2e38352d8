"""Prepared teachers: the cache equals the live teacher, cached distillation never runs the teacher,
and folders that are not teachers are refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from posenas.posenet.nets.distill import (
    LightweightOpenPoseTeacher,
    PoseNetTeacher,
    TeacherInfo,
    cache_teacher_maps,
    load_prepared_teacher,
    load_teacher,
    write_prepared_teacher,
)
from posenas.posenet.nets.model import build_model
from posenas.posenet.nets.teacher import LightweightOpenPose, TeacherError
from posenas.posenet.nets.train import TrainConfig, Trainer
from posenas.posenet.pose.coco import CocoPoseDataset
from posenas.space.baselines import get_arch


@pytest.fixture(scope="module")
def root(synth_root):
    return synth_root(train=6, val=2, seed=4)


def _lwop_file(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "lwop.pth"
    torch.save({"state_dict": LightweightOpenPose(1).state_dict()}, path)  # the released layout
    return path


def _prepare(root, tmp_path, weights):
    teacher, kind = load_teacher(weights)
    dataset = CocoPoseDataset(root, "train", people_only=True)
    maps, ids = cache_teacher_maps(teacher, dataset, batch_size=4)
    info = TeacherInfo(kind, str(weights), 1, str(root), "train", 128, len(ids))
    return write_prepared_teacher(tmp_path / "T", weights, info, maps, ids), teacher, dataset


def test_lightweight_openpose_cache_matches_the_live_teacher(root, tmp_path):
    torch.set_num_threads(1)
    folder, teacher, dataset = _prepare(root, tmp_path, _lwop_file(tmp_path))
    assert isinstance(teacher, LightweightOpenPoseTeacher)
    prepared = load_prepared_teacher(folder)
    assert prepared.info.kind == "lwopenpose" and prepared.info.images == len(dataset) == 6
    assert prepared.cache.maps.dtype == np.float16 and prepared.cache.maps.shape == (6, 57, 16, 16)
    ids = torch.tensor([dataset.image_ids[3], dataset.image_ids[0]])  # any order, as a shuffled batch
    cached = prepared.cache.lookup(ids, torch.device("cpu"))
    images = torch.from_numpy(np.stack([dataset[3].image, dataset[0].image])).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        live = prepared.teacher(images)
    for c, lv in zip(cached, live):
        assert c.shape == lv.shape and lv.abs().max() > 0
        # float16 keeps 11 significant bits: a relative error below 2^-11 of the largest value.
        assert torch.allclose(c, lv, atol=float(lv.abs().max()) * 2**-10, rtol=0)


class _CountingTeacher(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, images):
        self.calls += 1
        return self.inner(images)


def test_unaugmented_training_reads_the_cache_and_never_runs_the_teacher(root, tmp_path):
    torch.set_num_threads(1)
    torch.manual_seed(1)
    student = build_model(get_arch("tiny-hw")).eval()
    weights = tmp_path / "student.pt"
    from posenas.posenet.nets.checkpoint import RunCheckpoint, save_checkpoint
    from posenas.posenet.nets.layers import QuantMode

    save_checkpoint(RunCheckpoint(get_arch("tiny-hw"), QuantMode.FLOAT, 0, student.state_dict()), weights)
    folder, teacher, _ = _prepare(root, tmp_path, weights)
    assert isinstance(teacher, PoseNetTeacher)
    prepared = load_prepared_teacher(folder)
    counting = _CountingTeacher(prepared.teacher)
    config = TrainConfig(epochs=1, qat_start=None, batch_size=2, val_images=1, augment=False)
    records = Trainer(
        get_arch("tiny-hw"), root, tmp_path / "cached", config, teacher=counting, teacher_cache=prepared.cache
    ).run()
    assert counting.calls == 0 and np.isfinite(records[0].loss)
    # With augmentation the cache cannot be used: the teacher runs on every batch (6 images / 2).
    augmented = TrainConfig(epochs=1, qat_start=None, batch_size=2, val_images=1, augment=True)
    Trainer(
        get_arch("tiny-hw"), root, tmp_path / "live", augmented, teacher=counting, teacher_cache=prepared.cache
    ).run()
    assert counting.calls == 3


def test_bad_teacher_folders_are_refused(root, tmp_path):
    with pytest.raises(TeacherError, match="no teacher.json"):
        load_prepared_teacher(tmp_path)
    (tmp_path / "teacher.json").write_text("{not json")
    with pytest.raises(TeacherError, match="malformed"):
        load_prepared_teacher(tmp_path)
    (tmp_path / "teacher.json").write_text(json.dumps({"kind": "lwopenpose"}))
    with pytest.raises(TeacherError, match="malformed"):
        load_prepared_teacher(tmp_path)
