"""Oracle AP (targets from the ground truth, decoded, COCOeval) under different target and decoder choices.

    python benchmarks/bench_oracle.py --data ../shared/data/coco_sample --data /tmp/synth-default

For each root (val split, input 128 unless --input-size): AP for heatmap sigma 2.43 (Lightweight
OpenPose's 7 px at 368 scaled to 128) and 3..8 px, and AP with the decoder's border continuation off
(Lightweight OpenPose's plain cv2 upsampling). Also the share of labelled people (>= 5 keypoints) that
have no neck, who cannot be assembled into one pose.
"""

from __future__ import annotations

import argparse

import numpy as np

from posenas.posenet.pose.coco import CocoPoseDataset
from posenas.posenet.pose.decode import DecodeConfig
from posenas.posenet.pose.evaluate import evaluate_results, oracle_results
from posenas.posenet.pose.keypoints import NECK, coco_to_body
from posenas.posenet.pose.targets import TargetConfig

SIGMAS = (7 * 128 / 368, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0)


def oracle_ap(root: str, input_size: int, sigma: float | None = None, borders: bool = True) -> float:
    dataset = CocoPoseDataset(root, "val", input_size=input_size, targets=TargetConfig(sigma=sigma))
    config = DecodeConfig.for_input(input_size, extrapolate_borders=borders)
    return evaluate_results(dataset.coco, oracle_results(dataset, config), dataset.image_ids).ap


def neckless_share(root: str) -> tuple[int, int]:
    dataset = CocoPoseDataset(root, "val")
    anns = [a for a in dataset.coco.anns.values() if a["num_keypoints"] >= 5 and not a["iscrowd"]]
    body = coco_to_body(np.array([a["keypoints"] for a in anns], dtype=np.float32).reshape(-1, 17, 3))
    return int((body[:, NECK, 2] == 0).sum()), len(anns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", action="append", required=True, help="a COCO root (repeatable)")
    parser.add_argument("--input-size", type=int, default=128)
    args = parser.parse_args()
    print("root | " + " | ".join(f"sigma {s:.2f}" for s in SIGMAS) + " | default, plain borders | no neck")
    for root in args.data:
        row = [f"{oracle_ap(root, args.input_size, sigma):.3f}" for sigma in SIGMAS]
        plain = oracle_ap(root, args.input_size, None, borders=False)
        neckless, people = neckless_share(root)
        print(f"{root} | " + " | ".join(row) + f" | {plain:.3f} | {neckless}/{people} ({100 * neckless / people:.1f}%)")


if __name__ == "__main__":
    main()
