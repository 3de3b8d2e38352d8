"""Ctrl-C at any moment of the terminal display leaves it whole and ends the command in one line.

CI once saw ``posenas train`` answer SIGINT with a traceback: the signal landed inside rich's display start
(after it counted itself started, before it pushed its render hook), and the clean-up's stop then popped
an empty list. These tests send real SIGINTs to this process at the moments that broke, and at random.
"""

from __future__ import annotations

import io
import math
import os
import random
import signal
import sys
import threading
import time

import pytest
from rich.console import Console

from posenas.search.cli import _raised_while_interrupted, interrupts
from posenas.search.cli.rendering import ConsoleEvents


@pytest.fixture
def python_sigint():
    # A suite started in the background by a non-interactive shell inherits SIGINT ignored.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture
def gate(python_sigint):
    """The command line's SIGINT handler, as ``posenas`` installs it for a command."""
    with interrupts.installed() as installed:
        assert signal.getsignal(signal.SIGINT) is installed
        yield installed
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _ctrl_c_now() -> None:
    """SIGINT to this process, and time for Python to run its handler here rather than later."""
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.05)


def _terminal() -> Console:
    return Console(file=io.StringIO(), force_terminal=True, width=100)


def _display_is_down(console: Console, events: ConsoleEvents, stdout: object) -> bool:
    """No render hook left pushed, the display stopped and the standard output it redirected given back."""
    return not console._render_hooks and not events.progress.live.is_started and sys.stdout is stdout


def test_a_held_block_finishes_and_the_interrupt_is_raised_as_it_ends(gate):
    finished = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts.held():
            with interrupts.held():  # nested: the outermost block's end lets it through
                _ctrl_c_now()
                finished.append("inner")
            _ctrl_c_now()  # a second Ctrl-C meanwhile: still one interrupt
            finished.append("outer")
    assert finished == ["inner", "outer"] and gate.depth == 0 and gate.waiting is None
    with pytest.raises(KeyboardInterrupt):  # outside a held block, at once
        _ctrl_c_now()
        finished.append("not reached")
    assert finished == ["inner", "outer"]


def test_without_an_interrupt_a_held_block_raises_nothing(gate):
    with interrupts.held():
        pass
    assert gate.depth == 0 and gate.waiting is None


def test_held_changes_nothing_without_the_gate_or_outside_the_main_thread(gate):
    seen = []

    def elsewhere() -> None:
        with interrupts.held():
            seen.append(gate.depth)

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join()
    assert seen == [0]  # another thread cannot hold the main thread's interrupts
    signal.signal(signal.SIGINT, signal.default_int_handler)  # no gate: library use
    with pytest.raises(KeyboardInterrupt):
        with interrupts.held():
            _ctrl_c_now()
            seen.append("not reached")
    assert seen == [0]
    signal.signal(signal.SIGINT, gate)


def test_where_sigint_is_ignored_no_gate_is_installed(python_sigint):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with interrupts.installed() as installed:
        assert installed is None and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        with interrupts.held():
            _ctrl_c_now()
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


@pytest.mark.parametrize("step", ["show_cursor", "clear_live"])
def test_ctrl_c_inside_the_display_s_start_or_stop_leaves_it_whole(step, monkeypatch, gate):
    # show_cursor runs in the middle of Live.start (and of stop); clear_live runs in the middle of Live.stop.
    console, stdout = _terminal(), sys.stdout
    events = ConsoleEvents(console)
    real = getattr(console, step)
    calls = []

    def interrupted_step(*args, **kwargs):
        calls.append(step)
        if len(calls) == 1:
            _ctrl_c_now()
        return real(*args, **kwargs)

    monkeypatch.setattr(console, step, interrupted_step)
    with pytest.raises(KeyboardInterrupt):
        with events:
            events.progress_start("epoch 1/3")
            events.progress_end("epoch 1/3")
            events.progress_start("epoch 2/3")
    assert calls, f"{step} was never called: the test no longer reaches the display's start or stop"
    assert _display_is_down(console, events, stdout)


def test_ctrl_c_at_random_moments_of_a_busy_display_always_leaves_it_down(gate):
    rng = random.Random(0)
    for _ in range(60):
        console, stdout = _terminal(), sys.stdout
        events = ConsoleEvents(console)
        go, sent = threading.Event(), threading.Event()

        def ctrl_c_soon(go=go, sent=sent, delay: float = rng.uniform(0.0, 0.01)) -> None:
            go.wait()
            time.sleep(delay)
            os.kill(os.getpid(), signal.SIGINT)
            sent.set()

        sender = threading.Thread(target=ctrl_c_soon)
        sender.start()
        deadline = math.inf
        with pytest.raises(KeyboardInterrupt):
            go.set()
            with events:
                while True:
                    events.progress_start("epoch")
                    events.progress_step("epoch", 1, 2, "loss 0.1")
                    events.progress_end("epoch")
                    if sent.is_set():
                        deadline = min(deadline, time.monotonic() + 5)
                    if time.monotonic() > deadline:  # fail, never hang, should a signal go missing
                        pytest.fail(
                            f"a SIGINT sent 5 s ago raised nothing; SIGINT handler {signal.getsignal(signal.SIGINT)!r}"
                            f", threads {[t.name for t in threading.enumerate()]}"
                        )
        sender.join()
        assert _display_is_down(console, events, stdout)


def test_an_error_raised_by_clean_up_after_ctrl_c_counts_as_the_interrupt():
    try:
        try:
            raise KeyboardInterrupt
        finally:
            [].pop()
    except IndexError as exc:
        clean_up_error = exc
    assert _raised_while_interrupted(clean_up_error)
    assert not _raised_while_interrupted(IndexError("pop from empty list"))
    try:
        try:
            raise ValueError("first")
        except ValueError:
            raise RuntimeError("second") from None
    except RuntimeError as exc:
        assert not _raised_while_interrupted(exc)
