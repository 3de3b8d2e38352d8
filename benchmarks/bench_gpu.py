"""One GPU run, prepared: throughput (float32 against bf16), peak memory, AP at the 10x schedule, bit-exactness.

    bash benchmarks/gpu.sh                       # on a machine with one CUDA GPU, after the README's install
    python benchmarks/bench_gpu.py --device cpu --tiny --out /tmp/g --results /tmp/g/gpu.json   # the CPU check

Users train on a GPU; the trainer's bf16 autocast and channels_last path is meant for it. Within
``--minutes`` (8) this measures, for tiny-hw and student-hw-mixed:

1. **Throughput**: one float epoch and one QAT epoch of posenas's trainer on the first 1,024 training
   images, with ``amp`` off (float32) and on (bf16 autocast in the float phase; QAT always runs in float32,
   its fake quantization needs the exact rounding), in images/s, and the peak GPU memory of each.
2. **AP at the 10x schedule** of ``bench_schedule.py`` (``schedules.py``) (8,000 synthetic images, 50
   epochs, the last 10 QAT; the same images, seed 0), amp on, each network paced to its share of the time
   left: when the GPU cannot do the whole schedule in it, the epochs are shortened (the trainer's deadline)
   and the JSON says how many images per epoch it trained, so a cut is never mistaken for the schedule.
3. **Bit-exactness after GPU training**: each trained network's best checkpoint, loaded on the CPU, gives
   the same chip accumulators in the integer simulation as its QAT forward pass, value for value, on 8
   validation images (the property the C export is checked against).

Results go to ``--results`` (``benchmarks/results/gpu.json``) with the device's name. ``--tiny`` shrinks
everything (32 images, 2 epochs, 8 validation images) so that the script itself is tested on a CPU
(tests/test_gpu_bench.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from posenas.files import atomic_write_text
from posenas.posenet.nets.checkpoint import load_checkpoint, model_for
from posenas.posenet.nets.config import TrainConfig
from posenas.posenet.nets.train import Trainer, _collate, best_aps, model_input
from posenas.posenet.pose import synth
from posenas.posenet.pose.coco import CocoPoseDataset
from posenas.space.baselines import get_arch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from schedules import SCHEDULES, Schedule

NETWORKS = ("tiny-hw", "student-hw-mixed")
THROUGHPUT_IMAGES = 1024
CHECK_IMAGES = 8
RESERVE_S = 45.0  # kept back from the 10x trainings for the bit-exactness check and the JSON
TINY = Schedule("tiny", 32, 2, 1)  # --tiny: a check of the script on a CPU
TINY_VAL_IMAGES = 8


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_memory(device: torch.device) -> int | None:
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def throughput(net: str, root: Path, images: int, amp: bool, device: torch.device, out: Path) -> dict:
    """Images/s of one float and one QAT epoch of the trainer, and its peak GPU memory."""
    reset_peak(device)
    config = TrainConfig(epochs=2, qat_start=1, val_images=2, train_images=images, amp=amp, seed=0)
    records = Trainer(get_arch(net), root, out, config, device=str(device)).run()
    sync(device)
    return {
        "net": net,
        "amp": amp,
        "images": images,
        "float_images_per_s": records[0].images_per_s,
        "qat_images_per_s": records[1].images_per_s,
        "peak_memory_bytes": peak_memory(device),
    }


def train_schedule(
    net: str, root: Path, schedule: Schedule, seconds: float, device: torch.device, out: Path, val_images: int = 100
) -> dict:
    """``net`` at ``schedule`` (amp on), paced to end within ``seconds``."""
    reset_peak(device)
    config = dataclasses.replace(schedule.config(), amp=True, val_images=val_images)
    started = time.monotonic()
    Trainer(get_arch(net), root, out, config, device=str(device), deadline=started + seconds).run()
    sync(device)
    history = load_checkpoint(out / "last.pt").history
    qat_ap, float_ap = best_aps(history)
    full = (
        min(schedule.train_images, len(CocoPoseDataset(root, "train", people_only=True)))
        // config.batch_size
        * config.batch_size
    )
    seen = [int(e.get("images") or full) for e in history]
    return {
        "net": net,
        "schedule": schedule.name,
        "qat_ap": qat_ap,
        "float_ap": float_ap,
        "seconds": time.monotonic() - started,
        "share_s": seconds,
        "epochs": len(history),
        "images_per_epoch": sum(seen) / max(1, len(seen)),
        "full_epoch_images": full,
        "whole_schedule": all(s >= full for s in seen),
        "peak_memory_bytes": peak_memory(device),
    }


def simulate_matches_qat(checkpoint: Path, root: Path, images: int = CHECK_IMAGES) -> dict:
    """The checkpoint's integer simulation against its QAT forward pass on the CPU, on validation images."""
    model = model_for(load_checkpoint(checkpoint)).cpu().eval()
    dataset = CocoPoseDataset(root, "val", input_size=model.spec.input_size)
    batch = _collate([dataset[i] for i in range(min(images, len(dataset)))])
    x_int = model_input(batch["images"], model.mode)  # QAT: x_int / 128
    with torch.no_grad():
        qat = model(x_int)
        model.to_simulate()
        sim = model(model_input(batch["images"], model.mode))
    layers = model.output_layers()
    exact = all(
        torch.equal(s, q.double() * 128 * 2 ** (layer.target_bits - 1)) for q, s, layer in zip(qat, sim, layers)
    )
    nonzero = all(bool(s.abs().max() > 0) for s in sim)
    return {"bit_exact": exact and nonzero, "images": len(batch["images"]), "outputs_nonzero": nonzero}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (with --tiny: the script's own check)")
    parser.add_argument("--out", type=Path, help="scratch folder for data and runs (default: a temporary one)")
    parser.add_argument("--results", type=Path, help="write the figures here (benchmarks/results/gpu.json)")
    parser.add_argument("--minutes", type=float, default=8.0, help="the whole run's time (default 8)")
    parser.add_argument(
        "--tiny", action="store_true", help="32 images, 2 epochs: a check of the script, not a measurement"
    )
    args = parser.parse_args()
    began = time.monotonic()
    deadline = began + args.minutes * 60
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(
            "bench_gpu: no CUDA GPU here (torch.cuda.is_available() is False); "
            "on a CPU run it with --device cpu --tiny",
            file=sys.stderr,
        )
        return 2
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    schedule = TINY if args.tiny else SCHEDULES["10x"]
    thr_images = 16 if args.tiny else THROUGHPUT_IMAGES
    with tempfile.TemporaryDirectory() as scratch:
        out = args.out or Path(scratch)
        root = out / f"synth-seed0-{schedule.train_images}-100"
        if not (root / "annotations" / "person_keypoints_val2017.json").is_file():
            print(f"making {schedule.train_images} + 100 synthetic images -> {root}", flush=True)
            synth.write_coco_root(root, train=schedule.train_images, val=100, seed=0)
        print(f"device: {device_name(device)}; data ready in {time.monotonic() - began:.0f} s", flush=True)
        rates = []
        for net in NETWORKS:
            for amp in (False, True):
                row = throughput(net, root, thr_images, amp, device, out / "throughput" / f"{net}-amp{int(amp)}")
                rates.append(row)
                peak = "-" if row["peak_memory_bytes"] is None else f"{row['peak_memory_bytes'] / 2**20:.0f} MiB"
                print(
                    f"{net:18} {'bf16' if amp else 'fp32'}: float {row['float_images_per_s']:8.1f} img/s, "
                    f"QAT {row['qat_images_per_s']:8.1f} img/s, peak GPU memory {peak}",
                    flush=True,
                )
        trained = []
        for index, net in enumerate(NETWORKS):
            share = (deadline - time.monotonic() - RESERVE_S) / (len(NETWORKS) - index)
            run = out / "schedule" / net
            row = train_schedule(
                net, root, schedule, max(1.0, share), device, run, TINY_VAL_IMAGES if args.tiny else 100
            )
            row |= simulate_matches_qat(run / "last.pt", root)  # the last epoch is QAT
            trained.append(row)
            print(
                f"{net:18} {schedule.name}: QAT AP {row['qat_ap']:.4f} (float {row['float_ap']:.4f}) "
                f"in {row['seconds']:.0f} s, "
                f"{row['images_per_epoch']:.0f} of {row['full_epoch_images']} images per epoch; simulate bit-exact: "
                f"{row['bit_exact']}",
                flush=True,
            )
    result = {
        "device": device_name(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "tiny": args.tiny,
        "schedule": dataclasses.asdict(schedule) | {"samples": schedule.samples},
        "throughput": rates,
        "trained": trained,
        "wall_s": time.monotonic() - began,
        "minutes": args.minutes,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    if args.results:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.results, json.dumps(result, indent=1) + "\n")
    print(f"done in {result['wall_s']:.0f} s" + (f"; {args.results}" if args.results else ""))
    return 0 if all(r["bit_exact"] for r in trained) else 1


if __name__ == "__main__":
    sys.exit(main())
