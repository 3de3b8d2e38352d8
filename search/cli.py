"""The ``posenas`` command line: builds the parser from the command modules and runs one handler.

Each module in ``posenas.search.commands`` registers its sub-commands and their handlers
(``set_defaults(handler=...)``) and imports heavy libraries (torch, optuna, OpenCV, pycocotools) only
inside the handlers that use them, so ``posenas --help`` and the inspection commands start fast.

Errors: every :class:`~posenas.errors.PosenasError` is caught here, once, and printed as one line on
stderr; the exit codes are :class:`~posenas.errors.ExitCode`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from posenas.errors import ExitCode, PosenasError, UsageError
from posenas.search.commands import data, evaluate, export, inspect, predict, search, supernet, train

COMMAND_MODULES = (inspect, data, evaluate, train, search, supernet, export, predict)


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad usage as a UsageError (one line, exit 2) instead of exiting itself."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="posenas", description="Hardware-aware NAS for pose networks on the MAX78000.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        from rich.console import Console

        # Wide enough for the plan table when piped; a terminal keeps its own width. soft_wrap: lines with
        # paths and messages are never broken (logs stay greppable); tables still fit.
        console = Console(width=None if sys.stdout.isatty() else 150, soft_wrap=True)
        return int(args.handler(args, console))
    except UsageError as exc:
        return _fail(str(exc), exc.exit_code)
    except PosenasError as exc:
        return _fail(f"posenas: error: {exc}", exc.exit_code)
    except KeyboardInterrupt:
        return _fail("posenas: interrupted; finished work is kept, rerun the same command to resume",
                     ExitCode.INTERRUPTED)  # fmt: skip


def _fail(message: str, code: int) -> int:
    lines = message.strip().splitlines() or ["posenas: error"]
    print(lines[0], file=sys.stderr)
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
