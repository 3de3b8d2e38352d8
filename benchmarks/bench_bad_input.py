"""Bad input to every command, by families, each case a real process: the goal of issue 26.

Goal: 100 % of a bad-input set (more than 300 cases across all commands) ends in exit 2 with exactly one
line on stderr, ``posenas: error: ...``; nothing is written outside the output path the case names; no
case runs over 15 s; no traceback.

    python benchmarks/bench_bad_input.py [--jobs 2] [--only FAMILY ...] [--limit N] [--results PATH] \
        [--work DIR --keep] [--no-controls]

The cases come from the real argument parser (``posenas.search.cli.build_parser``) and the default study
file, so a new option or study key is covered without anyone adding it here. Families:

* ``paths``: every path-like option (``OutputFolder``, ``OutputFile``, ``InputPath`` in search/cli/options.py;
  positional arguments included): a name over NAME_MAX (300 characters), a path over PATH_MAX (5,000),
  /proc, /sys, the wrong kind (an existing file for a folder, an existing folder for a file; an input gets
  both), under a file, a missing parent, /dev/null, /dev/zero, a FIFO, empty, a read-only parent (a
  read-only tmpfs, since root ignores permissions; skipped, and said so, where mounting is not allowed).
* ``numbers``: every ``Integer``/``Number`` option (and integer ``choices``): -1, 0, 10**12, nan, inf, abc
  and empty. A value inside the option's declared range (``describe()``, shown by ``--help``) is
  documented valid: it is listed, not run, and not counted.
* ``storage``: every ``--storage``: ``sqlite://`` (in memory), empty, ``sqlite:////proc/x.db``, an unknown
  scheme, a PostgreSQL address that does not answer (10.255.255.1, and a local port that accepts the
  connection and never speaks, which only the 10 s connect timeout ends), a damaged SQLite file, a
  missing folder, a folder, a text file.
* ``study``: every key of the default study (walked as tests/test_study_keys.py walks it): the wrong type,
  out of range, an unknown key beside it; malformed YAML and JSON, an empty file, binary bytes, a list, the
  data/teacher alternatives; through ``search --study`` and ``supernet --study``.
* ``names``: unknown --arch, --budget, --device, study names, choices and free text; garbage spec,
  budget, results, teacher, supernet, image and checkpoint files (garbage bytes, a pickle of an arbitrary
  object, a pickle whose payload would make a folder, ``torch.save`` of a plain dict, 0 bytes); an empty
  data folder, a COCO root with a corrupt annotation JSON, one with corrupt images.
* ``usage``: no command, unknown commands and options, a stray word, each required option missing, an
  option without its value.

Each case runs ``python -m posenas.search.cli ...`` in its own fresh working folder (stdin closed, 15 s,
then its process group is killed: a hang). The valid rest of each command line is cheap (a 16 + 4 image
synthetic root, one epoch, ``--teacher none``, tiny-hw); with the controls on (the default) each such
base command is run once first, and must succeed, so a case's exit 2 is its bad value's. Checks per case:
exit 2; stderr has exactly one non-empty line, starting ``posenas: error:``; no "Traceback" in stdout or
stderr; nothing added, removed or changed in the working folder outside the case's output path, in the
shared fixtures (names, sizes, mtimes before and after) or at the top of /tmp. Cases run ``--jobs`` at a
time, so a change to the shared fixtures or /tmp is only counted when the case, rerun alone at the end,
makes one again.

``--results PATH`` writes ``{"machine", "cases", "passed", "by_family", "by_command", "failures":
[{"argv", "family", "why", "stderr_tail", ...}], "documented_valid", "skipped", "controls", ...}``
(paths under the working folder shown as ``$WORK``).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import pickle
import platform
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from posenas.search.cli import build_parser, options

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.study_values import get, leaves, out_of_range, replaced, wrong_type  # shared with the test

FAMILIES = ("paths", "numbers", "storage", "study", "names", "usage")
TIMEOUT_S = 15.0
CLI = [sys.executable, "-m", "posenas.search.cli"]
STUDY = "max78000"  # the study the fixture search makes (the default study's name)
BAD_NUMBERS = ("-1", "0", str(10**12), "nan", "inf", "abc", "")


class Lit(str):
    """An argument taken as it is (no ``{placeholder}`` is filled in)."""


# -- the valid, cheap rest of each command line ---------------------------------------------------------------
# command -> [(variant, positionals {dest: value}, flags)]. A case sets one option in the first variant that
# has it (or the one OPTION_VARIANT names; else the first) and keeps the rest. {out} is the case's output.
VARIANTS: dict[str, list[tuple[str, dict[str, str], str]]] = {
    "space show": [("default", {"arch": "tiny-hw"}, "")],
    "spec": [("default", {}, "--trial {trial} --study {study} --storage sqlite:///{db} --out {out}")],
    "budget": [("default", {}, "--arch tiny-hw --budget max78000")],
    "data synth": [("default", {}, "--out {out} --train 2 --val 1")],
    "data show": [("default", {"root": "{root}"}, "--out {out} --count 2")],
    "eval": [
        ("oracle", {}, "--data {root} --oracle --limit 2"),
        ("checkpoint", {}, "--data {root} --checkpoint {ckpt} --limit 2"),
        ("teacher", {}, "--data {root} --teacher {teacher} --limit 2"),
        ("results", {}, "--data {root} --results {results}"),
    ],
    "teacher": [
        ("arch", {}, "--data {root} --arch tiny-hw --epochs 1 --out {out}"),
        ("checkpoint", {}, "--data {root} --checkpoint {ckpt} --out {out}"),
        ("images", {}, "--data {root} --checkpoint {ckpt} --images {images} --out {out}"),
    ],
    "train": [
        ("arch", {}, "--arch tiny-hw --data {root} --epochs 1 --qat-epochs 0 --val-images 2 --out {out}"),
        (
            "teacher",
            {},
            ("--arch tiny-hw --data {root} --teacher {teacher} --epochs 1 --qat-epochs 0 --val-images 2 --out {out}"),
        ),
        ("trial", {}, "--trial {trial} --study {study} --storage sqlite:///{db} --out {out}"),
    ],
    "search": [
        (
            "default",
            {},
            (
                "--data {root} --teacher none --trials 2 --scorer train --epochs 1 --qat-epochs 0 "
                "--val-images 2 --no-baselines --retrain 0 --out {out}"
            ),
        ),
        (
            "supernet",
            {},
            (
                "--data {root} --teacher none --trials 2 --scorer supernet --supernet {supernet} "
                "--finetune-steps 0 --epochs 1 --qat-epochs 0 --val-images 2 --no-baselines "
                "--retrain 0 --out {out}"
            ),
        ),
        ("study", {}, "--study {study_file} --out {out}"),
    ],
    "plot": [("default", {}, "--study {study} --storage sqlite:///{db} --out {out}")],
    "supernet": [
        (
            "default",
            {},
            ("--study max78000 --data {root} --teacher none --epochs 1 --qat-epochs 0 --train-images 16 --out {out}"),
        ),
        (
            "score",
            {},
            (
                "--study max78000 --data {root} --teacher none --epochs 1 --qat-epochs 0 "
                "--train-images 16 --score tiny-hw --val-images 2 --out {out}"
            ),
        ),
        ("study", {}, "--study {study_file} --out {out}"),
    ],
    "export": [
        ("checkpoint", {}, "--checkpoint {ckpt} --out {out} --no-build"),
        ("trial", {}, "--trial {trial} --study {study} --storage sqlite:///{db} --out {out} --no-build"),
    ],
    "predict": [
        ("data", {}, "--checkpoint {ckpt} --data {root} --limit 2 --out {out}"),
        ("images", {}, "--checkpoint {ckpt} --images {images} --limit 2 --out {out}"),
    ],
}
OPTION_VARIANT = {
    ("eval", "--teacher-input"): "teacher",
    ("eval", "--pooled-input"): "teacher",
    ("eval", "--mode"): "checkpoint",
    ("eval", "--device"): "checkpoint",
    ("teacher", "--refinement-stages"): "checkpoint",
    ("teacher", "--teacher-input"): "checkpoint",
    ("search", "--score-arithmetic"): "supernet",
    ("search", "--finetune-steps"): "supernet",
    ("search", "--retrain"): "supernet",
    ("train", "--study"): "trial",
    ("train", "--storage"): "trial",
    ("export", "--study"): "trial",
    ("export", "--storage"): "trial",
    ("supernet", "--val-images"): "score",
}
OUT_SUFFIX = {"spec": ".yaml", "data show": ".png"}  # an OutputFile's name (its command checks the suffix)


def _groups(flags: str, positionals: dict[str, str]) -> list[tuple[str, list[str]]]:
    """A variant as (key, tokens) groups: a positional's dest, or a flag with its values."""
    groups: list[tuple[str, list[str]]] = [(dest, [value]) for dest, value in positionals.items()]
    for token in shlex.split(flags):
        if token.startswith("--"):
            groups.append((token, [token]))
        else:
            groups[-1][1].append(token)
    return groups


