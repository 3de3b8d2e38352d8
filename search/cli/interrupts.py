"""Ctrl-C on the command line: KeyboardInterrupt as usual, except inside the few blocks that must not be cut
in half (the terminal display's start and stop, which push and pop console hooks, redirect the standard
streams and start or join a thread; cut in half, they left a hidden cursor and a traceback behind).

``installed()`` makes an ``InterruptGate`` SIGINT's handler for one command; ``held()`` marks a block whose
interrupt waits for its end. The gate is installed once, not swapped in and out around each block: holding
is a counter the handler reads."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from types import FrameType
from typing import Any

Handler = Callable[[int, FrameType | None], Any]


class InterruptGate:
    """A SIGINT handler that hands each signal to the handler it replaced (Python's: KeyboardInterrupt), at once,
    or, while a ``holding()`` block runs, when the outermost such block ends."""

    def __init__(self, previous: Handler) -> None:
        self.previous = previous
        self.depth = 0
        self.waiting: tuple[int, FrameType | None] | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.depth:
            self.waiting = (signum, frame)
        else:
            self.previous(signum, frame)

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            # A signal handled after the decrement goes to `previous` at once; one before it is waiting here.
            if not self.depth and self.waiting is not None:
                waiting, self.waiting = self.waiting, None
                self.previous(*waiting)


@contextlib.contextmanager
def installed() -> Iterator[InterruptGate | None]:
    """An ``InterruptGate`` as SIGINT's handler while the block runs, the previous handler back after it. None,
    and nothing changed, outside the main thread (Python runs signal handlers there only) or where SIGINT is
    ignored or left to the system (a background job's)."""
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield None
        return
    gate = InterruptGate(previous)
    signal.signal(signal.SIGINT, gate)
    try:
        yield gate
    finally:
        signal.signal(signal.SIGINT, previous)


def held() -> AbstractContextManager[Any]:
    """The block runs whole: a Ctrl-C meanwhile raises as it ends. Without an installed gate, or outside the main
    thread (where a deferred interrupt would be raised in the wrong thread), an ordinary block."""
    gate = signal.getsignal(signal.SIGINT)
    if isinstance(gate, InterruptGate) and threading.current_thread() is threading.main_thread():
        return gate.holding()
    return contextlib.nullcontext()
