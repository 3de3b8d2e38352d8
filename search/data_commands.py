"""``posenas data synth|show`` and ``posenas eval``: pose data and COCO keypoint AP from the terminal."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from posenet import synth
from posenet.coco import CocoPoseDataset, DataError
from posenet.draw import contact_sheet, draw_people, fit_height, label, write_png
from posenet.evaluate import KeypointMetrics, evaluate_results, ground_truth_results, oracle_results

METRIC_COLUMNS = (("AP", "ap"), ("AP50", "ap50"), ("AP75", "ap75"), ("AP_M", "ap_medium"),
                  ("AP_L", "ap_large"), ("AR", "ar"))  # fmt: skip


def add_parsers(sub: argparse._SubParsersAction, parser_class: type[argparse.ArgumentParser]) -> None:
    """The ``data`` and ``eval`` sub-commands."""
    data = sub.add_parser("data", help="make and inspect pose datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=parser_class)
    make = data_sub.add_parser("synth", help="write a built-in synthetic-people COCO root")
    make.add_argument("--out", required=True, help="the root folder to write (COCO 2017 layout)")
    make.add_argument("--train", type=int, default=2000, help="training images (default 2000)")
    make.add_argument("--val", type=int, default=200, help="validation images (default 200)")
    make.add_argument("--seed", type=int, default=0, help="the dataset is a pure function of the seed")

    show = data_sub.add_parser("show", help="draw images with skeletons into one PNG")
    show.add_argument("root", help="a COCO root (real or synthetic)")
    show.add_argument("--out", required=True, help="the PNG to write")
    show.add_argument("--split", default="val")
    show.add_argument("--count", type=int, default=8, help="how many images (default 8)")
    show.add_argument("--results", help="a COCO results json: draw predictions next to the ground truth")
    show.add_argument("--oracle", action="store_true", help="draw the oracle's decoded poses next to the truth")
    show.add_argument("--input-size", type=int, default=128, help="network input for --oracle (default 128)")

    evaluate = sub.add_parser("eval", help="COCO keypoint AP (pycocotools COCOeval, OKS)")
    evaluate.add_argument("--data", required=True, help="a COCO root (real or synthetic)")
    evaluate.add_argument("--split", default="val")
    what = evaluate.add_mutually_exclusive_group(required=True)
    what.add_argument("--oracle", action="store_true", help="targets from the ground truth, decoded: the ceiling")
    what.add_argument("--ground-truth", action="store_true", help="the annotations as detections (AP 1: a check)")
    what.add_argument("--checkpoint", help="a posenas run checkpoint (RUN/best.pt): the network's AP")
    evaluate.add_argument("--mode", choices=("float", "qat", "simulate"), default="qat",
                          help="arithmetic for --checkpoint: float, qat (fake-quantized) or simulate "
                               "(the chip's integers); default qat")  # fmt: skip
    evaluate.add_argument("--device", help="cpu or cuda for --checkpoint (default cpu)")
    evaluate.add_argument("--input-size", type=int, default=128, help="network input of --oracle (default 128)")
    evaluate.add_argument("--limit", type=int, help="only the first N images")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=not console.is_terminal,
    )  # fmt: skip


def run_synth(args: argparse.Namespace, console: Console) -> int:
    if args.train < 0 or args.val < 0:
        raise DataError("--train and --val must be >= 0")
    with _progress(console) as progress:
        task = progress.add_task(f"synthetic people -> {args.out}", total=args.train + args.val)
        counts = synth.write_coco_root(
            args.out, train=args.train, val=args.val, seed=args.seed,
            progress=lambda n: progress.advance(task, n),
        )  # fmt: skip
    table = Table("split", "images", "people", title=f"synthetic COCO root {args.out} (seed {args.seed})")
    for split in ("train", "val"):
        table.add_row(split, f"{counts[f'{split}_images']:,}", f"{counts[f'{split}_annotations']:,}")
    console.print(table)
    return 0


def _dataset(root: str, split: str, input_size: int, limit: int | None = None) -> CocoPoseDataset:
    return CocoPoseDataset(root, split, input_size=input_size, limit=limit)


def run_eval(args: argparse.Namespace, console: Console) -> int:
    dataset = _dataset(args.data, args.split, args.input_size, args.limit)
    if args.ground_truth:
        kind, results = "ground truth as detections", ground_truth_results(dataset.coco, dataset.image_ids)
    else:
        kind = f"oracle (targets from the ground truth at input {args.input_size}, decoded)"
        with _progress(console) as progress:
            task = progress.add_task("oracle", total=len(dataset))
            results = oracle_results(dataset, progress=lambda n: progress.advance(task, n))
    metrics = evaluate_results(dataset.coco, results, dataset.image_ids)
    if args.json:
        print(json.dumps({"data": args.data, "split": args.split, "what": kind, **metrics.to_dict()}, indent=2))
    else:
        console.print(metrics_table(metrics, f"{args.data} {args.split}: {kind}"))
    return 0


def metrics_table(metrics: KeypointMetrics, title: str) -> Table:
    table = Table(*(name for name, _ in METRIC_COLUMNS), "images", "detections", title=title)
    values = metrics.to_dict()
    cells = ["-" if math.isnan(values[key]) else f"{values[key]:.3f}" for _, key in METRIC_COLUMNS]
    table.add_row(*cells, f"{metrics.images:,}", f"{metrics.detections:,}")
    return table


def _results_by_image(path: str) -> dict[int, np.ndarray]:
    try:
        records = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable COCO results json ({exc.__class__.__name__})") from None
    if not isinstance(records, list) or any("keypoints" not in r or "image_id" not in r for r in records):
        raise DataError(f"{path}: not a COCO keypoint results list")
    return _results_by_image_records(records)


def run_show(args: argparse.Namespace, console: Console) -> int:
    dataset = _dataset(args.root, args.split, args.input_size, args.count)
    predictions: dict[int, np.ndarray] | None = None
    if args.results:
        predictions = _results_by_image(args.results)
    elif args.oracle:
        predictions = _results_by_image_records(oracle_results(dataset))
    tiles = []
    for image_id in dataset.image_ids:
        image, scale = fit_height(dataset.load_image(image_id), 240)
        truth = dataset.people(image_id).keypoints.astype(np.float64)
        truth[..., :2] *= scale
        tiles.append(label(draw_people(image, truth), f"{image_id}: ground truth ({len(truth)})"))
        if predictions is not None:
            found = predictions.get(image_id, np.zeros((0, 17, 3))).copy()
            found[..., :2] *= scale
            tiles.append(label(draw_people(image, found), f"{image_id}: predicted ({len(found)})"))
    columns = 2 if predictions is not None else 4
    path = write_png(args.out, contact_sheet(tiles, columns))
    console.print(f"wrote {path} ({len(dataset.image_ids)} images)")
    return 0


def _results_by_image_records(records: list[dict]) -> dict[int, np.ndarray]:
    """COCO result records grouped per image as (N, 17, 3) arrays."""
    people: dict[int, list] = {}
    for record in records:
        people.setdefault(int(record["image_id"]), []).append(record["keypoints"])
    return {k: np.array(v, dtype=np.float64).reshape(-1, 17, 3) for k, v in people.items()}
