"""The same networks scored by several supernets: does a search's ranking survive another supernet?

    python benchmarks/bench_rescore.py --study-db posenas-runs/max78000/study.db --trials 53 54 32 \
        --supernet A/supernet --supernet B/supernet [--steps 30 100] --data ROOT [--out rescore.json]
        [--arch NAME_OR_SPEC ...]

A search ranks networks with one supernet, trained once in its first minutes. Fidelity (bench_fidelity.py)
measures how that ranking agrees with stand-alone training over networks spread across the space; this
measures the other half of the noise: for the networks a search put at the top (``--trials``, by number,
with tiny-hw always added), the score each of several supernets gives them (``--supernet``, repeatable:
supernets of the same study trained by other runs) after each number of QAT fine-tuning steps
(``--steps``), and Kendall tau between every two supernets' rankings. If two supernets order the top
networks differently, the search's pick among them is the first supernet's training noise, not the
networks' merit. ``--arch`` adds networks that are not trials (baseline names or spec files), e.g. a
hand-made network whose stand-alone AP is known, to see where the supernets put it. Deterministic: the
scorer's calibration and fine-tuning draws are fixed by its seed.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import optuna
from scipy.stats import kendalltau

from posenas.files import atomic_write_text
from posenas.posenet.nets.supernet_score import SubnetScorer
from posenas.posenet.nets.supernet_train import load_supernet
from posenas.search.settings import load_settings
from posenas.space.baselines import get_arch
from posenas.space.spec import ArchSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study-db", required=True, help="the search's storage: a SQLite file or a storage URL")
    parser.add_argument("--study", default="max78000")
    parser.add_argument("--trials", type=int, nargs="*", default=[], help="trial numbers of the networks")
    parser.add_argument("--arch", nargs="*", default=[], help="more networks: baseline names or spec files")
    parser.add_argument("--supernet", action="append", required=True, help="a supernet folder (repeatable)")
    parser.add_argument("--steps", type=int, nargs="+", default=[30, 100])
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if not args.trials and not args.arch:
        parser.error("give --trials or --arch: tiny-hw alone leaves nothing to rank")

    settings = load_settings(args.study)
    storage = args.study_db if "://" in args.study_db else f"sqlite:///{Path(args.study_db).resolve()}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = optuna.load_study(study_name=settings.name, storage=storage).trials
    specs = [get_arch("tiny-hw")] + [ArchSpec.from_dict(trials[n].user_attrs["spec"]) for n in args.trials]
    specs += [get_arch(a) for a in args.arch]
    scores: dict[str, dict[str, list[float]]] = {}  # steps -> supernet -> fg loss per network
    for folder in args.supernet:
        net, _ = load_supernet(folder)
        net.eval()
        for steps in args.steps:
            scorer = SubnetScorer(
                net,
                args.data,
                finetune_steps=steps,
                finetune_batch=settings.train.batch_size,
                finetune_lr=settings.train.qat_lr,
            )
            row = [scorer.score(spec, ap=False).fg_loss for spec in specs]
            scores.setdefault(str(steps), {})[folder] = row
            print(f"{folder}, {steps} steps: " + ", ".join(f"{s.name} {v:.4f}" for s, v in zip(specs, row)), flush=True)
    agreement = {
        steps: {f"{a} ~ {b}": float(kendalltau(rows[a], rows[b]).statistic) for a, b in itertools.combinations(rows, 2)}
        for steps, rows in scores.items()
    }
    for steps, pairs in agreement.items():
        print(f"{steps} steps, Kendall tau between supernets: " + "; ".join(f"{k}: {v:+.2f}" for k, v in pairs.items()))
    if args.out:
        result = {"networks": [s.name for s in specs], "fg_loss": scores, "kendall_tau_between_supernets": agreement}
        atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
