"""Low-bit QAT: networks with 2- and 4-bit layers against their 8-bit versions, under a QAT recipe.

    python benchmarks/bench_lowbit.py --data posenas-runs/max78000/data/synth-seed0-2000-100 --out lowbit \
        [--variant recipe] [--recipe '{"float_distill": 0.5}'] [--seeds 0 1 2] [--only NAME ...] \
        [--results benchmarks/results/lowbit.json]

The networks (``--only`` picks some; rerun to go on, in pieces):

* ``student-hw`` (8-bit, does not fit the MAX78000) and ``student-hw-mixed`` (2-bit weights in conv6-conv8
  and cpm2-cpm3, fits), seeds ``--seeds``;
* ``tiny-hw`` and ``tiny-hw-w4`` / ``tiny-hw-w2`` (every layer at 4 or 2 bits but the first and the two
  output layers), seeds ``--seeds``;
* the fidelity networks whose stand-alone QAT AP fell below half their float AP under ai8x v1 QAT
  (BENCHMARKS.md, "Fidelity": fid02-fid07, fid10, fid11, as ``bench_fidelity.py`` draws them), seed 0.

Each trains with the item-7 schedule of ``bench_vs_hand.py`` (``TrainConfig()``: 20 epochs, the last 4 QAT,
no teacher, 100 validation images) and the low-bit recipe ``--recipe`` (a JSON mapping of
``LowBitRecipe`` fields over its defaults; ``{"enabled": false}`` is ai8x v1), under the name ``--variant``.
Its score is the best QAT epoch's AP, its float AP the best float epoch's, ``train_s`` the training
epochs' own seconds (without validation), read from the checkpoint.

The float phase does not depend on weight bits: a network and its lowered versions, under every variant
with the same switch epoch, share one float run (``OUT/float/``, trained once, under a lock), and each
then goes on alone from the switch. That equals training each from scratch (the same seeded epochs in
the same order); ``train_s`` still counts the float epochs, as training alone would cost them. An
all-8-bit network trains alike under every recipe, so it trains once (``OUT/8bit/``) and every variant
gets its row.

Rows go to ``OUT/results.json`` (every variant), and the default variant's to ``--results`` as the list
``{"net", "seed", "bits", "float_ap", "qat_ap", "train_s"}``; the summary gives issue 23's goals.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import hashlib
import json
import statistics
import sys
from pathlib import Path

from posenas.budgets.device import load_budget
from posenas.files import atomic_write_text
from posenas.posenet.nets.checkpoint import load_checkpoint, save_checkpoint
from posenas.posenet.nets.config import LowBitRecipe, TrainConfig
from posenas.posenet.nets.supernet import SuperNet
from posenas.posenet.nets.train import Trainer, best_aps
from posenas.search.settings import load_settings
from posenas.space.baselines import get_arch, lowered
from posenas.space.graph import layer_graph
from posenas.space.spec import ArchSpec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fidelity import spread_networks

DEFAULT_VARIANT = "recipe"
ALL_8BIT = "8bit"  # the folder of the runs that no recipe changes (all-8-bit networks)
COLLAPSED_FIDELITY = ("fid02", "fid03", "fid04", "fid05", "fid06", "fid07", "fid10", "fid11")
"""QAT AP below half the float AP under ai8x v1 QAT (BENCHMARKS.md, "Fidelity"; fid03 at 0.51 included,
as the issue names it)."""
REFERENCE = {"student-hw-mixed": "student-hw", "tiny-hw-w4": "tiny-hw", "tiny-hw-w2": "tiny-hw"}


def networks(seeds: list[int]) -> list[tuple[ArchSpec, list[int]]]:
    """(spec, seeds) of every network of the benchmark, in training order."""
    tiny = get_arch("tiny-hw")
    nets = [
        (get_arch("student-hw"), seeds),
        (get_arch("student-hw-mixed"), seeds),
        (tiny, seeds),
        (lowered(tiny, 4), seeds),
        (lowered(tiny, 2), seeds),
    ]
    settings = load_settings("max78000")
    drawn = {spec.name: spec for spec in spread_networks(SuperNet(settings.space), load_budget("max78000"), 16, 0)}
    return nets + [(drawn[name], [0]) for name in COLLAPSED_FIDELITY]


def bits_summary(spec: ArchSpec) -> str:
    """ "8" for an all-8-bit network, else the weight bits of its layers in execution order, run-length
    coded ("8 4x9 8 4 8": conv1 at 8, nine layers at 4, ...)."""
    bits = [node.weight_bits for node in layer_graph(spec)]
    if set(bits) == {8}:
        return "8"
    runs: list[list[int]] = []
    for b in bits:
        if runs and runs[-1][0] == b:
            runs[-1][1] += 1
        else:
            runs.append([b, 1])
    return " ".join(f"{b}x{n}" if n > 1 else str(b) for b, n in runs)


def all_8bit(spec: ArchSpec) -> ArchSpec:
    """The spec with every layer at 8 bits: its float phase is the same network's."""

    def chain(layers):
        return tuple(dataclasses.replace(x, weight_bits=8) for x in layers)

    heads = tuple(dataclasses.replace(h, hidden=chain(h.hidden), out_bits=8) for h in spec.heads)
    return dataclasses.replace(
        spec, name="float-phase", backbone=chain(spec.backbone), cpm=chain(spec.cpm), heads=heads
    )