@dataclass
class Command:
    words: tuple[str, ...]
    parser: argparse.ArgumentParser
    variants: dict[str, list[tuple[str, list[str]]]]

    @property
    def name(self) -> str:
        return " ".join(self.words)

    def out_action(self) -> argparse.Action | None:
        return next(
            (a for a in self.parser._actions if isinstance(a.type, (options.OutputFolder, options.OutputFile))), None
        )

    def out_template(self) -> str | None:
        return None if self.out_action() is None else "{scratch}/out" + OUT_SUFFIX.get(self.name, "")

    def variant_for(self, key: str) -> str:
        named = OPTION_VARIANT.get((self.name, key))
        if named:
            return named
        return next(
            (v for v, groups in self.variants.items() if any(k == key for k, _ in groups)), next(iter(self.variants))
        )

    def argv(
        self,
        key: str | None = None,
        values: list[str] | None = None,
        *,
        drop: tuple[str, ...] = (),
        variant: str | None = None,
        extra: list[str] | None = None,
    ) -> list[str]:
        """The variant's command line with ``key`` set to ``values`` (replaced or appended), ``drop`` left out."""
        name = variant or (self.variant_for(key) if key else next(iter(self.variants)))
        groups = [(k, list(t)) for k, t in self.variants[name] if k not in drop]
        if key is not None:
            tokens = list(values or []) if not key.startswith("--") else [key, *(values or [])]
            for i, (k, _) in enumerate(groups):
                if k == key:
                    groups[i] = (k, tokens)
                    break
            else:
                groups.append((key, tokens))
        return [*self.words, *(t for _, ts in groups for t in ts), *(extra or [])]


def commands() -> list[Command]:
    """Every leaf command of the parser, with its variants (a command missing from VARIANTS is still run,
    with only the option under test)."""
    found = []

    def walk(parser: argparse.ArgumentParser, words: tuple[str, ...]) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            name = " ".join(words)
            variants = {v: _groups(flags, pos) for v, pos, flags in VARIANTS.get(name, [("default", {}, "")])}
            found.append(Command(words, parser, variants))
        for sub in subs:
            for name, child in sub.choices.items():
                walk(child, (*words, name))

    walk(build_parser(), ())
    return found


def key_of(action: argparse.Action) -> str:
    return action.option_strings[0] if action.option_strings else action.dest


