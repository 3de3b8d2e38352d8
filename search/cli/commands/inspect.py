"""``posenas space show``, ``posenas spec`` and ``posenas budget``: look at an architecture (or write a
study trial's as a spec file) and check it against a device.

Neither needs torch: both start in a fraction of a second.
"""

from __future__ import annotations

import argparse
import json

from posenas.errors import ExitCode
from posenas.search.cli import arguments, options
from posenas.space.baselines import baseline_names


def register(sub: argparse._SubParsersAction) -> None:
    space = sub.add_parser("space", help="inspect architectures")
    space_sub = space.add_subparsers(dest="space_command", required=True, parser_class=type(space))
    show = space_sub.add_parser("show", help="layer table of an architecture")
    show.add_argument(
        "arch", type=options.InputPath(), help=f"a baseline ({', '.join(baseline_names())}) or a .yaml/.json spec file"
    )
    show.add_argument("--yaml", action="store_true", help="print the spec as YAML instead of the table")
    show.set_defaults(handler=run_space_show)

    spec = sub.add_parser("spec", help="write a study trial's network as a spec file (YAML) that every --arch takes")
    spec.add_argument("--trial", type=options.TRIAL, required=True, help="the trial number (as the search printed it)")
    spec.add_argument(
        "--study", type=options.InputPath(), required=True, help="the study name, as posenas search printed it"
    )
    spec.add_argument(
        "--storage", type=options.Storage(), help="the study's storage URL (default: posenas-runs/<study>/study.db)"
    )
    spec.add_argument(
        "--out", type=options.OutputFile(), required=True, help="the YAML file to write, e.g. trial37.yaml"
    )
    spec.set_defaults(handler=run_spec)

    budget = sub.add_parser("budget", help="check an architecture against a device budget")
    budget.add_argument(
        "--arch", type=options.InputPath(), required=True, help="a baseline name or a .yaml/.json spec file"
    )
    budget.add_argument(
        "--budget", type=options.InputPath(), default="max78000", help="max78000, max78002, or a budget .yaml file"
    )
    budget.add_argument("--json", action="store_true", help="machine-readable report (with the placement plan)")
    budget.add_argument("--max-macs", type=options.Integer(1, 10**15), help="user limit on multiply-accumulates")
    budget.add_argument(
        "--max-latency-ms", type=options.Number(0, 10**6, low_open=True), help="user limit on the estimated latency"
    )
    budget.set_defaults(handler=run_budget)


def run_space_show(args: argparse.Namespace, console) -> int:
    from posenas.search.cli import rendering
    from posenas.space.baselines import get_arch

    spec = get_arch(args.arch)
    if args.yaml:
        print(spec.to_yaml(), end="")
    else:
        console.print(rendering.layer_table(spec))
    return ExitCode.OK


def run_spec(args: argparse.Namespace, console) -> int:
    import shlex
    from pathlib import Path

    import optuna

    from posenas.errors import OutputError
    from posenas.files import atomic_write_text
    from posenas.search.trials import trial_spec

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    out = Path(args.out)
    if out.is_dir() or out.suffix.lower() not in (".yaml", ".yml"):
        raise OutputError(
            f"--out {args.out}: must name a .yaml file (a spec file), not {'a folder' if out.is_dir() else 'that'}"
        )
    study, _ = arguments.trial_study(args.study, args.storage)
    spec = trial_spec(study, args.trial)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, spec.to_yaml())
    arch = shlex.quote(str(out))
    console.print(
        f"trial {args.trial} of {study.study_name} ({spec.name}) -> {out}\n"
        f"use it as --arch: posenas space show {arch}; posenas budget --arch {arch}; "
        f"posenas train --arch {arch} --data DATA --out RUN",
        highlight=False,
    )
    return ExitCode.OK


def run_budget(args: argparse.Namespace, console) -> int:
    from posenas.budgets.checker import check
    from posenas.budgets.device import load_budget
    from posenas.search.cli import rendering
    from posenas.space.baselines import get_arch

    spec = get_arch(args.arch)
    budget = load_budget(args.budget).with_limits(max_macs=args.max_macs, max_latency_ms=args.max_latency_ms)
    result = check(spec, budget)
    if args.json:
        print(json.dumps(result.to_dict(with_plan=True), indent=2))
    else:
        rendering.print_budget_report(result, console)
    return ExitCode.OK if result.fits else ExitCode.FAILED
