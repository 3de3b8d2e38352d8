"""The training schedules of the schedule-fidelity benchmark (bench_schedule.py) and the GPU run (bench_gpu.py).

Today's item-7 schedule (``TrainConfig()``: 20 epochs, the last 4 QAT, 2,000 synthetic images) is 1x; 3x
and 10x have that many times its samples (images x epochs), with more images *and* more epochs, and a
fifth of the epochs QAT as at 1x.
"""

from __future__ import annotations

import dataclasses
import fcntl
from pathlib import Path

from posenas.posenet.nets.config import TrainConfig
from posenas.posenet.pose import synth


@dataclasses.dataclass(frozen=True)
class Schedule:
    name: str
    train_images: int
    epochs: int
    qat_epochs: int

    @property
    def samples(self) -> int:
        return self.train_images * self.epochs

    def config(self) -> TrainConfig:
        """The schedule as ``posenas train`` runs it (100 validation images, no teacher, the default recipe)."""
        return TrainConfig(
            epochs=self.epochs, qat_start=TrainConfig.qat_start_for(self.epochs, self.qat_epochs), val_images=100
        )


SCHEDULES = {
    s.name: s for s in (Schedule("1x", 2000, 20, 4), Schedule("3x", 4000, 30, 6), Schedule("10x", 8000, 50, 10))
}
REFERENCE = "10x"  # the schedule the others' orders are compared with


def data_root(folder: Path, schedule: Schedule) -> Path:
    """The schedule's synthetic root (seed 0, 100 validation images), made once under a lock."""
    root = folder / f"synth-seed0-{schedule.train_images}-100"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = root / ".complete"
        if not done.is_file():
            print(f"making {schedule.train_images} + 100 synthetic images -> {root}", flush=True)
            synth.write_coco_root(root, train=schedule.train_images, val=100, seed=0)
            done.write_text("ok\n")
    return root
