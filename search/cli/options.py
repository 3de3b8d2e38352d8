"""The command line's value types: every option declares once what it accepts, and argparse checks it.

Each type is a callable that argparse applies to the option's text while parsing, so a bad value is
refused before any command starts work, in one line that names the option (``argument --seed: ...``)::

    parser.add_argument("--seed", type=Integer(0, MAX_SEED))
    parser.add_argument("--out", type=OutputFolder())

* :class:`Integer` and :class:`Number`: a range, and for sizes a multiple; NaN and infinities never pass.
  The ranges bound what an option can ask of the machine (an image count, an input size), so no value
  allocates more memory than a workstation has.
* :class:`OutputFolder` and :class:`OutputFile`: a path a command will create and write into. Refused when
  it is an existing file (or folder), too long, on a special file system (/proc, /sys, /dev), under a
  parent folder that does not exist, is not a folder, or is not writable. Like ``mkdir`` without ``-p``,
  only the last part is created: a typo in a parent folder is a mistake to report, not a tree to make.
* :class:`InputPath`: a path or a name to read. Its form is checked here (length, NUL bytes; not on /proc,
  /sys or /dev; not a device or a FIFO, which would be read forever); the loader that reads it says what is
  wrong with its contents.
* :class:`Storage`: an Optuna storage URL; in-memory and empty URLs are refused (a study there is lost
  when the command ends).
* :class:`Device`: ``cpu``, ``cuda`` or ``cuda:N``, present on this machine.
* :class:`Text`: any other free text (a split's name, a list of objectives), checked by its command.

``tests/test_options.py`` walks the parser and requires one of these (or ``choices``, or a flag) on every
option, so a new option is covered by the table-driven bad-input tests without anyone adding it there.
"""

from __future__ import annotations

import argparse
import os
import stat
from pathlib import Path

from posenas.search import ranges

SPECIAL_FILE_SYSTEMS = ("/proc", "/sys", "/dev")
WRITABLE_UNDER_DEV = ("/dev/shm",)


class OptionType:
    """An option's value type: ``__call__(text)`` returns the value or raises ``argparse.ArgumentTypeError``
    with a message that completes ``argument --flag: ...``; ``describe()`` says what it accepts (--help)."""

    def __call__(self, text: str):  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def describe(self) -> str:
        return ""

    def __repr__(self) -> str:  # argparse names the type in some messages
        return self.describe() or type(self).__name__


class Integer(ranges.Integer, OptionType):
    """An integer range (``ranges.Integer``) as a flag's type."""

    def __call__(self, text: str) -> int:
        try:
            return self.parse(text)
        except ranges.RangeError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None


class Number(ranges.Number, OptionType):
    """A number range (``ranges.Number``) as a flag's type."""

    def __call__(self, text: str) -> float:
        try:
            return self.parse(text)
        except ranges.RangeError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None


def flag_type(kind: ranges.Integer | ranges.Number) -> Integer | Number:
    """The flag type of a declared range (``ranges.SEED`` -> the ``--seed`` type)."""
    if isinstance(kind, ranges.Integer):
        return Integer(kind.low, kind.high, kind.multiple)
    return Number(kind.low, kind.high, low_open=kind.low_open)


