"""The grid decoder's C (pose_grid.c, host build) against its Python twin on a trained network's maps.

    python benchmarks/bench_grid_agreement.py --checkpoint RUN/best.pt --data ROOT [--limit 200] [--mode qat]

For every val image: the network's maps (its own arithmetic, as ``posenas eval``), decoded by Python
(``DecodeConfig(decoder="grid")``) and by the C host tool built twice: with the microcontroller's static limits
(16 peaks per keypoint, 20 people) and with raised ones. Prints how many images give the same people with
bit-identical keypoints, and how many exceed the microcontroller's limits.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

from posenas.posenet.export.m4 import parse_poses
from posenas.posenet.nets.checkpoint import load_checkpoint, model_for
from posenas.posenet.nets.config import QuantMode
from posenas.posenet.nets.train import predictor_for
from posenas.posenet.pose.coco import CocoPoseDataset
from posenas.posenet.pose.decode import DecodeConfig, decode
from posenas.posenet.pose.evaluate import _letterboxed
from posenas.posenet.pose.transforms import warp_image

CSRC = Path(__file__).resolve().parents[1] / "posenet" / "export" / "csrc"
RAISED = ["-DPG_MAX_CANDIDATES=256", "-DPG_MAX_PEAKS_PER_KEYPOINT=256", "-DPG_MAX_PEOPLE=2048"]


def same(a, b) -> bool:
    return len(a) == len(b) and all(
        x.count == y.count and np.array_equal(x.keypoints, y.keypoints) for x, y in zip(a, b)
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--mode", choices=[m.value for m in QuantMode], default="qat")
    args = parser.parse_args()
    checkpoint = load_checkpoint(args.checkpoint)
    model = model_for(checkpoint, args.checkpoint)
    if QuantMode(args.mode) is not QuantMode.FLOAT and model.mode is QuantMode.FLOAT:
        model.start_qat()
    if QuantMode(args.mode) is QuantMode.SIMULATE:
        model.to_simulate()
    model.eval()
    predict = predictor_for(model, torch.device("cpu"))
    dataset = CocoPoseDataset(args.data, "val", input_size=checkpoint.spec.input_size, limit=args.limit)
    config = DecodeConfig.for_input(checkpoint.spec.input_size, decoder="grid")
    counts = {"images": 0, "with people": 0, "people": 0, "same (chip limits)": 0, "same (raised limits)": 0}
    with tempfile.TemporaryDirectory() as tmp:
        tools = {}
        for name, extra in {"chip": [], "raised": RAISED}.items():
            tools[name] = Path(tmp) / name
            subprocess.run(
                [
                    "gcc",
                    "-std=c99",
                    "-O2",
                    "-ffp-contract=off",
                    *extra,
                    str(CSRC / "pose_grid.c"),
                    str(CSRC / "pose_decode.c"),
                    str(CSRC / "pose_tool.c"),
                    "-lm",
                    "-o",
                    str(tools[name]),
                ],
                check=True,
            )
        maps_file = Path(tmp) / "maps.bin"
        for image_id, matrix in _letterboxed(dataset):
            image = warp_image(dataset.load_image(image_id), matrix, dataset.input_size)
            heatmaps, pafs = (m[0] for m in predict(image[None]))
            expected = decode(heatmaps, pafs, config)
            np.concatenate([heatmaps, pafs]).astype(np.float32).tofile(maps_file)
            h, w = heatmaps.shape[1:]
            found = {
                name: parse_poses(
                    subprocess.run(
                        [str(tool), "-d", "grid", "-n", "1000", str(h), str(w), str(maps_file)],
                        capture_output=True,
                        text=True,
                        check=True,
                    ).stdout
                )
                for name, tool in tools.items()
            }
            counts["images"] += 1
            counts["with people"] += bool(expected)
            counts["people"] += len(expected)
            counts["same (chip limits)"] += same(found["chip"], expected)
            counts["same (raised limits)"] += same(found["raised"], expected)
    print(
        f"{args.checkpoint} ({checkpoint.spec.name}, {args.mode}) on {args.data} val: "
        + ", ".join(f"{k} {v}" for k, v in counts.items())
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
