"""``posenas supernet``: train a study's weight-sharing supernet (sandwich rule, in-place distillation, QAT)."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from posenas.errors import UsageError
from posenas.posenet.nets.config import SupernetConfig
from posenas.search.cli import options


def register(sub: argparse._SubParsersAction) -> None:
    d = SupernetConfig()
    parser = sub.add_parser("supernet", help="train a study's weight-sharing supernet (scores subnets in seconds)")
    parser.add_argument(
        "--study",
        type=options.InputPath(),
        default="max78000",
        help="a study name (studies/*.yaml) or file (default max78000)",
    )
    parser.add_argument(
        "--data",
        type=options.InputPath(),
        help="a COCO root (default: the study's; built-in synthetic people under --out)",
    )
    parser.add_argument(
        "--teacher",
        type=options.InputPath(),
        help="a folder from posenas teacher, or 'none' (default: the study's teacher)",
    )
    parser.add_argument("--epochs", type=options.EPOCHS, default=d.epochs, help=f"epochs in all (default {d.epochs})")
    parser.add_argument(
        "--qat-epochs",
        type=options.QAT_EPOCHS,
        default=d.qat_epochs,
        help=f"how many of the last epochs are QAT with random weight bits (default {d.qat_epochs})",
    )
    parser.add_argument("--batch-size", type=options.BATCH, default=d.batch_size)
    parser.add_argument("--lr", type=options.LEARNING_RATE, default=d.lr, help="float-phase Adam learning rate")
    parser.add_argument("--qat-lr", type=options.LEARNING_RATE, default=d.qat_lr, help="QAT-phase Adam learning rate")
    parser.add_argument(
        "--random-subnets",
        type=options.Integer(0, 64),
        default=d.random_subnets,
        help=f"random budget-feasible subnets per step besides the largest and smallest (default {d.random_subnets})",
    )
    parser.add_argument("--train-images", type=options.COUNT, help="the first N training images only")
    parser.add_argument("--seed", type=options.SEED, default=d.seed)
    parser.add_argument("--device", type=options.Device(), help="cpu or cuda (default: cuda if present)")
    parser.add_argument(
        "--score",
        type=options.InputPath(),
        nargs="+",
        metavar="ARCH",
        help="then score these networks (baselines or spec files) with the supernet: BN recalibrated, "
        "QAT AP on the validation images",
    )
    parser.add_argument(
        "--val-images", type=options.COUNT, default=100, help="validation images for --score (default 100)"
    )
    parser.add_argument(
        "--out",
        type=options.OutputFolder(),
        required=True,
        help="the supernet folder (supernet.pt, supernet.json); rerun to resume",
    )
    parser.set_defaults(handler=run_supernet)


def _config(args: argparse.Namespace) -> SupernetConfig:
    for flag in ("epochs", "batch_size"):
        if getattr(args, flag) < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if args.train_images is not None and args.train_images < 1:
        raise UsageError(f"--train-images must be >= 1, got {args.train_images}")
    return SupernetConfig(
        epochs=args.epochs,
        qat_epochs=args.qat_epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        qat_lr=args.qat_lr,
        random_subnets=args.random_subnets,
        seed=args.seed,
        train_images=args.train_images,
    )


def run_supernet(args: argparse.Namespace, console) -> int:
    from posenas.budgets.device import load_budget
    from posenas.events import TrainingProgress
    from posenas.posenet.nets.supernet_train import WEIGHTS, SupernetTrainer
    from posenas.search.cli.rendering import ConsoleEvents
    from posenas.search.inputs import cache_for, check_study_inputs, study_data_root, study_teacher
    from posenas.search.settings import load_settings
    from posenas.space.baselines import get_arch

    config = _config(args)
    settings = load_settings(args.study)
    to_score = [get_arch(arch) for arch in args.score or []]  # a bad name or file fails before any work
    budget = load_budget(settings.budget)
    checked = check_study_inputs(settings, args.data, args.teacher)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    events = ConsoleEvents(console)
    data = study_data_root(settings, checked or args.data, out, events)
    prepared = study_teacher(settings, args.teacher, data, out, events, args.device)
    cache = cache_for(prepared, data, settings.space.input_size)
    if prepared is not None and cache is None:
        console.print("[yellow]the teacher's maps were cached for other data: the supernet trains without it[/yellow]")
    resumed = (out / WEIGHTS).is_file()
    console.print(
        f"{'resuming' if resumed else 'training'} the supernet of study {settings.name} on {data} -> {out} "
        f"({config.epochs} epochs, the last {config.qat_epochs} QAT; per step the largest, the smallest "
        f"and {config.random_subnets} random networks that fit {budget.device.name})"
    )
    started = time.perf_counter()
    with events, TrainingProgress(events, "supernet", config.epochs, config.batch_size) as (on_batch, on_epoch):
        SupernetTrainer(
            settings.space,
            budget,
            data,
            out,
            config,
            study=settings.name,
            teacher_cache=cache,
            device=args.device,
            on_batch=on_batch,
            on_epoch=on_epoch,
        ).run()
    console.print(f"supernet ready in {time.perf_counter() - started:.0f} s -> {out / WEIGHTS}")
    if to_score:
        _score(to_score, settings, budget, data, out, args, console)
    return 0


def _score(specs, settings, budget, data: str | os.PathLike, out: Path, args: argparse.Namespace, console) -> None:
    """Score ``specs`` with the supernet in ``out`` and print one row each."""
    from rich.table import Table

    from posenas.budgets.checker import check
    from posenas.posenet.nets.supernet_score import SubnetScorer
    from posenas.posenet.nets.supernet_train import load_supernet

    net, _ = load_supernet(out, settings.space)
    net.eval()
    for spec in specs:
        net.check(spec)  # SpecOutsideSpace: one line, exit 2, before any scoring
    if args.val_images < 1:
        raise UsageError(f"--val-images must be >= 1, got {args.val_images}")
    scorer = SubnetScorer(net, data, val_images=args.val_images, seed=args.seed, device=args.device)
    table = Table(
        "network",
        "AP (QAT, supernet)",
        "AP50",
        "val loss",
        "parameters",
        "latency ms",
        "fits",
        "s",
        title=f"supernet scores ({len(scorer.val.image_ids)} validation images)",
    )
    for spec in specs:
        score, report = scorer.score(spec), check(spec, budget)
        table.add_row(
            spec.name,
            f"{score.ap:.4f}",
            f"{score.ap50:.4f}",
            f"{score.val_loss:.5f}",
            f"{report.params:,}",
            f"{report.latency_ms or float('nan'):.2f}",
            "yes" if report.fits else "no",
            f"{score.seconds:.1f}",
        )
    console.print(table)
