"""Data-path speed on one core: synthetic images/s, targets/s, loader samples/s, decode + COCOeval per image.

    python benchmarks/bench_data.py [--images 300] [--coco ../shared/data/coco_sample]

Each rate comes with a reference measured in the same run on the same core, so the ratios say more
than the absolute numbers on a machine of unknown speed:
- synthetic images/s against decoding the same JPEGs (cv2.imdecode): what reading them back costs;
- loader samples/s (JPEG decode + warp + targets) against one training step of the tiny-hw student
  per sample (forward + backward, float, CPU): the data pipeline must outrun training.
Goals (issue 3): >= 200 synthetic images/s on one core; loader/training ratio > 1.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2
import numpy as np
import torch

from posenas.posenet.nets.model import build_model
from posenas.posenet.pose import synth
from posenas.posenet.pose.coco import CocoPoseDataset
from posenas.posenet.pose.decode import decode
from posenas.posenet.pose.evaluate import evaluate_results, oracle_results, poses_to_results
from posenas.posenet.pose.targets import heatmap_targets, paf_targets, render_targets
from posenas.space.baselines import get_arch

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco_sample"


def best_of(fn, repeats: int = 3) -> float:
    """The fastest of ``repeats`` wall-clock runs of ``fn`` (seconds): the least disturbed one."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_synth(images: int, folder: Path) -> dict[str, float]:
    seconds = best_of(lambda: synth.write_coco_root(folder, train=images, val=0, seed=1), repeats=2)
    files = sorted((folder / "train2017").glob("*.jpg"))
    blobs = [np.fromfile(str(f), dtype=np.uint8) for f in files]
    decode_seconds = best_of(lambda: [cv2.imdecode(b, cv2.IMREAD_COLOR) for b in blobs])
    return {"synth_images_per_s": images / seconds, "jpeg_decodes_per_s": len(blobs) / decode_seconds}


def bench_targets(dataset: CocoPoseDataset, repeats: int = 200) -> float:
    people = [dataset.letterboxed_people(image_id)[1] for image_id in dataset.image_ids]
    seconds = best_of(lambda: [render_targets(p, dataset.input_size) for _ in range(repeats) for p in people])
    return repeats * len(people) / seconds


def bench_loader_vs_training(dataset: CocoPoseDataset, batch: int = 16) -> dict[str, float]:
    samples = best_of(lambda: [dataset[i] for i in range(len(dataset))])
    model = build_model(get_arch("tiny-hw"))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(batch, 3, dataset.input_size, dataset.input_size)

    def step() -> None:
        heatmaps, pafs = model(x)
        loss = heatmaps.square().mean() + pafs.square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()
    train = best_of(step)
    return {"loader_samples_per_s": len(dataset) / samples, "train_samples_per_s": batch / train}


def bench_decode_eval(dataset: CocoPoseDataset) -> dict[str, float]:
    maps = []
    for image_id in dataset.image_ids:
        matrix, body = dataset.letterboxed_people(image_id)
        maps.append(
            (image_id, matrix, heatmap_targets(body, dataset.input_size), paf_targets(body, dataset.input_size))
        )
    results: list[dict] = []

    def decode_all() -> None:
        results.clear()
        for image_id, matrix, hm, paf in maps:
            results.extend(poses_to_results(decode(hm, paf), matrix, image_id))

    decode_seconds = best_of(decode_all)
    eval_seconds = best_of(lambda: evaluate_results(dataset.coco, results, dataset.image_ids))
    n = len(dataset)
    return {"decode_ms_per_image": 1e3 * decode_seconds / n, "cocoeval_ms_per_image": 1e3 * eval_seconds / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300, help="synthetic images to write")
    parser.add_argument("--coco", default=str(SAMPLE), help="a real COCO root for the loader and decoder")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "synth"
        rates = bench_synth(args.images, folder)
        print(f"synthetic people      {rates['synth_images_per_s']:8.1f} images/s  (goal >= 200)")
        print(
            f"  reference: JPEG decode of the same files {rates['jpeg_decodes_per_s']:.1f}/s; "
            f"ratio {rates['synth_images_per_s'] / rates['jpeg_decodes_per_s']:.3f}"
        )
        synth_val = CocoPoseDataset(folder, "train", limit=100)
        for name, dataset in (("coco", CocoPoseDataset(args.coco, "val")), ("synth", synth_val)):
            print(f"[{name}: {len(dataset)} images]")
            print(f"  targets             {bench_targets(dataset):8.1f} images/s (19 heatmaps + 38 PAFs + mask)")
            speeds = bench_loader_vs_training(dataset)
            ratio = speeds["loader_samples_per_s"] / speeds["train_samples_per_s"]
            print(f"  loader              {speeds['loader_samples_per_s']:8.1f} samples/s (decode + warp + targets)")
            print(
                f"  reference: tiny-hw training step {speeds['train_samples_per_s']:.1f} samples/s; "
                f"loader/training ratio {ratio:.1f} (goal > 1)"
            )
            timing = bench_decode_eval(dataset)
            print(f"  decode              {timing['decode_ms_per_image']:8.2f} ms/image (oracle maps)")
            print(f"  COCOeval            {timing['cocoeval_ms_per_image']:8.2f} ms/image")
            oracle = evaluate_results(dataset.coco, oracle_results(dataset), dataset.image_ids)
            print(f"  oracle AP           {oracle.ap:8.3f}")


if __name__ == "__main__":
    main()