def float_phase(spec: ArchSpec, config: TrainConfig, data: str, out: Path) -> Path:
    """The folder of the float phase shared by ``spec`` and its other-bit versions under ``config``'s switch
    (trained here once, under a lock, if missing)."""
    assert config.qat_start is not None
    # A float phase knows no recipe; its settings name one (disabled) all the same, with the fields' values
    # of the first measurements (bias_bits 8 then), so that the folders keyed by them stay found.
    float_config = dataclasses.replace(
        config,
        epochs=config.qat_start,
        qat_start=None,
        qat_lr=TrainConfig.qat_lr,
        lowbit=LowBitRecipe(enabled=False, bias_bits=8),
    )
    twin = all_8bit(spec)
    key = hashlib.sha256(json.dumps([twin.spec_hash(), float_config.to_dict()], sort_keys=True).encode()).hexdigest()
    folder = out / "float" / key[:16]  # the same for every bit width of the network
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second process waits for the first's float phase, then reuses it
        last = folder / "last.pt"
        if not last.is_file() or load_checkpoint(last).epoch + 1 < float_config.epochs:
            print(
                f"float phase of {spec.name} (seed {config.seed}, {float_config.epochs} epochs) -> {folder}", flush=True
            )
            Trainer(twin, data, folder, float_config, device="cpu").run()
    return folder


def seed_from_float(spec: ArchSpec, config: TrainConfig, shared: Path, run: Path) -> None:
    """Start ``run`` at the switch with the shared float phase's last and best checkpoints, as ``spec``'s."""
    if (run / "last.pt").is_file():
        return
    run.mkdir(parents=True, exist_ok=True)
    for name in ("best.pt", "last.pt"):  # best before last: last.pt is the commit point
        checkpoint = load_checkpoint(shared / name)
        save_checkpoint(dataclasses.replace(checkpoint, spec=spec, train_config=config.to_dict()), run / name)


def train(spec: ArchSpec, seed: int, schedule: TrainConfig, data: str, out: Path, variant: str) -> dict:
    """One network at one seed under the schedule and its recipe: its row."""
    config = dataclasses.replace(schedule, seed=seed)  # the schedule asked for; Trainer applies the recipe's
    run = out / variant / spec.name / f"seed{seed}"
    if spec.lowest_bits >= 8:  # an all-8-bit network trains alike under every recipe: once
        config = dataclasses.replace(config, lowbit=LowBitRecipe())
        run = out / ALL_8BIT / spec.name / f"seed{seed}"
    if config.qat_start:  # the recipe keeps the float phase: shared by every bit width
        seed_from_float(spec, config, float_phase(spec, config, data, out), run)
    Trainer(spec, data, run, config, device="cpu").run()
    history = load_checkpoint(run / "last.pt").history
    qat_ap, float_ap = best_aps(history)
    return {
        "variant": variant,
        "net": spec.name,
        "seed": seed,
        "bits": bits_summary(spec),
        "float_ap": float_ap,
        "qat_ap": qat_ap,
        "train_s": sum(h["seconds"] for h in history),
    }


