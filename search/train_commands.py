"""``posenas teacher``, ``posenas train`` and ``posenas eval --checkpoint``: distillation, QAT and the
integer check from the terminal."""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from posenet.checkpoint import CheckpointError, load_checkpoint, model_for
from posenet.coco import CocoPoseDataset
from posenet.distill import (
    PoseNetTeacher, TeacherInfo, cache_teacher_maps, load_prepared_teacher, load_teacher, write_prepared_teacher,
)  # fmt: skip
from posenet.evaluate import evaluate_results, prediction_results
from posenet.layers import QuantMode
from posenet.train import EpochRecord, Trainer, TrainConfig, predictor_for
from search.data_commands import metrics_table
from space.baselines import baseline_names, get_arch

EVAL_MODES = tuple(mode.value for mode in QuantMode)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """The ``teacher`` and ``train`` sub-commands (``eval --checkpoint`` lives with ``eval``)."""
    teacher = sub.add_parser("teacher", help="load or train a teacher and cache its maps per image")
    teacher.add_argument("--data", required=True, help="the COCO root the students will train on")
    source = teacher.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="Lightweight OpenPose checkpoint (e.g. checkpoint_iter_370000.pth) "
                        "or a posenas run checkpoint (RUN/best.pt)")  # fmt: skip
    source.add_argument("--arch", help="train this posenas architecture (float) on --data as the teacher")
    teacher.add_argument("--epochs", type=int, default=12, help="epochs when training with --arch (default 12)")
    teacher.add_argument("--refinement-stages", type=int, default=1, help="Lightweight OpenPose stages (default 1)")
    teacher.add_argument("--input-size", type=int, default=128, help="input of the cached maps (default 128)")
    teacher.add_argument("--device", help="cpu or cuda (default: cuda if present)")
    teacher.add_argument("--out", required=True, help="the folder to write (teacher.json, teacher.pt, maps.npy)")

    train = sub.add_parser("train", help="distillation + quantization-aware training of one architecture")
    train.add_argument("--arch", required=True, help=f"a baseline ({', '.join(baseline_names())}) or a spec file")
    train.add_argument("--data", required=True, help="a COCO root (real or synthetic)")
    train.add_argument("--teacher", help="a folder made by posenas teacher (default: no distillation)")
    _schedule_arguments(train)
    train.add_argument("--out", required=True, help="the run folder (last.pt, best.pt); rerun to resume")


def _schedule_arguments(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    parser.add_argument("--epochs", type=int, default=d.epochs, help=f"epochs in all (default {d.epochs})")
    parser.add_argument("--qat-epochs", type=int, default=d.epochs - (d.qat_start or d.epochs),
                        help="how many of the last epochs are QAT (0: float only; default %(default)s)")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--lr", type=float, default=d.lr, help="float-phase Adam learning rate")
    parser.add_argument("--qat-lr", type=float, default=d.qat_lr, help="QAT-phase Adam learning rate")
    parser.add_argument("--alpha", type=float, default=d.alpha, help="weight of the targets (1 - alpha: teacher)")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=d.augment,
                        help="random scale/rotation/shift/flip (default: %(default)s)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=d.workers, help="loader processes (augmented runs)")
    parser.add_argument("--val-images", type=int, default=d.val_images, help="validation images per epoch")
    parser.add_argument("--device", help="cpu or cuda (default: cuda if present)")


def _config(args: argparse.Namespace, qat: bool = True) -> TrainConfig:
    if args.epochs < 1:
        raise CheckpointError("--epochs must be >= 1")
    qat_epochs = args.qat_epochs if qat else 0
    if not 0 <= qat_epochs <= args.epochs:
        raise CheckpointError(f"--qat-epochs must be in [0, {args.epochs}], got {qat_epochs}")
    try:
        return TrainConfig(
            epochs=args.epochs, qat_start=args.epochs - qat_epochs if qat_epochs else None,
            batch_size=args.batch_size, lr=args.lr, qat_lr=args.qat_lr, alpha=args.alpha, seed=args.seed,
            augment=args.augment, workers=args.workers, val_images=args.val_images,
        )  # fmt: skip
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"), console=console, transient=True,
    )  # fmt: skip


