"""Every option of every command, walked from the argument parser itself (issue 26): a new option is covered
without anyone adding it here.

Each option declares what it accepts once (``search/cli/options.py``); these tests hold every declared
option to its families of bad values: numbers (negative, zero, huge, NaN, infinite, not a number), output
paths (a name over NAME_MAX, a path over PATH_MAX, /proc, an existing file or folder of the wrong kind, a
read-only parent, a missing parent), input paths (over-long) and storage URLs (empty, in memory, unknown).
Each must end in exit 2, one line that starts with ``posenas: error:`` and names the option, with nothing
written; or, for a number, be inside the range the option declares (and shows in ``--help``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
from pathlib import Path

import pytest

from posenas.search import ranges
from posenas.search.cli import build_parser, main, options


def _options() -> list[tuple[tuple[str, ...], argparse.Action]]:
    """(command words, action) of every option and positional argument of every command."""
    found = []

    def walk(parser: argparse.ArgumentParser, words: tuple[str, ...]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, (*words, name))
            elif not isinstance(action, argparse._HelpAction):
                found.append((words, action))

    walk(build_parser(), ())
    return found


OPTIONS = _options()
FLAGS = (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse.BooleanOptionalAction)


def _typed(kind: type | tuple[type, ...]) -> list[tuple[tuple[str, ...], str, argparse.Action]]:
    return [(words, (a.option_strings or [a.dest])[0], a) for words, a in OPTIONS if isinstance(a.type, kind)]


def _id(case: tuple) -> str:
    return " ".join(case[0]) + " " + case[1]


def _refused(capsys, argv: list[str], flag: str) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, f"{argv}: exit {code}: {err}"
    assert err.count("\n") == 1 and err.startswith("posenas: error: "), err
    assert "Traceback" not in err
    if flag.startswith("--"):
        assert f"argument {flag}" in err or f"argument {flag}/" in err, err
    return err


def test_every_option_declares_what_it_accepts() -> None:
    undeclared = [
        f"{' '.join(words)} {(a.option_strings or [a.dest])[0]}"
        for words, a in OPTIONS
        if not isinstance(a, FLAGS)
        and a.choices is None
        and not isinstance(a.type, options.OptionType)
        and a.dest != "command"
    ]
    assert not undeclared, f"options without a type from posenas.search.cli.options: {undeclared}"
    assert len(OPTIONS) > 120  # the walk reached every command


def test_the_synthetic_image_limit_is_the_generators() -> None:
    from posenas.posenet.pose import synth

    assert ranges.MAX_SYNTH_IMAGES == synth.MAX_IMAGES_PER_SPLIT - 1


NUMERIC = _typed((options.Integer, options.Number))
BAD_NUMBERS = ("-1", "0", "1e30", "99999999999999999999", "nan", "inf", "-inf", "many", "", "1.5")


@pytest.mark.parametrize("words, flag, action", NUMERIC, ids=[_id(c) for c in NUMERIC])
def test_a_bad_number_is_one_line_naming_the_option(words, flag, action, capsys) -> None:
    kind = action.type
    for text in BAD_NUMBERS:
        try:
            value = kind(text)
        except argparse.ArgumentTypeError:
            _refused(capsys, [*words, flag, text], flag)
            continue
        # accepted: only a finite value inside the declared range, which --help states
        assert text in ("0", "1.5") and kind.low <= value <= kind.high, (flag, text, value)
    for text in ("nan", "inf", "many", "1e30", "-1"):  # never accepted by any option
        with pytest.raises(argparse.ArgumentTypeError):
            kind(text)
    assert kind.describe() in action.help  # the range a value is documented valid by


def test_the_message_gives_the_range(capsys) -> None:
    words, flag, _ = next(c for c in NUMERIC if c[1] == "--seed")
    err = _refused(capsys, [*words, flag, "-1"], flag)
    assert err == f"posenas: error: {' '.join(words)}: argument --seed: must be an integer in [0, 4294967295], got -1\n"


@pytest.fixture(scope="module")
def read_only_folder(tmp_path_factory) -> Path:
    """A folder nothing can be written into, root included: a read-only tmpfs where mounting is allowed,
    else (not root) a folder without write permission."""
    folder = tmp_path_factory.mktemp("read-only")
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"root, and cannot mount a read-only tmpfs here ({mounted.stderr.decode().strip()})")
    yield folder
    with contextlib.suppress(Exception):
        subprocess.run(["umount", str(folder)], check=False)


OUTPUTS = _typed((options.OutputFolder, options.OutputFile))


@pytest.mark.parametrize("words, flag, action", OUTPUTS, ids=[_id(c) for c in OUTPUTS])
def test_a_bad_output_path_is_one_line_and_writes_nothing(
    words, flag, action, tmp_path, read_only_folder, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    folder_wanted = isinstance(action.type, options.OutputFolder)
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "a-folder").mkdir()
    os.mkfifo(tmp_path / "a-fifo")  # writing would block until someone reads it
    cases = {
        "a FIFO": str(tmp_path / "a-fifo"),
        "long name": str(tmp_path / ("n" * 300)),
        "long path": str(tmp_path / "/".join(["p" * 200] * 25)),
        "/proc": "/proc/posenas-out",
        "/sys": "/sys/posenas-out",
        "wrong kind": str(tmp_path / ("a-file" if folder_wanted else "a-folder")),
        "under a file": str(tmp_path / "a-file" / "out"),
        "read-only parent": str(read_only_folder / "out"),
        "missing parent": str(tmp_path / "missing" / "out"),
    }
    before = sorted(tmp_path.rglob("*"))
    for what, path in cases.items():
        err = _refused(capsys, [*words, flag, path], flag)
        assert "Traceback" not in err, what
    assert sorted(tmp_path.rglob("*")) == before, "an output was written"
    assert not list(read_only_folder.iterdir())


INPUTS = _typed(options.InputPath)


@pytest.mark.parametrize("words, flag, action", INPUTS, ids=[_id(c) for c in INPUTS])
def test_an_input_path_no_file_system_takes_is_one_line(words, flag, action, tmp_path, capsys) -> None:
    """Too long, empty, a NUL byte; and what would be read forever or means nothing: a device, a FIFO, /proc."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (
        str(tmp_path / ("n" * 300)),
        "/".join(["p" * 200] * 25),
        "",
        "a\0b",
        "/dev/zero",
        str(fifo),
        "/proc/self/status",
    ):
        if "\0" in path:  # argv cannot carry a NUL byte; the type still refuses it
            with pytest.raises(argparse.ArgumentTypeError):
                action.type(path)
            continue
        _refused(capsys, [*words, flag, path] if flag.startswith("--") else [*words, path], flag)