def summary(rows: list[dict], variant: str) -> list[str]:
    """The table of one variant and issue 23's goals, as lines."""
    mine = [r for r in rows if r["variant"] == variant]
    by_net: dict[str, list[dict]] = {}
    for r in mine:
        by_net.setdefault(r["net"], []).append(r)
    lines = [
        f"variant {variant}",
        f"{'network':20s} {'bits':>18s} {'seeds':>5s} {'float AP':>8s} {'QAT AP':>7s} "
        f"{'min':>7s} {'QAT/float':>9s} {'train s':>8s}",
    ]
    mean = {}
    for net, rs in by_net.items():
        q = [r["qat_ap"] for r in rs]
        f = [r["float_ap"] for r in rs]
        mean[net] = statistics.mean(q)
        lines.append(
            f"{net:20s} {rs[0]['bits']:>18s} {len(rs):5d} {statistics.mean(f):8.4f} {mean[net]:7.4f} "
            f"{min(q):7.4f} {mean[net] / max(statistics.mean(f), 1e-9):9.2f} "
            f"{statistics.mean(r['train_s'] for r in rs):8.0f}"
        )
    for net, ref in REFERENCE.items():
        if net in by_net and ref in by_net:
            ratio = mean[net] / max(mean[ref], 1e-9)
            seeds = {r["seed"]: r["qat_ap"] for r in by_net[ref]}
            worst = min(
                (r["qat_ap"] / max(seeds[r["seed"]], 1e-9) for r in by_net[net] if r["seed"] in seeds), default=0
            )
            lines.append(f"{net}: mean QAT AP {ratio:.2f} x {ref}'s (worst seed {worst:.2f} x)")
    for net in COLLAPSED_FIDELITY:
        if net in by_net:
            r = by_net[net][0]
            lines.append(
                f"{net}: QAT AP {r['qat_ap']:.4f} = {r['qat_ap'] / max(r['float_ap'], 1e-9):.2f} x its float AP"
            )
    return lines


def step_seconds(
    spec: ArchSpec, recipe: LowBitRecipe | None, qat: bool, rounds: int = 5, batch: int = 16
) -> list[float]:
    """Wall seconds of ``rounds`` training steps (forward, loss, backward, Adam) of ``spec`` on one batch: in
    float, or in QAT under ``recipe`` (None: ai8x v1), with the float network's forward when the recipe
    distils from it. One value per round, after warm-up steps."""
    import time

    import torch

    from posenas.posenet.nets.model import build_model
    from posenas.posenet.nets.train import WARM_UP_STEPS, distill_loss

    torch.manual_seed(0)
    model = build_model(spec)
    teacher = None
    if qat:
        if recipe is not None and recipe.applies_to(spec.lowest_bits) and recipe.float_distill:
            teacher = build_model(spec).eval()
        model.start_qat(recipe)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    x = torch.rand(batch, 3, spec.input_size, spec.input_size) - 0.5
    seconds = []
    for step in range(WARM_UP_STEPS + rounds):
        began = time.perf_counter()
        heatmaps, pafs = model(x)
        loss = heatmaps.pow(2).mean() + pafs.pow(2).mean()
        if teacher is not None:
            with torch.no_grad():
                maps = teacher(x)
            loss = loss + distill_loss(heatmaps, pafs, maps)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step >= WARM_UP_STEPS:
            seconds.append(time.perf_counter() - began)
    return seconds


def timing(spec: ArchSpec, recipe: LowBitRecipe, schedule: TrainConfig, rounds: int) -> list[str]:
    """The recipe's training time per network against ai8x v1's, from step times measured interleaved in one
    process (so the machine's load weighs on both alike): float steps x float epochs + QAT steps x QAT
    epochs, each schedule's own."""
    float_s, v1_s, recipe_s = [], [], []
    for _ in range(rounds):  # interleaved, a few steps each, medians at the end
        float_s += step_seconds(spec, None, qat=False)
        v1_s += step_seconds(spec, None, qat=True)
        recipe_s += step_seconds(spec, recipe, qat=True)
    f, v, r = (statistics.median(x) for x in (float_s, v1_s, recipe_s))
    base = schedule.for_lowest_bits(8)
    low = dataclasses.replace(schedule, lowbit=recipe).for_lowest_bits(spec.lowest_bits)
    float_epochs = base.qat_start or base.epochs
    v1_total = float_epochs * f + (base.epochs - float_epochs) * v
    recipe_total = float_epochs * f + (low.epochs - float_epochs) * r
    return [
        f"{spec.name}: step seconds (median of {len(float_s)}) float {f:.3f}, QAT ai8x v1 {v:.3f}, QAT recipe {r:.3f}",
        f"per network: {float_epochs} float + {base.epochs - float_epochs} QAT epochs (v1) -> {v1_total:.2f} step-s, "
        f"{float_epochs} float + {low.epochs - float_epochs} QAT epochs (recipe) -> {recipe_total:.2f} step-s: "
        f"recipe / v1 = {recipe_total / v1_total:.2f}",
    ]


