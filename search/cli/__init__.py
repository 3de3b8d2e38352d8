"""The ``posenas`` command line: builds the parser from the command modules and runs one handler.

Each module in ``posenas.search.cli.commands`` registers its sub-commands and their handlers
(``set_defaults(handler=...)``) and imports heavy libraries (torch, optuna, OpenCV, pycocotools) only
inside the handlers that use them, so ``posenas --help`` and the inspection commands start fast.

Errors: every :class:`~posenas.errors.PosenasError` is caught here, once, and printed as one line on
stderr, ``posenas: error: ...``; the exit codes are :class:`~posenas.errors.ExitCode`. Every value a
flag takes is checked by its type (``posenas.search.cli.options``) while the arguments are parsed, before any
work starts. Library warnings wait until the command has succeeded (after a failure, the error line
stays the only line on stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence

from posenas.errors import ExitCode, PosenasError, UsageError
from posenas.files import WRITE_FAILURES
from posenas.search.cli import interrupts, options
from posenas.search.cli.commands import data, evaluate, export, inspect, predict, search, supernet, train

COMMAND_MODULES = (inspect, data, evaluate, train, search, supernet, export, predict)


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad usage as a UsageError (one line, exit 2) instead of exiting itself."""

    def error(self, message: str) -> None:  # type: ignore[override]
        command = self.prog.removeprefix("posenas").strip()  # "train", "data synth"; "" for the top level
        raise UsageError(f"{command}: {message}" if command else message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="posenas", description="Hardware-aware NAS for pose networks on the MAX78000.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for module in COMMAND_MODULES:
        module.register(sub)
    for command in sub.choices.values():
        _state_ranges(command)
    return parser


def _state_ranges(parser: argparse.ArgumentParser) -> None:
    """Each numeric option's help ends with the range its type declares (search/cli/options.py), once for all."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _state_ranges(sub)
        elif isinstance(action.type, (options.Integer, options.Number)):
            action.help = f"{action.help or ''} [{action.type.describe()}]".strip()


def main(argv: Sequence[str] | None = None) -> int:
    # Library warnings (torch's, optuna's) are held back while the command runs: an error is then the one line
    # on stderr, never preceded by a library's warning; a command that succeeds shows them after its output.
    with warnings.catch_warnings(record=True) as held, _quiet_storage_threads():
        code = _run(argv)
    if code == ExitCode.OK:
        for w in held:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return code


def _run(argv: Sequence[str] | None) -> int:
    try:
        # Inside the try: a Ctrl-C let through as the gate is removed is still the one "interrupted" line.
        with interrupts.installed():
            args = build_parser().parse_args(argv)
            from rich.console import Console

            # Wide enough for the plan table when piped; a terminal keeps its own width. soft_wrap: lines with
            # paths and messages are never broken (logs stay greppable); tables still fit.
            console = Console(width=None if sys.stdout.isatty() else 150, soft_wrap=True)
            return int(args.handler(args, console))
    except PosenasError as exc:
        return _fail(f"posenas: error: {exc}", exc.exit_code)
    except OSError as exc:
        if exc.errno not in WRITE_FAILURES:
            return _storage_failed_or_raise(exc)
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(
            f"posenas: error: {where}{exc.strerror.lower()}; what was finished is kept: make room and rerun "
            "the same command",
            ExitCode.BAD_INPUT,
        )
    except Exception as exc:
        if _raised_while_interrupted(exc):
            return _interrupted()
        return _storage_failed_or_raise(exc)
    except KeyboardInterrupt:
        return _interrupted()


def _interrupted() -> int:
    return _fail("posenas: interrupted; finished work is kept, rerun the same command to resume", ExitCode.INTERRUPTED)


def _raised_while_interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` came from clean-up that Ctrl-C set off (a KeyboardInterrupt in its context chain): the
    user stopped the command, and that is what they are told, in one line. (Python keeps context chains free
    of cycles.)"""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, KeyboardInterrupt):
            return True
        cause = cause.__context__
    return False


@contextlib.contextmanager
def _quiet_storage_threads() -> Iterator[None]:
    """A background thread that dies of a storage failure (optuna's heartbeat, when the database server stops)
    prints nothing: the command meets the same failure on its next storage call and reports it in one line,
    or rides it out when the server comes back. Any other thread's death keeps its traceback."""
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        from posenas.search.storage import storage_failure  # optuna: imported only once a thread has died

        if args.exc_value is None or storage_failure(args.exc_value) is None:
            previous(args)

    threading.excepthook = hook
    try:
        yield
    finally:
        threading.excepthook = previous


def _storage_failed_or_raise(exc: BaseException) -> int:
    """One line for a study database that failed mid-command (a server restarted, a full disk); a bug
    otherwise, whose traceback is the useful report."""
    from posenas.search.storage import storage_failure

    failure = storage_failure(exc)
    if failure is None:
        raise exc
    return _fail(f"posenas: error: {failure}", failure.exit_code)


def _fail(message: str, code: int) -> int:
    lines = message.strip().splitlines() or ["posenas: error"]
    print(lines[0], file=sys.stderr)
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
