"""``posenas data synth|show``: make the built-in synthetic people and look at pose data."""

from __future__ import annotations

import argparse

from posenas.errors import UsageError
from posenas.files import check_output_folder
from posenas.search.cli import arguments, options


def register(sub: argparse._SubParsersAction) -> None:
    """The ``data`` sub-commands."""
    data = sub.add_parser("data", help="make and inspect pose datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=type(data))
    make = data_sub.add_parser("synth", help="write a built-in synthetic-people COCO root")
    make.add_argument(
        "--out", type=options.OutputFolder(), required=True, help="the root folder to write (COCO 2017 layout)"
    )
    make.add_argument("--train", type=options.SYNTH_IMAGES, default=2000, help="training images (default 2000)")
    make.add_argument("--val", type=options.SYNTH_IMAGES, default=200, help="validation images (default 200)")
    make.add_argument("--seed", type=options.SEED, default=0, help="the dataset is a pure function of the seed")
    make.set_defaults(handler=run_synth)

    show = data_sub.add_parser("show", help="draw images with skeletons into one PNG")
    show.add_argument("root", type=options.InputPath(), help="a COCO root (real or synthetic)")
    show.add_argument("--out", type=options.OutputFile(), required=True, help="the PNG to write")
    show.add_argument("--split", type=options.Text(), default="val")
    show.add_argument("--count", type=options.Integer(1, 1000), default=8, help="how many images (default 8)")
    show.add_argument(
        "--results", type=options.InputPath(), help="a COCO results json: draw predictions next to the ground truth"
    )
    show.add_argument("--oracle", action="store_true", help="draw the oracle's decoded poses next to the truth")
    show.add_argument(
        "--input-size", type=options.INPUT_SIZE, default=128, help="network input for --oracle (default 128)"
    )
    show.set_defaults(handler=run_show)


def run_synth(args: argparse.Namespace, console) -> int:
    from rich.table import Table

    from posenas.posenet.pose import synth
    from posenas.search.cli.rendering import progress_bar

    if args.train < 0 or args.val < 0:
        raise UsageError(f"--train and --val must be >= 0, got {args.train} and {args.val}")
    check_output_folder(args.out, "dataset folder")
    with progress_bar(console) as progress:
        task = progress.add_task(f"synthetic people -> {args.out}", total=args.train + args.val)
        counts = synth.write_coco_root(
            args.out,
            train=args.train,
            val=args.val,
            seed=args.seed,
            progress=lambda n: progress.advance(task, n),
        )
    table = Table("split", "images", "people", title=f"synthetic COCO root {args.out} (seed {args.seed})")
    for split in ("train", "val"):
        table.add_row(split, f"{counts[f'{split}_images']:,}", f"{counts[f'{split}_annotations']:,}")
    console.print(table)
    return 0


def _results_by_image(path: str) -> dict:
    from posenas.posenet.pose.evaluate import load_results

    return _results_by_image_records(load_results(path))


def run_show(args: argparse.Namespace, console) -> int:
    import numpy as np

    from posenas.posenet.pose.coco import CocoPoseDataset
    from posenas.posenet.pose.draw import contact_sheet, draw_people, fit_height, label, write_png
    from posenas.posenet.pose.evaluate import oracle_results

    arguments.at_least("--count", args.count)
    arguments.input_size("--input-size", args.input_size)
    out = arguments.output_file(args.out, "contact sheet")
    dataset = CocoPoseDataset(args.root, args.split, input_size=args.input_size, limit=args.count)
    predictions = None
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
    path = write_png(out, contact_sheet(tiles, columns))
    console.print(f"wrote {path} ({len(dataset.image_ids)} images)")
    return 0


def _results_by_image_records(records: list[dict]) -> dict:
    """COCO result records grouped per image as (N, 17, 3) arrays."""
    import numpy as np

    people: dict[int, list] = {}
    for record in records:
        people.setdefault(int(record["image_id"]), []).append(record["keypoints"])
    return {k: np.array(v, dtype=np.float64).reshape(-1, 17, 3) for k, v in people.items()}
