"""Writing files safely: whole or not at all, and only inside the folder the user named.

``atomic_write`` writes beside the target and renames, so a crash or a kill leaves either the old file or
the complete new one, never half of one (readers such as a resumed run or a second worker never see a
partial file). ``inside`` proves that a path built from untrusted parts (a spec name from a checkpoint, say)
stays inside an output folder before anything is written there.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from posenas.errors import OutputError

T = TypeVar("T")


def atomic_write(path: str | os.PathLike, write: Callable[[Path], T]) -> T:
    """Call ``write(partial)`` on a temporary path beside ``path``, flush it to disk, then rename it onto
    ``path``. The temporary file is removed if ``write`` fails; its name carries the pid, so two processes
    writing the same file never share a temporary."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        result = write(partial)
        _fsync(partial)
        os.replace(partial, path)
    except Exception as exc:
        # A writer that fails on a full disk with its own error (torch.save: "unexpected pos 576 vs 534", raised
        # while handling the stream's OSError) is told apart here: the user reads "no space left on device".
        code = _write_failure(exc) or (errno.ENOSPC if disk_full(path.parent) else None)
        if code is None:
            raise
        raise OSError(code, os.strerror(code), str(path)) from exc
    finally:
        partial.unlink(missing_ok=True)
    return result


def atomic_write_stream(path: str | os.PathLike, write: Callable[[Any], T]) -> T:
    """``atomic_write`` with ``write`` given the partial file opened for binary writing (a stream: the
    writer's own OSError, e.g. a full disk, then reaches ``atomic_write`` whatever wraps it)."""

    def to_stream(partial: Path) -> T:
        with open(partial, "wb") as stream:
            return write(stream)

    return atomic_write(path, to_stream)


def _write_failure(exc: BaseException | None) -> int | None:
    """The errno of a disk that takes no more (``WRITE_FAILURES``) in ``exc`` or what it was raised from."""
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        if isinstance(exc, OSError) and exc.errno in WRITE_FAILURES:
            return exc.errno
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return None


def disk_full(folder: str | os.PathLike, below: int = 64 * 1024) -> bool:
    """Whether the file system of ``folder`` has less than ``below`` bytes left for this user."""
    try:
        stats = os.statvfs(folder)
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < below


# The errors of a disk that cannot take more: full, over quota, a file over the size limit, mounted read-only.
WRITE_FAILURES = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """``text`` (UTF-8) into ``path``, atomically."""
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))
    return Path(path)


def inside(folder: str | os.PathLike, path: str | os.PathLike) -> Path:
    """``path`` resolved, after checking that it lies inside ``folder`` (OutputError otherwise).

    Both are resolved (links and ``..`` followed), so neither ``../x``, an absolute path nor a link that
    points out of ``folder`` passes."""
    root = Path(folder).resolve()
    target = (root / path).resolve()
    if target != root and root not in target.parents:
        raise OutputError(f"{path}: would be written outside the output folder {folder}")
    return target


def _fsync(path: Path) -> None:
    try:
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
    except OSError:  # a file system without fsync (some network mounts): the rename still applies
        pass


def check_output_folder(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Say in one line why ``path`` could not become a folder to write into, without creating anything:
    it is a file, a part of it is a file, a name in it is too long, or its nearest existing folder is
    not writable. The writer creates it later, once the inputs have been checked too."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{what} {path}: exists and is not a folder")
    limit = os.pathconf("/", "PC_NAME_MAX") if hasattr(os, "pathconf") else 255
    if any(len(part.encode()) > limit for part in path.parts):
        raise OutputError(f"{what} {path}: cannot be created (File name too long)")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{what} {path}: a part of the path is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {path}: {existing} is not writable")
    return path


def output_folder(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Create ``path`` (and its parents) as a folder to write into, or say in one line why it cannot be.

    Checked up front, before any work: a path that is a file, lies under a file, is too long, or is not
    writable gives OutputError rather than a traceback after minutes of training."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"{what} {path}: exists and is not a folder") from None
    except NotADirectoryError:
        raise OutputError(f"{what} {path}: a part of the path is a file") from None
    except OSError as exc:
        raise OutputError(f"{what} {path}: cannot be created ({exc.strerror})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {path}: not writable")
    return path
