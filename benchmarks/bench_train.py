"""Training throughput: posenas's trainer against a plain PyTorch loop over the same network, one run.

    python benchmarks/bench_train.py [--arch tiny-hw --arch student-hw] [--images 256] [--batch-size 16]
                                     [--threads 2] [--device cpu|cuda]

For each architecture, three figures in images/s, all on the same preloaded synthetic batches:
- plain: a textbook loop (float input tensors, forward, MSE to the targets, backward, Adam step) over
  the network built by posenas in float mode; the reference;
- posenas float: one float epoch of ``posenet.train.Trainer`` (uint8 -> ai8x input quantization,
  masked loss, lr schedule, the whole step as trained);
- posenas QAT: one QAT epoch of the same trainer (BN folded, fake-quantized weights and activations).
Validation is not timed (it is the same COCOeval in every case). Goals (issue 4): float >= 0.9x plain;
QAT cost <= 1.5x float cost (QAT images/s >= float images/s / 1.5).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from posenas.posenet.nets.model import build_model
from posenas.posenet.nets.train import PreloadedSamples, TrainConfig, Trainer
from posenas.posenet.pose import synth
from posenas.posenet.pose.coco import CocoPoseDataset
from posenas.space.baselines import get_arch


def plain_loop(arch: str, samples: PreloadedSamples, batch_size: int, device: torch.device) -> float:
    """Images/s of one epoch of a plain float loop over the posenas network, timed from a cold start as
    the trainer's first epoch is."""
    torch.manual_seed(0)
    model = build_model(get_arch(arch)).to(device).train()
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = []
    for batch in samples.batches(batch_size, torch.Generator().manual_seed(0)):
        x = batch["images"].permute(0, 3, 1, 2).float().div(128.0).sub(1.0)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        batches.append((x.to(device), batch["heatmaps"].to(device), batch["pafs"].to(device)))
    _sync(device)
    seen, started = 0, time.perf_counter()
    for x, heatmaps, pafs in batches:
        out_h, out_p = model(x)
        loss = F.mse_loss(out_h, heatmaps) + F.mse_loss(out_p, pafs)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(x)
    _sync(device)
    return seen / (time.perf_counter() - started)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def trainer_rates(arch: str, root: Path, batch_size: int, device: torch.device, out: Path) -> tuple[float, float]:
    """Images/s of the posenas trainer's float epoch and QAT epoch (as its epoch records time them)."""
    config = TrainConfig(epochs=2, qat_start=1, batch_size=batch_size, augment=False, val_images=1, seed=0)
    records = Trainer(get_arch(arch), root, out, config, device=device).run()
    return records[0].images_per_s, records[1].images_per_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", action="append", help="architectures (default tiny-hw and student-hw)")
    parser.add_argument("--images", type=int, default=256, help="training images per epoch (default 256)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2, as CI)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    archs = args.arch or ["tiny-hw", "student-hw"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "synth"
        synth.write_coco_root(root, train=args.images, val=1, seed=3)
        samples = PreloadedSamples(CocoPoseDataset(root, "train", people_only=True))
        name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {args.threads} threads"
        print(f"device: {name}; {len(samples)} images per epoch, batch {args.batch_size}")
        print(f"{'arch':<12}{'plain img/s':>12}{'float img/s':>12}{'float/plain':>12}{'QAT img/s':>11}{'QAT cost':>10}")
        for arch in archs:
            plain = plain_loop(arch, samples, args.batch_size, device)
            float_rate, qat_rate = trainer_rates(arch, root, args.batch_size, device, Path(tmp) / arch)
            print(
                f"{arch:<12}{plain:>12.1f}{float_rate:>12.1f}{float_rate / plain:>11.2f}x"
                f"{qat_rate:>11.1f}{float_rate / qat_rate:>9.2f}x"
            )


if __name__ == "__main__":
    main()