def valued(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The options and positionals that take a value."""
    return [
        a
        for a in parser._actions
        if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)) and a.nargs != 0
    ]


# -- cases ------------------------------------------------------------------------------------------------------
@dataclass
class Case:
    family: str
    command: str
    option: str
    label: str
    argv: list[str]
    out: str | None  # template of the output path the case names (None: none)
    index: int = 0


@dataclass
class Outcome:
    case: Case
    argv: list[str]
    code: int | None
    seconds: float
    stdout: str
    stderr: str
    why: list[str] = field(default_factory=list)
    suspects: list[str] = field(default_factory=list)  # shared fixtures or /tmp changed while it ran


def path_values(kind: str, suffix: str, sys_file: str, read_only: bool) -> list[tuple[str, str]]:
    """(label, value) of bad paths for an output folder, an output file (with ``suffix``) or an input."""
    long_path = "/".join(["p" * 200] * 25)  # 5,024 characters
    if kind == "input":
        values = [
            ("name over NAME_MAX", "{scratch}/" + "n" * 300),
            ("path over PATH_MAX", "{scratch}/" + long_path),
            ("/proc", "/proc/self/status"),
            ("/sys", sys_file),
            ("an existing file (text)", "{scratch}/afile"),
            ("an existing folder (empty)", "{scratch}/empty"),
            ("under a file", "{scratch}/afile/in"),
            ("missing parent", "{scratch}/missing/in"),
            ("/dev/null", "/dev/null"),
            ("/dev/zero", "/dev/zero"),
            ("FIFO", "{scratch}/fifo"),
            ("empty", ""),
        ]
        return values + ([("read-only parent", "{ro}/in")] if read_only else [])
    wrong = ("an existing file", "{scratch}/afile") if kind == "folder" else ("an existing folder", "{scratch}/empty")
    values = [
        ("name over NAME_MAX", "{scratch}/" + "n" * 300 + suffix),
        ("path over PATH_MAX", "{scratch}/" + long_path + suffix),
        ("/proc", "/proc/posenas-bench" + suffix),
        ("/sys", "/sys/posenas-bench" + suffix),
        wrong,
        ("under a file", "{scratch}/afile/out" + suffix),
        ("missing parent", "{scratch}/missing/out" + suffix),
        ("/dev/null", "/dev/null"),
        ("/dev/zero", "/dev/zero"),
        ("FIFO", "{scratch}/fifo" + suffix),
        ("empty", ""),
    ]
    return values + ([("read-only parent", "{ro}/out" + suffix)] if read_only else [])


def sys_file() -> str:
    return next(
        (p for p in ("/sys/kernel/uevent_seqnum", "/sys/power/state", "/sys/kernel") if os.path.exists(p)),
        "/sys/posenas-bench",
    )


def documented_valid(action: argparse.Action, text: str) -> bool:
    """``text`` is inside the range the option declares (its type, or its choices)."""
    if isinstance(action.type, (options.Integer, options.Number)):
        try:
            action.type(text)
            return True
        except argparse.ArgumentTypeError:
            return False
    try:
        return action.type(text) in action.choices
    except (TypeError, ValueError):
        return False


def path_cases(cmds: list[Command], read_only: bool) -> list[Case]:
    cases = []
    for cmd in cmds:
        for action in valued(cmd.parser):
            if isinstance(action.type, options.OutputFolder):
                kind = "folder"
            elif isinstance(action.type, options.OutputFile):
                kind = "file"
            elif isinstance(action.type, options.InputPath):
                kind = "input"
            else:
                continue
            key = key_of(action)
            for label, value in path_values(kind, OUT_SUFFIX.get(cmd.name, ""), sys_file(), read_only):
                out = value if kind != "input" else cmd.out_template()
                cases.append(Case("paths", cmd.name, key, label, cmd.argv(key, [value]), out or None))
    return cases


def number_cases(cmds: list[Command]) -> tuple[list[Case], list[str]]:
    cases, valid = [], []
    for cmd in cmds:
        for action in valued(cmd.parser):
            numeric = isinstance(action.type, (options.Integer, options.Number))
            if not numeric and not (action.type is int and action.choices):
                continue
            key = key_of(action)
            for text in BAD_NUMBERS:
                if documented_valid(action, text):
                    valid.append(f"{cmd.name} {key} {text}")
                    continue
                cases.append(Case("numbers", cmd.name, key, repr(text), cmd.argv(key, [Lit(text)]), cmd.out_template()))
    return cases, valid


def storage_cases(cmds: list[Command]) -> list[Case]:
    values = [
        ("in memory", "sqlite://"),
        ("empty", ""),
        ("on /proc", "sqlite:////proc/x.db"),
        ("unknown scheme", "mysql://u@localhost/x"),
        ("PostgreSQL 10.255.255.1", "postgresql://u@10.255.255.1:5432/x"),
        ("PostgreSQL host that never answers", "postgresql://u@127.0.0.1:{silent_port}/x"),
        ("damaged SQLite file", "sqlite:///{damaged_db}"),
        ("missing folder", "sqlite:///{scratch}/missing/x.db"),
        ("a folder", "sqlite:///{scratch}/empty"),
        ("a text file", "sqlite:///{scratch}/afile"),
    ]
    cases = []
    for cmd in cmds:
        for action in valued(cmd.parser):
            if isinstance(action.type, options.Storage):
                for label, value in values:
                    cases.append(
                        Case(
                            "storage",
                            cmd.name,
                            key_of(action),
                            label,
                            cmd.argv(key_of(action), [value]),
                            cmd.out_template(),
                        )
                    )
    return cases


# The study file's keys, walked as tests/test_study_keys.py walks them (keys the default study leaves at
# their defaults added), with the base values made cheap: a case that is wrongly accepted ends quickly.
EXTRA = {
    ("search", "population"): 16,
    ("train", "seed"): 0,
    ("train", "workers"): 0,
    ("train", "train_images"): 8,
    ("train", "weight_decay"): 0.0,
    ("train", "amp"): True,
    ("teacher", "train_images"): 8,
}
CHEAP = {
    ("data", "synthetic"): {"train": 16, "val": 4, "seed": 0},
    ("teacher", "arch"): "tiny-hw",
    ("teacher", "epochs"): 1,
    ("search", "trials"): 2,
    ("search", "timeout_minutes"): 2,
    ("search", "scorer"): "train",
    ("search", "finetune_steps"): 0,
    ("train", "epochs"): 1,
    ("train", "qat_epochs"): 0,
    ("train", "val_images"): 2,
    ("train", "batch_size"): 4,
}


def base_study() -> dict:
    study = yaml.safe_load((resources.files("posenas.studies") / f"{STUDY}.yaml").read_text())
    for (section, key), value in {**EXTRA, **CHEAP}.items():
        study[section][key] = copy.deepcopy(value)
    study["name"] = "bench-bad-input"
    return study


def _declared(path: tuple) -> Any:
    """The option type a study key shares with its flag (search/settings.py), if it has one."""
    from posenas.search import settings

    tables = {"search": settings.SEARCH_TYPES, "train": settings.TRAIN_TYPES, "teacher": settings.TEACHER_TYPES}
    if path[:2] == ("data", "synthetic") and len(path) == 3:
        return settings.SYNTHETIC_TYPES.get(path[2])
    return tables.get(path[0], {}).get(path[-1]) if len(path) == 2 else None


def study_files(folder: Path, bad: Path) -> tuple[list[tuple[str, str, Path]], list[str]]:
    """(key, label, file) of every bad study file, written into ``folder``; and the documented-valid values."""
    folder.mkdir(parents=True, exist_ok=True)
    base = base_study()
    made: list[tuple[str, str, Path]] = []
    valid: list[str] = []

    def write(key: str, label: str, content: str | bytes, suffix: str = ".yaml") -> None:
        path = folder / f"{len(made):03d}{suffix}"
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        made.append((key, label, path))

    for path in leaves(base, ()):
        key = ".".join(map(str, path))
        value = get(base, path)
        write(key, f"wrong type {wrong_type(value)!r}", yaml.safe_dump(replaced(base, path, wrong_type(value))))
        for bad_value in out_of_range(path, value):
            kind = _declared(path)
            if kind is not None and not (isinstance(bad_value, float) and math.isnan(bad_value)):
                try:
                    kind(str(bad_value))
                    valid.append(f"study {key}: {bad_value!r}")
                    continue
                except argparse.ArgumentTypeError:
                    pass
            write(key, f"out of range {bad_value!r}", yaml.safe_dump(replaced(base, path, bad_value)))
    parents = sorted({p[:-1] for p in leaves(base, ()) if len(p) > 1 and isinstance(get(base, p[:-1]), dict)})
    for parent in [(), *parents]:
        study = copy.deepcopy(base)
        get(study, parent)["tpyo"] = 1
        write(".".join(map(str, parent)) or "(top)", "unknown key 'tpyo'", yaml.safe_dump(study))
    write("(file)", "malformed YAML", "name: [unclosed\nspace: {\n")
    write("(file)", "malformed JSON", '{"name": "x", "space": {not json', ".json")
    write("(file)", "empty file", "")
    write("(file)", "binary bytes", bytes(range(256)) * 8)
    write("(file)", "a YAML list", "- name\n- space\n")
    write("(file)", "a YAML scalar", "42\n")
    without = {k: v for k, v in base.items() if k != "space"}
    write("space", "missing", yaml.safe_dump(without))
    write("data.root", "wrong type 5", yaml.safe_dump({**base, "data": {"root": 5}}))
    write("data.root", "a missing folder", yaml.safe_dump({**base, "data": {"root": str(bad / "no-such-root")}}))
    write("data.root", "an empty folder", yaml.safe_dump({**base, "data": {"root": str(bad / "empty-root")}}))
    write(
        "data",
        "root and synthetic",
        yaml.safe_dump({**base, "data": {"root": str(bad / "empty-root"), "synthetic": base["data"]["synthetic"]}}),
    )
    write("teacher.checkpoint", "wrong type 5", yaml.safe_dump({**base, "teacher": {"checkpoint": 5}}))
    write(
        "teacher.checkpoint",
        "a missing file",
        yaml.safe_dump({**base, "teacher": {"checkpoint": str(bad / "none.pt")}}),
    )
    write(
        "teacher.checkpoint",
        "garbage bytes",
        yaml.safe_dump({**base, "teacher": {"checkpoint": str(bad / "garbage.pt")}}),
    )
    write(
        "teacher", "checkpoint and arch", yaml.safe_dump({**base, "teacher": {"checkpoint": "x.pt", "arch": "tiny-hw"}})
    )
    write("teacher", "an unknown word", yaml.safe_dump({**base, "teacher": "bogus"}))
    write("budget", "an unknown device", yaml.safe_dump({**base, "budget": "max99"}))
    write("budget", "a garbage budget file", yaml.safe_dump({**base, "budget": str(bad / "garbage.yaml")}))
    write("objectives", "unknown objective", yaml.safe_dump({**base, "objectives": ["speed", "params"]}))
    write("objectives", "quality not first", yaml.safe_dump({**base, "objectives": ["params", "fg_loss"]}))
    return made, valid


def study_cases(cmds: list[Command], files: list[tuple[str, str, Path]]) -> list[Case]:
    cases = []
    for cmd in (c for c in cmds if "study" in c.variants):
        for key, label, path in files:
            cases.append(
                Case(
                    "study", cmd.name, key, label, cmd.argv("--study", [str(path)], variant="study"), cmd.out_template()
                )
            )
    return cases


def name_cases(cmds: list[Command], cuda: int) -> list[Case]:
    arch = [
        ("unknown architecture", "no-such-net"),
        ("garbage spec file (binary)", "{bad}/garbage.yaml"),
        ("YAML that is not a spec", "{bad}/notspec.yaml"),
        ("malformed JSON spec", "{bad}/spec.json"),
    ]
    checkpoint = [
        ("checkpoint of garbage bytes", "{bad}/garbage.pt"),
        ("pickle of an arbitrary object", "{bad}/pickle-object.pt"),
        ("pickle with a payload", "{bad}/pickle-payload.pt"),
        ("torch.save of a plain dict", "{bad}/torch-dict.pt"),
        ("empty checkpoint (0 bytes)", "{bad}/empty.pt"),
    ]
    data = [
        ("empty data folder", "{bad}/empty-root"),
        ("corrupt annotation JSON", "{bad}/corrupt-annotations-root"),
        ("annotation JSON of the wrong shape", "{bad}/wrong-annotations-root"),
        ("corrupt images", "{bad}/corrupt-image-root"),
    ]
    devices = [("unknown device", "tpu"), ("absent GPU", f"cuda:{max(cuda, 7)}")] + (
        [] if cuda else [("no GPU here", "cuda")]
    )
    by_dest = {
        "arch": arch,
        "score": arch,
        "device": devices,
        "data": data,
        "root": data,
        "checkpoint": checkpoint,
        "budget": [
            ("unknown budget", "max99"),
            ("garbage budget file", "{bad}/garbage.yaml"),
            ("YAML that is not a budget", "{bad}/notspec.yaml"),
        ],
        "results": [
            ("results of garbage bytes", "{bad}/garbage-results.json"),
            ("malformed results JSON", "{bad}/malformed-results.json"),
        ],
        "images": [
            ("a folder of corrupt images", "{bad}/corrupt-images"),
            ("a folder of text files", "{bad}/text-images"),
        ],
        "image": [("a corrupt image", "{bad}/garbage.png")],
        "supernet": [("a garbage supernet folder", "{bad}/garbage-supernet")],
    }
    cases = []
    for cmd in cmds:
        for action in valued(cmd.parser):
            key, dest = key_of(action), action.dest
            values = list(by_dest.get(dest, []))
            if dest == "teacher":
                values = (
                    checkpoint + [("a garbage teacher folder", "{bad}/garbage-teacher")]
                    if cmd.name == "eval"
                    else [("a garbage teacher folder", "{bad}/garbage-teacher"), ("unknown teacher", "no-such-teacher")]
                )
            if dest == "study":
                values = [("unknown study", "no-such-study")]
            if isinstance(action.type, options.Text):
                values = [
                    ("empty text", Lit("")),
                    ("blank text", Lit("   ")),
                    ("over 1,000 characters", Lit("x" * 1001)),
                    ("unknown value", Lit("no-such-value")),
                ]
            if action.choices is not None and action.type is not int:
                values = [("invalid choice", Lit("no-such-choice"))]
            for label, value in values:
                variant = READS_IMAGES.get(cmd.name) if value == "{bad}/corrupt-image-root" else None
                cases.append(
                    Case("names", cmd.name, key, label, cmd.argv(key, [value], variant=variant), cmd.out_template())
                )
    return cases


# A root with corrupt images is bad input only to a command line that reads the images: eval --oracle scores
# the annotations alone, so eval gets it with --checkpoint.
READS_IMAGES = {"eval": "checkpoint"}


def usage_cases(cmds: list[Command]) -> list[Case]:
    cases = [
        Case("usage", "(none)", "-", "no command", [], None),
        Case("usage", "(none)", "-", "unknown command", ["frobnicate"], None),
        Case("usage", "(none)", "-", "unknown option", ["--no-such-option"], None),
    ]
    for parent in sorted({c.words[:-1] for c in cmds if len(c.words) > 1}):
        name = " ".join(parent)
        cases += [
            Case("usage", name, "-", "no sub-command", list(parent), None),
            Case("usage", name, "-", "unknown sub-command", [*parent, "frobnicate"], None),
        ]
    for cmd in cmds:
        out = cmd.out_template()
        cases += [
            Case("usage", cmd.name, "-", "unknown option", cmd.argv(extra=["--no-such-option", "1"]), out),
            Case("usage", cmd.name, "-", "stray word", cmd.argv(extra=["stray"]), out),
        ]
        for action in cmd.parser._actions:
            if action.required and action.option_strings:
                key = key_of(action)
                cases.append(
                    Case(
                        "usage",
                        cmd.name,
                        key,
                        "required option missing",
                        cmd.argv(drop=(key,), variant=cmd.variant_for(key)),
                        out,
                    )
                )
            elif (
                action.required
                and action.nargs != 0
                and not action.option_strings
                and not isinstance(action, argparse._SubParsersAction)
            ):
                cases.append(
                    Case(
                        "usage", cmd.name, action.dest, "required argument missing", cmd.argv(drop=(action.dest,)), out
                    )
                )
        for group in cmd.parser._mutually_exclusive_groups:
            if group.required:
                keys = tuple(key_of(a) for a in group._group_actions)
                cases.append(
                    Case("usage", cmd.name, "|".join(keys), "none of a required group", cmd.argv(drop=keys), out)
                )
        for action in valued(cmd.parser):
            if action.option_strings:
                key = key_of(action)
                # the option last, without its value
                argv = cmd.argv(drop=(key,), variant=cmd.variant_for(key)) + [key]
                cases.append(Case("usage", cmd.name, key, "option without its value", argv, out))
    return cases


# -- fixtures ---------------------------------------------------------------------------------------------------
class _Payload:
    """Pickled into a checkpoint: makes a folder if unpickled without weights_only."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def run_posenas(argv: list[str], cwd: Path, timeout: float, env: dict[str, str]) -> tuple[int | None, str, str, float]:
    """Run the CLI in its own process group; (exit code or None after a timeout, stdout, stderr, seconds)."""
    started = time.monotonic()
    process = subprocess.Popen(
        [*CLI, *argv],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env=env,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
        code: int | None = process.returncode
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        stdout, stderr = process.communicate()
        code = None
    return code, stdout.decode(errors="replace"), stderr.decode(errors="replace"), time.monotonic() - started


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("AI8X_SYNTHESIS", None)  # export's default ai8xize.py run: not what these cases are about
    env.setdefault("OMP_NUM_THREADS", "1")  # a case is small; the machine is shared
    env["COLUMNS"] = "150"
    return env


def build_fixtures(fx: Path, console, jobs: int) -> dict[str, str]:
    """The shared inputs: a small synthetic root, a trained run, a teacher, a study, a supernet and the
    bad files; made once per --work folder (fixtures/READY)."""
    from posenas.posenet.pose import synth

    ready = fx / "READY"
    if ready.is_file():
        return json.loads(ready.read_text())
    if fx.exists():
        shutil.rmtree(fx)
    fx.mkdir(parents=True)
    env = child_env()
    root = fx / "root"
    synth.write_coco_root(root, train=16, val=4, seed=0)

    def posenas(argv: list[str], what: str) -> None:
        console.print(f"fixture: {what}: posenas {shlex.join(argv)}", highlight=False)
        code, out, err, seconds = run_posenas(argv, fx, 1800, env)
        if code != 0:
            raise SystemExit(f"fixture {what} failed (exit {code}, {seconds:.0f} s):\n{out[-2000:]}\n{err[-3000:]}")
        console.print(f"fixture: {what} in {seconds:.0f} s", highlight=False)

    def run_and_teacher() -> None:
        posenas(
            [
                "train",
                "--arch",
                "tiny-hw",
                "--data",
                str(root),
                "--epochs",
                "1",
                "--qat-epochs",
                "1",
                "--val-images",
                "2",
                "--out",
                str(fx / "run"),
            ],
            "a trained run",
        )
        posenas(
            ["teacher", "--data", str(root), "--checkpoint", str(fx / "run" / "best.pt"), "--out", str(fx / "teacher")],
            "a teacher",
        )

    steps = [
        run_and_teacher,
        lambda: posenas(
            [
                "search",
                "--data",
                str(root),
                "--teacher",
                "none",
                "--trials",
                "2",
                "--scorer",
                "train",
                "--epochs",
                "1",
                "--qat-epochs",
                "0",
                "--val-images",
                "2",
                "--no-baselines",
                "--retrain",
                "0",
                "--out",
                str(fx / "search"),
            ],
            "a study",
        ),
        lambda: posenas(
            [
                "supernet",
                "--study",
                STUDY,
                "--data",
                str(root),
                "--teacher",
                "none",
                "--epochs",
                "1",
                "--qat-epochs",
                "0",
                "--train-images",
                "16",
                "--out",
                str(fx / "supernet"),
            ],
            "a supernet",
        ),
    ]
    with ThreadPoolExecutor(max(1, min(jobs, len(steps)))) as pool:
        for future in [pool.submit(step) for step in steps]:
            future.result()

    # a trial with stand-alone weights (export --trial, train --trial)
    import optuna

    from posenas.errors import PosenasError
    from posenas.search.trials import trial_weights

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    url = f"sqlite:///{fx / 'search' / 'study.db'}"
    study = optuna.load_study(study_name=STUDY, storage=url)
    trial = None
    for t in study.get_trials(deepcopy=False):
        try:
            trial_weights(study, t.number, url)
            trial = t.number
            break
        except PosenasError:
            continue
    trial = trial if trial is not None else study.get_trials(deepcopy=False)[0].number

    annotations = json.loads((root / "annotations" / "person_keypoints_val2017.json").read_text())
    results = [
        {"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
        for a in annotations["annotations"]
    ]
    (fx / "results.json").write_text(json.dumps(results))
    (fx / "images").mkdir()
    jpgs = sorted((root / "val2017").glob("*.jpg"))
    for jpg in jpgs[:2]:
        shutil.copy(jpg, fx / "images" / jpg.name)
    make_bad_files(fx / "bad", root, fx / "search" / "study.db")
    study_dir = fx / "studies"
    cheap = fx / "study.yaml"
    cheap.write_text(yaml.safe_dump(base_study()))
    made = {
        "root": str(root),
        "ckpt": str(fx / "run" / "best.pt"),
        "teacher": str(fx / "teacher"),
        "supernet": str(fx / "supernet"),
        "db_source": str(fx / "search" / "study.db"),
        "study": STUDY,
        "trial": str(trial),
        "results": str(fx / "results.json"),
        "images": str(fx / "images"),
        "image": str(jpgs[0]),
        "bad": str(fx / "bad"),
        "study_file": str(cheap),
        "studies": str(study_dir),
    }
    ready.write_text(json.dumps(made))
    return made


def make_bad_files(bad: Path, root: Path, study_db: Path) -> None:
    import torch

    bad.mkdir()
    garbage = bytes((i * 7 + 13) % 256 for i in range(4096))
    (bad / "garbage.yaml").write_bytes(bytes(range(256)) * 4)
    (bad / "notspec.yaml").write_text("foo: bar\nlayers: 12\n")
    (bad / "spec.json").write_text('{"name": "x", "layers": [')
    (bad / "garbage.pt").write_bytes(garbage)
    (bad / "empty.pt").write_bytes(b"")
    with open(bad / "pickle-object.pt", "wb") as stream:
        pickle.dump({"state_dict": {"w": {1, 2, 3}}, "when": time.struct_time((2024, 1, 1, 0, 0, 0, 0, 1, 0))}, stream)
    with open(bad / "pickle-payload.pt", "wb") as stream:
        pickle.dump({"state_dict": _Payload(str(bad / "PWNED"))}, stream, protocol=2)
    torch.save({"hello": [1, 2, 3], "weights": torch.zeros(3)}, bad / "torch-dict.pt")
    (bad / "garbage-results.json").write_bytes(garbage)
    (bad / "malformed-results.json").write_text("[{]")
    (bad / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + garbage)
    (bad / "empty-root").mkdir()
    (bad / "garbage-teacher").mkdir()
    (bad / "garbage-teacher" / "teacher.json").write_bytes(garbage)
    (bad / "garbage-teacher" / "teacher.pt").write_bytes(garbage)
    (bad / "garbage-supernet").mkdir()
    (bad / "garbage-supernet" / "supernet.pt").write_bytes(garbage)
    (bad / "garbage-supernet" / "supernet.json").write_text("{not json")
    (bad / "corrupt-images").mkdir()
    (bad / "corrupt-images" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + garbage)
    (bad / "corrupt-images" / "b.jpg").write_bytes(garbage)
    (bad / "text-images").mkdir()
    (bad / "text-images" / "notes.txt").write_text("no images here\n")
    # COCO roots: the annotations of one split broken, or of the wrong shape, or the images broken
    for name, change in (
        ("corrupt-annotations-root", lambda text: text[: len(text) // 2]),
        ("wrong-annotations-root", lambda text: json.dumps([1, 2, 3])),
    ):
        copy_root = bad / name
        shutil.copytree(root, copy_root)
        for split in ("train", "val"):
            path = copy_root / "annotations" / f"person_keypoints_{split}2017.json"
            path.write_text(change(path.read_text()))
    shutil.copytree(root, bad / "corrupt-image-root")
    for split in ("train2017", "val2017"):
        for jpg in sorted((bad / "corrupt-image-root" / split).glob("*.jpg"))[:2]:
            jpg.write_bytes(garbage)
    # a damaged study database: the SQLite header kept, the pages after it overwritten
    data = bytearray(study_db.read_bytes())
    data[100:] = (garbage * (len(data) // len(garbage) + 1))[: len(data) - 100]
    (bad / "damaged.db").write_bytes(bytes(data))


def mount_read_only(folder: Path) -> str | None:
    """A read-only tmpfs at ``folder`` (root ignores permissions); None, or why not."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return None
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True, text=True, check=False
    )
    return None if done.returncode == 0 else (done.stderr.strip() or f"mount exit {done.returncode}")


class SilentServer:
    """A TCP port that accepts connections and never answers (a hung host, a firewall that swallows)."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(512)
        self.port = self.socket.getsockname()[1]
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self.held.append(connection)

    def close(self) -> None:
        self.socket.close()
        for connection in self.held:
            connection.close()


# -- running a case ---------------------------------------------------------------------------------------------
def snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry under ``folder``: files by (size, mtime), folders and others by their kind."""
    found: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(folder, onerror=lambda e: None):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if os.path.isdir(path) and not os.path.islink(path):
                found[path] = ("dir",)
            else:
                found[path] = ("file", st.st_size, st.st_mtime_ns)
    return found


def changed(before: dict[str, tuple], after: dict[str, tuple]) -> list[str]:
    out = [f"+{p}" for p in after if p not in before] + [f"-{p}" for p in before if p not in after]
    return sorted(out + [f"~{p}" for p in after if p in before and after[p] != before[p]])


def tmp_names(work: Path) -> set[str]:
    try:
        return {n for n in os.listdir("/tmp") if os.path.join("/tmp", n) != str(work)}
    except OSError:
        return set()


def resolve(argv: list[str], values: dict[str, str]) -> list[str]:
    def fill(text: str) -> str:
        if isinstance(text, Lit):
            return str(text)
        return re.sub(r"\{([a-z_]+)\}", lambda m: values[m.group(1)], text)

    return [fill(a) for a in argv]


class Runner:
    def __init__(self, work: Path, fixtures: dict[str, str], ro: Path | None, silent_port: int, timeout: float):
        self.work, self.fixtures, self.ro, self.timeout = work, fixtures, ro, timeout
        self.values = {**fixtures, "silent_port": str(silent_port), "ro": str(ro) if ro else "/nonexistent-ro"}
        self.shared = work / "fixtures"
        self.env = child_env()

    def scratch(self, case: Case, tag: str) -> Path:
        folder = self.work / "cases" / f"{case.index:04d}{tag}"
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        (folder / "afile").write_text("I am a file\n")
        (folder / "empty").mkdir()
        for suffix in ("", ".yaml", ".png"):
            os.mkfifo(folder / f"fifo{suffix}")
        return folder

    def run(self, case: Case, tag: str = "", watch_shared: bool = True) -> Outcome:
        folder = self.scratch(case, tag)
        values = {**self.values, "scratch": str(folder)}
        text = " ".join(case.argv)
        if "{db}" in text:
            shutil.copy(self.fixtures["db_source"], folder / "study.db")
            values["db"] = str(folder / "study.db")
        if "{damaged_db}" in text:
            shutil.copy(Path(self.fixtures["bad"]) / "damaged.db", folder / "damaged.db")
            values["damaged_db"] = str(folder / "damaged.db")
        out = None
        if case.out:
            out = os.path.normpath(os.path.join(folder, resolve([case.out], {**values, "out": ""})[0]))
        values["out"] = out or str(folder / "out")
        argv = resolve(case.argv, values)
        scratch_before = snapshot(folder)
        shared_before = snapshot(self.shared) if watch_shared else {}
        tmp_before = tmp_names(self.work)
        code, stdout, stderr, seconds = run_posenas(argv, folder, self.timeout, self.env)
        outcome = Outcome(case, argv, code, seconds, stdout, stderr)
        lines = [line for line in stderr.splitlines() if line.strip()]
        if code is None:
            outcome.why.append(f"hang: killed after {self.timeout:g} s")
        elif code != 2:
            outcome.why.append(f"exit {code}")
        if "Traceback" in stdout or "Traceback" in stderr:
            outcome.why.append("traceback")
        if code is not None and len(lines) != 1:
            outcome.why.append(f"{len(lines)} lines on stderr")
        elif lines and not lines[0].startswith("posenas: error:"):
            outcome.why.append("stderr does not start with 'posenas: error:'")
        wrote = [
            c
            for c in changed(scratch_before, snapshot(folder))
            if not (out and (c[1:] == out or c[1:].startswith(out + "/")))
        ]
        if wrote:
            outcome.why.append(
                "wrote outside --out: "
                + ", ".join(self.short(c) for c in wrote[:4])
                + (f" (+{len(wrote) - 4})" if len(wrote) > 4 else "")
            )
        if watch_shared:
            touched = changed(shared_before, snapshot(self.shared))
            if touched:
                outcome.suspects.append("fixtures: " + ", ".join(self.short(c) for c in touched[:4]))
        new_tmp = sorted(tmp_names(self.work) - tmp_before)
        if new_tmp:
            outcome.suspects.append("new in /tmp: " + ", ".join(new_tmp[:6]))
        shutil.rmtree(folder, ignore_errors=True)
        return outcome

    def short(self, text: str) -> str:
        text = text.replace(str(self.work), "$WORK")
        return text if len(text) <= 140 else f"{text[:100]}...({len(text)} chars)"


def shown_argv(argv: list[str], work: Path) -> list[str]:
    shown = []
    for a in argv:
        a = a.replace(str(work), "$WORK")
        shown.append(a if len(a) <= 120 else f"{a[:60]}...({len(a)} chars)")
    return shown


def tail(text: str, chars: int = 600) -> str:
    text = text.strip()
    return text if len(text) <= chars else "..." + text[-chars:]


# -- main -------------------------------------------------------------------------------------------------------
def all_cases(cmds: list[Command], fixtures: dict[str, str], read_only: bool) -> tuple[list[Case], list[str]]:
    import torch

    numbers, valid = number_cases(cmds)
    files, valid_keys = study_files(Path(fixtures["studies"]), Path(fixtures["bad"]))
    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    cases = (
        path_cases(cmds, read_only)
        + numbers
        + storage_cases(cmds)
        + study_cases(cmds, files)
        + name_cases(cmds, cuda)
        + usage_cases(cmds)
    )
    for i, case in enumerate(cases):
        case.index = i
    return cases, valid + valid_keys


def controls(runner: Runner, cmds: list[Command], jobs: int, console) -> dict[str, dict]:
    """Each base command line once, as is: it must succeed (exit 0), so a case's exit 2 is its bad value's."""
    from rich.markup import escape

    found: dict[str, dict] = {}
    items = [(cmd, v) for cmd in cmds for v in cmd.variants if cmd.name in VARIANTS]
    saved, runner.timeout = runner.timeout, 900.0

    def one(i: int, cmd: Command, variant: str) -> tuple[str, dict]:
        case = Case("control", cmd.name, "-", variant, cmd.argv(variant=variant), cmd.out_template(), index=9000 + i)
        o = runner.run(case, "-control", watch_shared=False)
        return f"{cmd.name} [{variant}]", {
            "argv": shown_argv(o.argv, runner.work),
            "exit": o.code,
            "seconds": round(o.seconds, 1),
            "ok": o.code == 0,
            "stderr_tail": tail(o.stderr, 400),
        }

    with ThreadPoolExecutor(jobs) as pool:
        futures = [pool.submit(one, i, cmd, v) for i, (cmd, v) in enumerate(items)]
        for future in as_completed(futures):
            name, row = future.result()
            found[name] = row
            console.print(
                f"control {escape(name)}: exit {row['exit']} in {row['seconds']} s"
                + ("" if row["ok"] else f"  [red]NOT VALID[/]: {escape(row['stderr_tail'][-200:])}"),
                highlight=False,
            )
    runner.timeout = saved
    return dict(sorted(found.items()))


def main() -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="cases run at a time (default 2)")
    parser.add_argument("--only", nargs="+", choices=FAMILIES, help="only these families")
    parser.add_argument("--limit", type=int, help="only N cases, spread evenly over the (filtered) list")
    parser.add_argument("--results", type=Path, help="write the JSON record here")
    parser.add_argument(
        "--work", type=Path, help="working folder (default: a new one under /tmp); its fixtures are reused"
    )
    parser.add_argument("--keep", action="store_true", help="keep the working folder")
    parser.add_argument("--no-controls", action="store_true", help="do not run the base command lines first")
    parser.add_argument(
        "--timeout", type=float, default=TIMEOUT_S, help=f"seconds before a case is a hang (default {TIMEOUT_S:g})"
    )
    args = parser.parse_args()
    console = Console(width=None if sys.stdout.isatty() else 200)
    started = time.monotonic()
    work = (args.work or Path(tempfile.mkdtemp(prefix="posenas-bench-bad-input-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    ro = work / "read-only"
    silent = SilentServer()
    why_not = mount_read_only(ro)
    skipped = [] if why_not is None else [f"read-only parent: cannot mount a read-only tmpfs ({why_not}); not run"]
    for line in skipped:
        console.print(f"[yellow]skipped[/]: {line}")
    try:
        fixtures = build_fixtures(work / "fixtures", console, args.jobs)
        setup_s = time.monotonic() - started
        cmds = commands()
        runner = Runner(work, fixtures, None if why_not else ro, silent.port, args.timeout)
        cases, valid = all_cases(cmds, fixtures, why_not is None)
        if args.only:
            cases = [c for c in cases if c.family in args.only]
        if args.limit and args.limit < len(cases):
            step = len(cases) / args.limit
            cases = [cases[int(i * step)] for i in range(args.limit)]
        control_rows = {} if args.no_controls else controls(runner, cmds, args.jobs, console)
        console.print(
            f"{len(cases)} cases ({', '.join(f'{f} {sum(c.family == f for c in cases)}' for f in FAMILIES)}); "
            f"{len(valid)} documented-valid values not run; {args.jobs} at a time, {args.timeout:g} s each"
        )
        outcomes: list[Outcome] = []
        run_started = time.monotonic()
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
        ) as progress:
            task = progress.add_task("cases", total=len(cases))
            with ThreadPoolExecutor(args.jobs) as pool:
                for future in as_completed([pool.submit(runner.run, c) for c in cases]):
                    outcomes.append(future.result())
                    failing = sum(1 for o in outcomes if o.why)
                    progress.update(task, advance=1, description=f"cases ({failing} failing)")
            # changes to the shared fixtures or /tmp: counted only when the case, alone, makes one again
            suspects = [o for o in outcomes if o.suspects]
            rerun = [
                {"value": o.case.label, "command": o.case.command, "option": o.case.option, "first": o.suspects}
                for o in suspects
            ]
            if suspects:
                task = progress.add_task(
                    "rerunning alone the cases that ran while fixtures or /tmp changed", total=len(suspects)
                )
                for o in suspects:
                    again = runner.run(o.case, "-alone")
                    o.why += [f"confirmed alone: {s}" for s in again.suspects]
                    progress.advance(task)
        cases_s = time.monotonic() - run_started
    finally:
        silent.close()
        if os.geteuid() == 0 and why_not is None:
            subprocess.run(["umount", str(ro)], capture_output=True, check=False)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    outcomes.sort(key=lambda o: o.case.index)
    failures = [o for o in outcomes if o.why]
    table = Table(
        "family",
        "command",
        "option",
        "value",
        "why",
        "s",
        "stderr (last line)",
        title=f"{len(failures)} failing of {len(outcomes)} cases",
    )
    for o in failures:
        last = (o.stderr.strip().splitlines() or [""])[-1]
        table.add_row(
            o.case.family, o.case.command, o.case.option, o.case.label, "; ".join(o.why), f"{o.seconds:.1f}", last[:120]
        )
    if failures:
        console.print(table)
    totals = Table("family / command", "cases", "passed", "failed", "max s", title="totals")
    by_family: dict[str, dict] = {}
    by_command: dict[str, dict] = {}
    for key, rows in (("family", by_family), ("command", by_command)):
        for o in outcomes:
            name = o.case.family if key == "family" else o.case.command
            row = rows.setdefault(name, {"cases": 0, "passed": 0, "max_s": 0.0})
            row["cases"] += 1
            row["passed"] += not o.why
            row["max_s"] = round(max(row["max_s"], o.seconds), 1)
    for rows in (by_family, by_command):
        for name, row in rows.items():
            totals.add_row(
                name, str(row["cases"]), str(row["passed"]), str(row["cases"] - row["passed"]), f"{row['max_s']:.1f}"
            )
        totals.add_section()
    console.print(totals)
    passed = len(outcomes) - len(failures)
    wall = time.monotonic() - started
    console.print(
        f"passed {passed} of {len(outcomes)} ({100 * passed / max(1, len(outcomes)):.1f} %); goal 100 % of "
        f"more than 300; slowest case {max((o.seconds for o in outcomes), default=0):.1f} s; "
        f"{wall / 60:.1f} min in all ({cases_s / 60:.1f} min of cases, {setup_s / 60:.1f} min of fixtures)"
    )
    if args.results:
        record = {
            "benchmark": "bench_bad_input.py",
            "machine": f"{platform.node()}: {os.cpu_count()} cores, {platform.processor() or platform.machine()}",
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "load_average": os.getloadavg()[0],
            "command": shlex.join([sys.executable, *sys.argv]),
            "jobs": args.jobs,
            "timeout_s": args.timeout,
            "wall_s": round(wall, 1),
            "cases_s": round(cases_s, 1),
            "fixtures_s": round(setup_s, 1),
            "cases": len(outcomes),
            "passed": passed,
            "pass_rate": round(passed / max(1, len(outcomes)), 4),
            "slowest_s": round(max((o.seconds for o in outcomes), default=0), 1),
            "by_family": by_family,
            "by_command": by_command,
            "failures": [
                {
                    "argv": shown_argv(o.argv, work),
                    "family": o.case.family,
                    "command": o.case.command,
                    "option": o.case.option,
                    "value": o.case.label,
                    "why": o.why,
                    "exit": o.code,
                    "seconds": round(o.seconds, 1),
                    "stderr_tail": tail(o.stderr.replace(str(work), "$WORK")),
                    "stdout_tail": tail(o.stdout.replace(str(work), "$WORK"), 300),
                }
                for o in failures
            ],
            "slowest": [
                {
                    "argv": shown_argv(o.argv, work),
                    "family": o.case.family,
                    "value": o.case.label,
                    "seconds": round(o.seconds, 1),
                    "passed": not o.why,
                }
                for o in sorted(outcomes, key=lambda o: -o.seconds)[:12]
            ],
            "rerun_alone": rerun,
            "documented_valid": valid,
            "skipped": skipped,
            "controls": control_rows,
        }
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(record, indent=1) + "\n")
        console.print(f"results: {args.results}")


if __name__ == "__main__":
    main()