STORAGES = _typed(options.Storage)


@pytest.mark.parametrize("words, flag, action", STORAGES, ids=[_id(c) for c in STORAGES])
def test_a_storage_that_would_lose_the_study_is_refused(words, flag, action, capsys) -> None:
    for url, says in (
        ("", "empty"),
        (" ", "empty"),
        ("sqlite://", "in-memory"),
        ("sqlite:///:memory:", "in-memory"),
        ("mysql://x/y", "not a storage URL"),
        ("study.db", "not a storage URL"),
    ):
        assert says in _refused(capsys, [*words, flag, url], flag)


TEXTS = _typed(options.Text)


@pytest.mark.parametrize("words, flag, action", TEXTS, ids=[_id(c) for c in TEXTS])
def test_an_empty_or_endless_text_is_refused(words, flag, action, capsys) -> None:
    for text in ("", "  ", "x" * 1001):
        _refused(capsys, [*words, flag, text], flag)


def test_a_device_that_is_not_here_is_one_line_in_every_command(capsys) -> None:
    devices = _typed(options.Device)
    assert {" ".join(w) for w, _, _ in devices} >= {"train", "teacher", "search", "supernet", "eval", "predict"}
    for words, flag, _ in devices:
        assert "not a device" in _refused(capsys, [*words, flag, "tpu"], flag)


def test_a_postgresql_host_that_does_not_answer_fails_in_the_connect_timeout(tmp_path, monkeypatch, capsys) -> None:
    """A server that accepts the TCP connection and never speaks (a firewall, a hung host): libpq alone would
    wait for minutes; posenas gives up after its connect timeout, in one line, with the password masked."""
    import socket
    import time

    from posenas.search import storage

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel completes the handshake; nothing ever answers
    monkeypatch.setattr(storage, "CONNECT_TIMEOUT_S", 1)
    url = f"postgresql://bob:secret@127.0.0.1:{silent.getsockname()[1]}/db"
    search = ["search", "--storage", url, "--out", str(tmp_path / "s")]
    try:
        for argv, out in (
            (["plot", "--study", "s", "--storage", url, "--out", str(tmp_path / "p")], "p"),
            (search, "s"),
        ):
            started = time.monotonic()
            err = _refused(capsys, argv, "storage")
            assert time.monotonic() - started < 8  # 1 s per attempt (libpq tries the host once per address)
            assert "cannot be opened" in err and "timeout" in err and "secret" not in err and "bob:***@" in err
            assert not (tmp_path / out).exists()  # refused before the output folder is made
    finally:
        silent.close()
    assert capsys.readouterr().out == ""  # nothing said before the refusal (no "time budget ..." line)
    assert storage.connect_args(url.replace("db", "db?connect_timeout=30")) == {}  # the URL's own setting wins


@pytest.mark.parametrize("words, flag, action", OUTPUTS, ids=[_id(c) for c in OUTPUTS])
def test_a_good_output_path_passes(words, flag, action, tmp_path, monkeypatch) -> None:
    """A new name in an existing folder, an existing output of the right kind (a rerun), a relative path."""
    monkeypatch.chdir(tmp_path)
    if isinstance(action.type, options.OutputFolder):
        (tmp_path / "old").mkdir()
        good = [tmp_path / "new", tmp_path / "old", Path("rel")]
        good += [Path("/dev/shm/posenas-out")] if Path("/dev/shm").is_dir() else []  # tmpfs: not special
    else:
        (tmp_path / "old.yaml").write_text("x")
        good = [tmp_path / "new.yaml", tmp_path / "old.yaml", Path("rel.yaml")]
    for path in good:
        assert action.type(str(path)) == path
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ("old" if isinstance(action.type, options.OutputFolder) else "old.yaml")
    ]