def _train(spec, data: str, out: Path, config: TrainConfig, console: Console, device: str | None,
           teacher=None, teacher_cache=None) -> list[EpochRecord]:  # fmt: skip
    """One training run with a progress bar per epoch and a line per finished epoch."""
    with _progress(console) as progress:
        task = progress.add_task("epoch", total=None, status="")
        state = {"started": time.perf_counter(), "epoch": 0}

        def on_batch(step: int, steps: int, loss: torch.Tensor) -> None:
            if step == 1:
                state["started"] = time.perf_counter()
            # Reading the loss syncs a GPU: only every 10 steps.
            if step % 10 == 0 or step == steps:
                rate = step * config.batch_size / max(1e-9, time.perf_counter() - state["started"])
                status = f"loss {float(loss):.5f}  {rate:,.0f} img/s"
                progress.update(task, total=steps, completed=step, status=status)

        def on_epoch(record: EpochRecord) -> None:
            progress.reset(task, total=None, status="")
            progress.update(task, description=f"epoch {record.epoch + 2}/{config.epochs}")
            console.print(
                f"epoch {record.epoch + 1}/{config.epochs} {record.mode:<5} loss {record.loss:.5f}  "
                f"{record.images_per_s:,.0f} img/s  {record.seconds:.1f} s  val AP {record.ap:.3f}  AP50 {record.ap50:.3f}"
            )  # fmt: skip

        trainer = Trainer(spec, data, out, config, teacher=teacher, teacher_cache=teacher_cache, device=device,
                          on_batch=on_batch, on_epoch=on_epoch)  # fmt: skip
        progress.update(task, description=f"epoch 1/{config.epochs}")
        return trainer.run()


def run_train(args: argparse.Namespace, console: Console) -> int:
    spec = get_arch(args.arch)
    config = _config(args)
    teacher = cache = None
    if args.teacher:
        prepared = load_prepared_teacher(args.teacher)
        teacher, cache = prepared.teacher, prepared.cache
        # Image ids repeat across roots (every synthetic root numbers from 1): a cache made on other data
        # or at another input size would silently teach the wrong maps.
        same_data = prepared.info.data == str(Path(args.data).resolve())
        if not config.augment and (not same_data or prepared.info.input_size != spec.input_size):
            raise CheckpointError(
                f"{args.teacher}: its maps were cached on {prepared.info.data} at input {prepared.info.input_size}, "
                f"not {args.data} at {spec.input_size}; run posenas teacher --data {args.data} again"
            )  # fmt: skip
    out = Path(args.out)
    resumed = (out / "last.pt").is_file()
    console.print(f"{'resuming' if resumed else 'training'} {spec.name} on {args.data} -> {out}"
                  f" ({'distilled from ' + args.teacher if args.teacher else 'no teacher'})")  # fmt: skip
    started = time.perf_counter()
    _train(spec, args.data, out, config, console, args.device, teacher, cache)
    checkpoint = load_checkpoint(out / "last.pt")
    console.print(history_table(checkpoint.history, f"{spec.name}: {out}"))
    console.print(f"{time.perf_counter() - started:.0f} s; best {checkpoint.extras.get('best_mAP', 0):.3f} "
                  f"at epoch {int(checkpoint.extras.get('best_epoch', -1)) + 1} -> {out / 'best.pt'}")  # fmt: skip
    return 0


def history_table(history: list[dict], title: str) -> Table:
    table = Table("epoch", "mode", "loss", "img/s", "s", "AP", "AP50", title=title)
    for record in history:
        table.add_row(str(record["epoch"] + 1), record["mode"], f"{record['loss']:.5f}",
                      f"{record['images_per_s']:,.0f}", f"{record['seconds']:.1f}",
                      f"{record['ap']:.3f}", f"{record['ap50']:.3f}")  # fmt: skip
    return table


