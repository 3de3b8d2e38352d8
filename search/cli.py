"""The ``posenas`` command line.

Exit codes: 0 success (for ``budget``: the network fits), 1 the network does not fit, 2 bad input (one
line on stderr naming the problem).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from rich.console import Console

from budgets.checker import check
from budgets.device import BudgetError, load_budget
from posenet.coco import DataError
from posenet.weights import WeightsError
from posenet.export.izer import IzerError
from search import data_commands, export_commands, report, search_commands, train_commands
from space.baselines import baseline_names, get_arch
from space.spec import SpecError

EXIT_OK, EXIT_DOES_NOT_FIT, EXIT_BAD_INPUT = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad usage in one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _BadInput(f"{self.prog}: {message}")


class _BadInput(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="posenas", description="Hardware-aware NAS for pose networks on the MAX78000.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    space = sub.add_parser("space", help="inspect architectures")
    space_sub = space.add_subparsers(dest="space_command", required=True, parser_class=_Parser)
    show = space_sub.add_parser("show", help="layer table of an architecture")
    show.add_argument("arch", help=f"a baseline ({', '.join(baseline_names())}) or a .yaml/.json spec file")
    show.add_argument("--yaml", action="store_true", help="print the spec as YAML instead of the table")

    budget = sub.add_parser("budget", help="check an architecture against a device budget")
    budget.add_argument("--arch", required=True, help="a baseline name or a .yaml/.json spec file")
    budget.add_argument("--budget", default="max78000", help="max78000, max78002, or a budget .yaml file")
    budget.add_argument("--json", action="store_true", help="machine-readable report (with the placement plan)")
    budget.add_argument("--max-macs", type=int, help="user limit on multiply-accumulates")
    budget.add_argument("--max-latency-ms", type=float, help="user limit on the estimated latency")

    data_commands.add_parsers(sub, _Parser)
    train_commands.add_parsers(sub)
    search_commands.add_parsers(sub)
    export_commands.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Wide enough for the plan table when piped; a terminal keeps its own width.
    # soft_wrap: lines with paths and messages are never broken (logs stay greppable); tables still fit.
    console = Console(width=None if sys.stdout.isatty() else 150, soft_wrap=True)
    try:
        args = build_parser().parse_args(argv)
        if args.command == "space":
            return _space_show(args, console)
        if args.command == "data":
            run = data_commands.run_synth if args.data_command == "synth" else data_commands.run_show
            return run(args, console)
        if args.command == "eval":
            if args.checkpoint:
                return train_commands.run_eval_checkpoint(args, console)
            return data_commands.run_eval(args, console)
        if args.command == "teacher":
            return train_commands.run_teacher(args, console)
        if args.command == "train":
            return train_commands.run_train(args, console)
        if args.command == "search":
            return search_commands.run_search(args, console)
        if args.command == "plot":
            return search_commands.run_plot(args, console)
        if args.command == "export":
            return export_commands.run_export(args, console)
        return _budget(args, console)
    except _BadInput as exc:
        return _fail(str(exc))
    except (SpecError, BudgetError, DataError, WeightsError, IzerError) as exc:
        return _fail(f"posenas: error: {exc}")


def _fail(message: str) -> int:
    print(message.splitlines()[0], file=sys.stderr)
    return EXIT_BAD_INPUT


def _space_show(args: argparse.Namespace, console: Console) -> int:
    spec = get_arch(args.arch)
    if args.yaml:
        print(spec.to_yaml(), end="")
    else:
        console.print(report.layer_table(spec))
    return EXIT_OK


def _budget(args: argparse.Namespace, console: Console) -> int:
    spec = get_arch(args.arch)
    budget = load_budget(args.budget).with_limits(max_macs=args.max_macs, max_latency_ms=args.max_latency_ms)
    result = check(spec, budget)
    if args.json:
        print(json.dumps(result.to_dict(with_plan=True), indent=2))
    else:
        report.print_budget_report(result, console)
    return EXIT_OK if result.fits else EXIT_DOES_NOT_FIT


if __name__ == "__main__":
    sys.exit(main())
