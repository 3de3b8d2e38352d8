"""The one exception root of posenas, its small family, and the command line's exit codes.

Every error a user can cause or meet derives from :class:`PosenasError`. Each stage raises the family
member that names *what* is wrong (a spec, a budget, a study, data, weights, a value given on the command
line, an output path, an external tool) at the depth where it knows; the command line catches the root
once, prints its message as one line and exits with the error's ``exit_code``. Messages are therefore
written for the user: one line, naming the file, key or flag and the problem.

The family is deliberately small and flat; a new kind of failure gets a new member only when a caller
needs to tell it apart.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """What ``posenas`` returns to the shell."""

    OK = 0
    """Success; for ``budget`` and ``export``: the network fits and every check passed."""
    FAILED = 1
    """The input was fine but the answer is no: the network does not fit, a check failed, a run diverged."""
    BAD_INPUT = 2
    """Bad input: one line on stderr names the problem. Nothing was written outside the output folder."""
    INTERRUPTED = 130
    """Ctrl-C (128 + SIGINT, the shell's convention); finished work is kept and a rerun resumes."""


class PosenasError(Exception):
    """Root of every posenas error. ``exit_code`` is what the command line returns for it."""

    exit_code: ExitCode = ExitCode.BAD_INPUT


class UsageError(PosenasError):
    """A command-line flag or setting value that cannot be used (``--epochs 0``, ``--lr nan``, ...)."""


class SpecError(PosenasError):
    """An architecture spec that is malformed, unsafe (its name) or not a network posenas can build."""


class SpecOutsideSpace(SpecError):
    """A spec that a search space cannot express (e.g. a width outside the study's bounds)."""


class BudgetError(PosenasError):
    """A device or budget file (or user limit) that cannot be used."""


class StudyError(PosenasError):
    """A study file, a study's storage, or a trial that cannot be used; the message names the key."""


class DataError(PosenasError):
    """A data root, annotation file, image or results file that cannot be used."""


class WeightsError(PosenasError):
    """A weight file (checkpoint or teacher) that cannot be used; it names the file and the problem."""


class CheckpointError(WeightsError):
    """A posenas run checkpoint that cannot be used (or resumed)."""


class TeacherError(WeightsError):
    """A teacher (a checkpoint, a frozen graph or a prepared teacher folder) that cannot be used."""


class OutputError(PosenasError):
    """An output path that cannot be written, or a path that would leave the output folder."""


class ToolError(PosenasError):
    """An external tool (ai8x-synthesis, a C compiler, an emulator) that is missing or unusable."""


class DoesNotFit(PosenasError):
    """The network does not fit the device budget (the input was fine; exit 1)."""

    exit_code = ExitCode.FAILED


class CheckFailed(PosenasError):
    """A check of the work itself failed (a C build, a comparison); the input was fine."""

    exit_code = ExitCode.FAILED


class TrainingError(PosenasError):
    """A training run that cannot go on (a NaN or infinite loss); in a search it fails the trial only."""

    exit_code = ExitCode.FAILED


__all__ = [
    "BudgetError",
    "CheckFailed",
    "CheckpointError",
    "DataError",
    "DoesNotFit",
    "ExitCode",
    "OutputError",
    "PosenasError",
    "SpecError",
    "SpecOutsideSpace",
    "StudyError",
    "TeacherError",
    "ToolError",
    "TrainingError",
    "UsageError",
    "WeightsError",
]