def run_teacher(args: argparse.Namespace, console: Console) -> int:
    prepare_teacher(Path(args.data), Path(args.out), console, checkpoint=args.checkpoint, arch=args.arch,
                    epochs=args.epochs, refinement_stages=args.refinement_stages, input_size=args.input_size,
                    device=args.device)  # fmt: skip
    return 0


def prepare_teacher(
    data: Path, out: Path, console: Console, *, checkpoint: str | None = None, arch: str | None = None,
    epochs: int = 12, train_images: int | None = None, refinement_stages: int = 1, input_size: int = 128,
    device: str | None = None,
) -> Path:  # fmt: skip
    """Load ``checkpoint`` (or train ``arch``, float, on ``data``) and cache its maps into ``out``."""
    if arch:
        spec = get_arch(arch)
        input_size = spec.input_size
        config = TrainConfig(epochs=epochs, qat_start=None, train_images=train_images)
        console.print(f"training the teacher {spec.name} (float, {epochs} epochs) -> {out / 'run'}")
        _train(spec, str(data), out / "run", config, console, device)
        checkpoint = str(out / "run" / "best.pt")
    elif checkpoint is None:
        raise CheckpointError("a teacher needs a checkpoint or an architecture to train")
    teacher, kind = load_teacher(checkpoint, refinement_stages)
    if isinstance(teacher, PoseNetTeacher):  # a posenas network runs at its own input size
        input_size = teacher.model.spec.input_size
    dataset = CocoPoseDataset(data, "train", input_size=input_size, people_only=True)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    with _progress(console) as progress:
        task = progress.add_task("teacher maps", total=len(dataset), status="")
        maps, image_ids = cache_teacher_maps(teacher, dataset, device, progress=lambda n: progress.advance(task, n))
    info = TeacherInfo(kind=kind, source=str(Path(checkpoint).resolve()), refinement_stages=refinement_stages,
                       data=str(Path(data).resolve()), split="train", input_size=input_size,
                       images=len(image_ids))  # fmt: skip
    write_prepared_teacher(out, checkpoint, info, maps, image_ids)
    console.print(f"wrote {out}: {kind} teacher, maps of {len(image_ids):,} images "
                  f"({maps.nbytes / 2**20:.1f} MiB float16)")  # fmt: skip
    return out


def run_eval_checkpoint(args: argparse.Namespace, console: Console) -> int:
    """AP of a run checkpoint in float, QAT or simulate (the chip's integers) arithmetic."""
    checkpoint = load_checkpoint(args.checkpoint)
    mode = QuantMode(args.mode)
    model = model_for(checkpoint, args.checkpoint)
    if mode is QuantMode.FLOAT and model.mode is not QuantMode.FLOAT:
        raise CheckpointError(f"{args.checkpoint}: holds QAT weights (batch-norm folded); float needs a float-phase "
                              "checkpoint such as RUN/best-float.pt")  # fmt: skip
    if mode is not QuantMode.FLOAT and model.mode is QuantMode.FLOAT:
        model.start_qat()  # post-training quantization of a float checkpoint
    if mode is QuantMode.SIMULATE:
        model = copy.deepcopy(model)
        model.to_simulate()
    dataset = CocoPoseDataset(args.data, args.split, input_size=checkpoint.spec.input_size, limit=args.limit)
    device = torch.device(args.device or "cpu")
    model.to(device).eval()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:  # fmt: skip
        task = progress.add_task(f"{mode.value} inference", total=len(dataset))
        results = prediction_results(predictor_for(model, device), dataset,
                                     progress=lambda n: progress.advance(task, n))  # fmt: skip
    metrics = evaluate_results(dataset.coco, results, dataset.image_ids)
    if args.json:
        record = {"checkpoint": args.checkpoint, "mode": mode.value, "data": args.data, "split": args.split}
        print(json.dumps({**record, **metrics.to_dict()}, indent=2))
    else:
        title = f"{args.checkpoint} ({checkpoint.spec.name}, {mode.value}) on {args.data} {args.split}"
        console.print(metrics_table(metrics, title))
    return 0
