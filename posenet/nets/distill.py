"""Teachers for distillation: where they come from, and a per-image cache of their maps.

A *prepared teacher* is a folder (``posenas teacher --out T``) holding

* ``teacher.json``: what the teacher is (a Lightweight OpenPose checkpoint or a posenas run) and which
  data its cache covers (root, split, input size, number of images);
* ``teacher.pt``: its weights (a weights-only copy), so that augmented training can run it live;
* ``maps.npy`` + ``image_ids.npy``: its (heatmaps, PAFs) for every letterboxed, un-augmented image of the
  split, float16, in the order of ``image_ids``.

Training without augmentation sees exactly the letterboxed images the cache was made from, so such runs
(every search trial by default) read the cache and never run the teacher; augmented runs run it live.
Both paths give the same maps for the same image up to float16 rounding (tested).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from posenas.files import atomic_write
from posenas.posenet.nets.checkpoint import load_checkpoint, model_for
from posenas.posenet.nets.config import TrainConfig
from posenas.posenet.nets.layers import QuantMode, quantize_input, to_training_scale
from posenas.posenet.nets.model import PoseNet
from posenas.posenet.nets.teacher import LightweightOpenPose, TeacherError, load_lightweight_openpose
from posenas.posenet.nets.train import Trainer
from posenas.posenet.nets.weights import read_weights_only
from posenas.posenet.pose.coco import CocoPoseDataset
from posenas.posenet.pose.keypoints import NUM_HEATMAPS, NUM_PAFS
from posenas.space.spec import ArchSpec

FORMAT_VERSION = 1
NUM_MAPS = NUM_HEATMAPS + NUM_PAFS

class PoseNetTeacher(torch.nn.Module):
    """A trained posenas network as a teacher (the seeds' second level: student -> tiny), in the
    arithmetic it was saved in (float or QAT); both give maps in the targets' scale."""

    def __init__(self, model: PoseNet) -> None:
        super().__init__()
        if model.mode is QuantMode.SIMULATE:
            raise TeacherError("a teacher runs in float or QAT arithmetic, not simulate")
        self.model = model.eval()

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model(to_training_scale(quantize_input(images)))


class LightweightOpenPoseTeacher(torch.nn.Module):
    def __init__(self, model: LightweightOpenPose) -> None:
        super().__init__()
        self.model = model.eval()

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.forward_rgb(images)


def is_run_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a posenas run checkpoint (it has a ``posenas`` section), read without pickle."""
    raw = read_weights_only(path, "teacher checkpoint", TeacherError)
    return isinstance(raw, dict) and isinstance(raw.get("posenas"), dict)


def load_teacher(path: str | os.PathLike, refinement_stages: int = 1) -> tuple[torch.nn.Module, str]:
    """A teacher from a posenas run checkpoint or a Lightweight OpenPose checkpoint, and its kind."""
    if is_run_checkpoint(path):
        return PoseNetTeacher(model_for(load_checkpoint(path), str(path))), "posenas"
    return LightweightOpenPoseTeacher(load_lightweight_openpose(path, refinement_stages)), "lwopenpose"


@dataclass(frozen=True)
class TeacherInfo:
    """``teacher.json``: what a prepared teacher is and which data its cache covers."""

    kind: str  # "posenas" or "lwopenpose"
    source: str
    refinement_stages: int
    data: str
    split: str
    input_size: int
    images: int
    format: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class TeacherCache:
    """The teacher's maps per image id (float16 on disk, memory-mapped), looked up a batch at a time."""

    def __init__(self, maps: np.ndarray, image_ids: np.ndarray) -> None:
        if maps.ndim != 4 or maps.shape[1] != NUM_MAPS or len(maps) != len(image_ids):
            raise TeacherError(f"teacher cache: maps of shape {maps.shape} do not match {len(image_ids)} images")
        self.maps = maps
        self.row = {int(image_id): row for row, image_id in enumerate(image_ids)}

    def covers(self, image_ids: list[int]) -> bool:
        return all(int(i) in self.row for i in image_ids)

    def lookup(self, image_ids: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The cached (heatmaps, PAFs) of a batch, float32 on ``device``; float16 crosses to the device."""
        rows = [self.row[int(i)] for i in image_ids]
        maps = torch.from_numpy(np.ascontiguousarray(self.maps[rows])).to(device, non_blocking=True).float()
        return maps[:, :NUM_HEATMAPS], maps[:, NUM_HEATMAPS:]


@dataclass
class PreparedTeacher:
    """A ``posenas teacher`` folder, loaded: the live teacher and its cache."""

    root: Path
    info: TeacherInfo
    teacher: torch.nn.Module
    cache: TeacherCache


def prepare_teacher(
    data: str | os.PathLike, out: str | os.PathLike, *, checkpoint: str | os.PathLike | None = None,
    arch: ArchSpec | None = None, epochs: int = 12, train_images: int | None = None, refinement_stages: int = 1,
    input_size: int = 128, device: str | None = None, on_batch: Callable | None = None,
    on_epoch: Callable | None = None, progress: Callable[[int], None] | None = None,
) -> Path:  # fmt: skip
    """Make a prepared-teacher folder ``out``: load ``checkpoint`` (or first train ``arch``, float, on
    ``data`` into ``out/run``), then cache its maps for every training image of ``data``.

    ``on_batch`` / ``on_epoch`` follow the teacher's training (as ``Trainer``'s callbacks), ``progress(n)``
    the caching; the caller decides how to show them."""
    out = Path(out)
    if arch is not None:
        input_size = arch.input_size
        config = TrainConfig(epochs=epochs, qat_start=None, train_images=train_images)
        Trainer(arch, data, out / "run", config, device=device, on_batch=on_batch, on_epoch=on_epoch).run()
        checkpoint = out / "run" / "best.pt"
    elif checkpoint is None:
        raise TeacherError("a teacher needs a checkpoint or an architecture to train")
    teacher, kind = load_teacher(checkpoint, refinement_stages)
    if isinstance(teacher, PoseNetTeacher):  # a posenas network runs at its own input size
        input_size = teacher.model.spec.input_size
    dataset = CocoPoseDataset(data, "train", input_size=input_size, people_only=True)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    maps, image_ids = cache_teacher_maps(teacher, dataset, device, progress=progress)
    info = TeacherInfo(kind=kind, source=str(Path(checkpoint).resolve()), refinement_stages=refinement_stages,
                       data=str(Path(data).resolve()), split="train", input_size=input_size,
                       images=len(image_ids))  # fmt: skip
    return write_prepared_teacher(out, checkpoint, info, maps, image_ids)


def cache_teacher_maps(
    teacher: torch.nn.Module, dataset: CocoPoseDataset, device: torch.device | str = "cpu",
    batch_size: int = 64, progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The teacher's maps for every un-augmented sample of ``dataset`` (float16) and their image ids."""
    if dataset.augmentation is not None:
        raise ValueError("the teacher cache is made from un-augmented images")
    device = torch.device(device)
    teacher = teacher.to(device).eval()
    side = dataset.input_size // dataset.targets.stride
    maps = np.empty((len(dataset), NUM_MAPS, side, side), dtype=np.float16)
    image_ids = np.empty(len(dataset), dtype=np.int64)
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            indices = range(start, min(start + batch_size, len(dataset)))
            images = np.stack([dataset[i].image for i in indices])
            x = torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float() / 255.0
            heatmaps, pafs = teacher(x)
            maps[start : start + len(indices)] = torch.cat([heatmaps, pafs], 1).float().cpu().numpy()
            image_ids[start : start + len(indices)] = [dataset.image_ids[i] for i in indices]
            if progress:
                progress(len(indices))
    return maps, image_ids


def write_prepared_teacher(
    out: str | os.PathLike, weights: str | os.PathLike, info: TeacherInfo, maps: np.ndarray, image_ids: np.ndarray,
) -> Path:  # fmt: skip
    """Write a prepared-teacher folder: a copy of the teacher's checkpoint file ``weights`` and the cache.

    Every file is written beside and renamed, ``teacher.json`` last, so a crash leaves either the old
    folder or a complete new one."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "teacher.pt", lambda p: shutil.copyfile(weights, p))
    atomic_write(out / "maps.npy", lambda p: _save_npy(p, maps))
    atomic_write(out / "image_ids.npy", lambda p: _save_npy(p, image_ids))
    atomic_write(out / "teacher.json", lambda p: p.write_text(json.dumps(info.to_dict(), indent=2) + "\n"))
    return out


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as stream:  # a file object: np.save would append ".npy" to a path
        np.save(stream, array)


def load_prepared_teacher(root: str | os.PathLike) -> PreparedTeacher:
    """A ``posenas teacher`` folder; the weights are read without pickle and checked against the kind."""
    root = Path(root)
    try:
        raw = json.loads((root / "teacher.json").read_text())
        info = TeacherInfo(**raw)
    except FileNotFoundError:
        raise TeacherError(f"{root}: not a prepared teacher (no teacher.json; make one with posenas teacher)") from None
    except (ValueError, TypeError) as exc:
        raise TeacherError(f"{root}/teacher.json: malformed ({exc.__class__.__name__})") from None
    if info.format != FORMAT_VERSION:
        raise TeacherError(f"{root}/teacher.json: format {info.format}, expected {FORMAT_VERSION}")
    teacher = _rebuild(root, info)
    try:
        maps = np.load(root / "maps.npy", mmap_mode="r")
        image_ids = np.load(root / "image_ids.npy")
    except (OSError, ValueError) as exc:
        raise TeacherError(f"{root}: teacher cache unreadable ({exc.__class__.__name__})") from None
    return PreparedTeacher(root, info, teacher, TeacherCache(maps, image_ids))


def _rebuild(root: Path, info: TeacherInfo) -> torch.nn.Module:
    weights = root / "teacher.pt"
    if info.kind == "lwopenpose":
        return LightweightOpenPoseTeacher(load_lightweight_openpose(weights, info.refinement_stages))
    if info.kind == "posenas":
        return PoseNetTeacher(model_for(load_checkpoint(weights), str(weights)))
    raise TeacherError(f"{root}/teacher.json: unknown teacher kind {info.kind!r}")