def ablation(rows: list[dict]) -> list[str]:
    """Every (network, variant) with rows: seeds, mean float and QAT AP, per-seed QAT AP, mean train_s; the
    ablation table of BENCHMARKS.md."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["net"], r["variant"]), []).append(r)
    lines = [
        f"{'network':18s} {'variant':14s} {'seeds':>5s} {'float AP':>8s} {'QAT AP':>7s}  per seed (QAT)       train s"
    ]
    for (net, variant), rs in sorted(groups.items()):
        rs = sorted(rs, key=lambda r: r["seed"])
        per_seed = " ".join(f"{r['qat_ap']:.4f}" for r in rs)
        lines.append(
            f"{net:18s} {variant:14s} {len(rs):5d} {statistics.mean(r['float_ap'] for r in rs):8.4f} "
            f"{statistics.mean(r['qat_ap'] for r in rs):7.4f}  {per_seed:20s} "
            f"{statistics.mean(r['train_s'] for r in rs):7.0f}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--variant", default=DEFAULT_VARIANT, help="a name for the recipe's runs and rows")
    parser.add_argument("--recipe", default="{}", help="LowBitRecipe fields as JSON, over its defaults")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="+", help="these networks only")
    parser.add_argument("--results", type=Path, help="write the default variant's rows here (benchmarks/results/)")
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs, help="a smaller schedule, for a check")
    parser.add_argument("--qat-epochs", type=int, default=TrainConfig().qat_epochs)
    parser.add_argument("--train-images", type=int)
    parser.add_argument("--val-images", type=int, default=100)
    parser.add_argument("--ablation", action="store_true", help="also print every network under every variant")
    parser.add_argument(
        "--timing",
        type=int,
        metavar="ROUNDS",
        help="only measure the recipe's training time per network against ai8x v1's (no training)",
    )
    args = parser.parse_args()
    recipe = LowBitRecipe.from_value(json.loads(args.recipe))
    schedule = TrainConfig(
        epochs=args.epochs,
        qat_start=TrainConfig.qat_start_for(args.epochs, args.qat_epochs),
        val_images=args.val_images,
        train_images=args.train_images,
        lowbit=recipe,
    )
    if args.timing:
        for spec, _ in networks(args.seeds)[:5]:
            if spec.lowest_bits < 8 and (not args.only or spec.name in args.only):
                print("\n".join(timing(spec, recipe, schedule, args.timing)), flush=True)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.json"
    for spec, seeds in networks(args.seeds):
        if args.only and spec.name not in args.only:
            continue
        for seed in seeds:
            row = train(spec, seed, schedule, args.data, args.out, args.variant)
            rows = json.loads(path.read_text()) if path.is_file() else []  # re-read: parallel --only runs share OUT
            rows = [r for r in rows if (r["variant"], r["net"], r["seed"]) != (args.variant, row["net"], seed)]
            atomic_write_text(path, json.dumps(rows + [row], indent=1) + "\n")
            print(
                f"{args.variant} {row['net']}/seed{seed}: float AP {row['float_ap']:.4f}, QAT AP {row['qat_ap']:.4f} "
                f"in {row['train_s']:.0f} s",
                flush=True,
            )
    rows = json.loads(path.read_text()) if path.is_file() else []
    print("\n".join(summary(rows, args.variant)))
    if args.ablation:
        print("\n".join(ablation(rows)))
    if args.results and args.variant == DEFAULT_VARIANT:
        keep = [
            {k: r[k] for k in ("net", "seed", "bits", "float_ap", "qat_ap", "train_s")}
            for r in rows
            if r["variant"] == DEFAULT_VARIANT
        ]
        args.results.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.results, json.dumps(keep, indent=1) + "\n")


if __name__ == "__main__":
    main()
