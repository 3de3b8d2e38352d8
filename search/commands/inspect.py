"""``posenas space show`` and ``posenas budget``: look at an architecture and check it against a device.

Neither needs torch: both start in a fraction of a second.
"""

from __future__ import annotations

import argparse
import json

from posenas.errors import ExitCode
from posenas.space.baselines import baseline_names


def register(sub: argparse._SubParsersAction) -> None:
    space = sub.add_parser("space", help="inspect architectures")
    space_sub = space.add_subparsers(dest="space_command", required=True, parser_class=type(space))
    show = space_sub.add_parser("show", help="layer table of an architecture")
    show.add_argument("arch", help=f"a baseline ({', '.join(baseline_names())}) or a .yaml/.json spec file")
    show.add_argument("--yaml", action="store_true", help="print the spec as YAML instead of the table")
    show.set_defaults(handler=run_space_show)

    budget = sub.add_parser("budget", help="check an architecture against a device budget")
    budget.add_argument("--arch", required=True, help="a baseline name or a .yaml/.json spec file")
    budget.add_argument("--budget", default="max78000", help="max78000, max78002, or a budget .yaml file")
    budget.add_argument("--json", action="store_true", help="machine-readable report (with the placement plan)")
    budget.add_argument("--max-macs", type=int, help="user limit on multiply-accumulates")
    budget.add_argument("--max-latency-ms", type=float, help="user limit on the estimated latency")
    budget.set_defaults(handler=run_budget)


def run_space_show(args: argparse.Namespace, console) -> int:
    from posenas.search import report
    from posenas.space.baselines import get_arch

    spec = get_arch(args.arch)
    if args.yaml:
        print(spec.to_yaml(), end="")
    else:
        console.print(report.layer_table(spec))
    return ExitCode.OK


def run_budget(args: argparse.Namespace, console) -> int:
    from posenas.budgets.checker import check
    from posenas.budgets.device import load_budget
    from posenas.search import report
    from posenas.space.baselines import get_arch

    spec = get_arch(args.arch)
    budget = load_budget(args.budget).with_limits(max_macs=args.max_macs, max_latency_ms=args.max_latency_ms)
    result = check(spec, budget)
    if args.json:
        print(json.dumps(result.to_dict(with_plan=True), indent=2))
    else:
        report.print_budget_report(result, console)
    return ExitCode.OK if result.fits else ExitCode.FAILED