def path_form(text: str) -> Path:
    """``text`` as a path, refused when no file system would take it: empty, a NUL byte, a name over
    NAME_MAX or the whole over PATH_MAX (the messages the OS would give as tracebacks later)."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path")
    if "\0" in text:
        raise argparse.ArgumentTypeError("a path with a NUL byte")
    name_max, path_max = _limits()
    if len(os.fsencode(text)) >= path_max:
        raise argparse.ArgumentTypeError(
            f"the path is too long ({len(os.fsencode(text))} bytes; the limit is {path_max - 1})"
        )
    longest = max((len(os.fsencode(part)) for part in Path(text).parts), default=0)
    if longest > name_max:
        raise argparse.ArgumentTypeError(f"a name in the path is too long ({longest} bytes; the limit is {name_max})")
    return Path(text)


def _limits() -> tuple[int, int]:
    try:
        return os.pathconf("/", "PC_NAME_MAX"), os.pathconf("/", "PC_PATH_MAX")
    except (AttributeError, OSError, ValueError):  # no pathconf (Windows): the common limits
        return 255, 4096


def special_file_system(path: Path) -> str | None:
    """The special file system (/proc, /sys, /dev) that ``path`` lies on, if any (links followed)."""
    real = os.path.realpath(path)
    if any(real == w or real.startswith(w + "/") for w in WRITABLE_UNDER_DEV):
        return None
    return next((s for s in SPECIAL_FILE_SYSTEMS if real == s or real.startswith(s + "/")), None)


class _Output(OptionType):
    folder: bool

    def __call__(self, text: str) -> Path:
        path = path_form(text)
        special = special_file_system(path)
        if special:
            raise argparse.ArgumentTypeError(f"{text}: is on the special file system {special}, not a place for files")
        try:
            exists, is_dir = path.exists(), path.is_dir()
            parent = path.absolute().parent
            parent_exists, parent_is_dir = parent.exists(), parent.is_dir()
        except OSError as exc:  # ELOOP, EACCES on a part of the path
            raise argparse.ArgumentTypeError(f"{text}: {exc.strerror}") from None
        if exists and is_dir != self.folder:
            raise argparse.ArgumentTypeError(f"{text}: exists and is {'not ' if self.folder else ''}a folder")
        if exists and not self.folder and not path.is_file():
            # a FIFO would block the write until someone reads it; a device (/dev/null elsewhere) swallows it
            raise argparse.ArgumentTypeError(f"{text}: exists and is not a regular file")
        if not parent_exists:
            raise argparse.ArgumentTypeError(f"{text}: its folder {path.parent} does not exist (create it first)")
        if not parent_is_dir:
            raise argparse.ArgumentTypeError(f"{text}: {path.parent} is not a folder")
        target = path if exists else parent
        if not os.access(target, os.W_OK | (os.X_OK if target.is_dir() else 0)):
            raise argparse.ArgumentTypeError(f"{text}: {target} is not writable")
        return path

    def describe(self) -> str:
        return "a folder to write into" if self.folder else "a file to write"


class OutputFolder(_Output):
    """A folder a command creates (if missing) and writes into; its parent folder must exist."""

    folder = True


class OutputFile(_Output):
    """A file a command writes; its folder must exist."""

    folder = False


class InputPath(OptionType):
    """A path (or a name that a loader resolves: a baseline, a device, a study) to read."""

    def __call__(self, text: str) -> str:
        path = path_form(text)
        special = special_file_system(path)
        if special:
            raise argparse.ArgumentTypeError(f"{text}: is on the special file system {special}, not a file to read")
        try:
            mode = path.stat().st_mode if path.exists() else None
        except OSError as exc:
            raise argparse.ArgumentTypeError(f"{text}: {exc.strerror}") from None
        if mode is not None and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            # a FIFO or a device (/dev/zero) would be read forever
            raise argparse.ArgumentTypeError(f"{text}: not a regular file or folder")
        return text

    def describe(self) -> str:
        return "a path or a name"


class Storage(OptionType):
    """An Optuna storage URL that keeps a study: ``sqlite:///FILE`` or ``postgresql://...``."""

    def __call__(self, text: str) -> str:
        url = text.strip()
        if not url:
            raise argparse.ArgumentTypeError("an empty storage URL (use sqlite:///FILE or postgresql://...)")
        if url in ("sqlite://", "sqlite:///", "sqlite:///:memory:") or url.startswith("sqlite:///:memory:"):
            raise argparse.ArgumentTypeError(
                f"{url}: an in-memory database loses the study when the command ends; "
                "use sqlite:///FILE or postgresql://..."
            )
        if not url.startswith(("sqlite:///", "postgresql://", "postgres://", "postgresql+")):
            raise argparse.ArgumentTypeError(f"{url}: not a storage URL (use sqlite:///FILE or postgresql://...)")
        if url.startswith("sqlite:///"):
            path_form(url[len("sqlite:///") :].split("?")[0] or "x")
        return url

    def describe(self) -> str:
        return "sqlite:///FILE or postgresql://USER@HOST/DB"


class Device(OptionType):
    """A torch device present here: ``cpu``, ``cuda`` or ``cuda:N``."""

    def __call__(self, text: str) -> str:
        from posenas.errors import UsageError
        from posenas.search.cli.arguments import device

        try:
            return device(text)  # type: ignore[return-value]
        except UsageError as exc:
            raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[-1]) from None

    def describe(self) -> str:
        return "cpu or cuda[:N]"


class Text(OptionType):
    """Free text that its command checks (a split's name, a list of objectives); at most 1,000 characters."""

    def __call__(self, text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError("an empty value")
        if len(text) > 1000 or "\0" in text:
            raise argparse.ArgumentTypeError("not a value this option takes (over 1,000 characters or a NUL byte)")
        return text

    def describe(self) -> str:
        return "text"


# The flags' types of the declared ranges (search/ranges.py): a study key and its flag accept the same values.
SEED = flag_type(ranges.SEED)
EPOCHS = flag_type(ranges.EPOCHS)
QAT_EPOCHS = flag_type(ranges.QAT_EPOCHS)
BATCH = flag_type(ranges.BATCH)
COUNT = flag_type(ranges.COUNT)
TRIAL = flag_type(ranges.TRIAL)
INPUT_SIZE = flag_type(ranges.INPUT_SIZE)
LEARNING_RATE = flag_type(ranges.LEARNING_RATE)
SYNTH_IMAGES = flag_type(ranges.SYNTH_IMAGES)
