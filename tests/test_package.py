"""The installed package: one import name, one-way layering, command modules that do not import each other."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["space", "budgets", "posenet", "search"]  # the pipeline, in order


@pytest.mark.parametrize("name", ["search", "space", "budgets", "posenet", "studies"])
def test_no_generic_top_level_module_is_installed(tmp_path, name):
    # From an empty folder, so the checkout itself is not on sys.path.
    done = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 1 and f"No module named '{name}'" in done.stderr


def test_every_stage_imports_under_posenas(tmp_path):
    code = (
        "import posenas.space.spec, posenas.budgets.checker, posenas.posenet.pose.decode, "
        "posenas.posenet.nets.model, posenas.search.cli, posenas.studies; print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert done.stdout.strip() == "ok", done.stderr


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def _modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("stage", STAGES)
def test_data_flows_one_way(stage):
    later = [f"posenas.{s}" for s in STAGES[STAGES.index(stage) + 1 :]]
    for path in _modules(stage):
        upward = [m for m in _imports(path) if any(m == s or m.startswith(s + ".") for s in later)]
        assert not upward, f"{path.relative_to(ROOT)} imports a later stage: {upward}"


def test_pose_data_knows_nothing_of_networks():
    for path in _modules("posenet/pose"):
        nets = [m for m in _imports(path) if m.startswith("posenas.posenet.nets") or m == "torch"]
        assert not nets, f"{path.relative_to(ROOT)} imports {nets}"


def test_networks_know_nothing_of_the_export():
    """posenet/export reads networks and checkpoints; nothing in posenet/nets or posenet/pose imports it."""
    for folder in ("posenet/nets", "posenet/pose"):
        for path in _modules(folder):
            export = [m for m in _imports(path) if m.startswith("posenas.posenet.export")]
            assert not export, f"{path.relative_to(ROOT)} imports {export}"


# The command line's own modules: the only ones whose messages may name a flag.
CLI_MODULES = ("search/cli/",)  # the command line: the only modules whose messages may name a flag


def _raised_texts(path: Path) -> list[tuple[int, str]]:
    """The string parts of every exception raised in ``path`` (f-strings' literal parts included)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Raise) and node.exc is not None:
            for part in ast.walk(node.exc):
                if isinstance(part, ast.Constant) and isinstance(part.value, str):
                    found.append((part.lineno, part.value))
    return found


def test_library_errors_never_name_a_flag():
    """A library error says what is wrong in the library's words (a setting, an output folder); only the
    command line names its flags, so the same library call reads right from Python and from any front end."""
    import re

    flag = re.compile(r"(?<![\w-])--[a-z][a-z-]+")
    named = []
    for stage in STAGES + ["posenas"]:
        for path in _modules(stage):
            where = str(path.relative_to(ROOT))
            if where.startswith(CLI_MODULES):
                continue
            named += [f"{where}:{line}: {text!r}" for line, text in _raised_texts(path) if flag.search(text)]
    assert not named, "library errors naming a flag:\n" + "\n".join(named)


def test_only_the_command_line_parses_arguments_and_renders():
    """argparse and rich only in search/cli/: the library reports to an Events object (posenas/events.py)."""
    for stage in STAGES + ["posenas"]:
        for path in _modules(stage):
            where = str(path.relative_to(ROOT))
            if where.startswith(CLI_MODULES):
                continue
            found = _imports(path)
            assert not any(m == "argparse" or m.startswith("argparse.") for m in found), f"{where} imports argparse"
            rich = sorted(m for m in found if m == "rich" or m.startswith("rich."))
            assert not rich, f"{where} imports {rich}"


def test_command_modules_do_not_import_each_other():
    commands = {p.stem for p in _modules("search/cli/commands")} - {"__init__"}
    for path in _modules("search/cli/commands"):
        siblings = [
            m
            for m in _imports(path)
            if m.startswith("posenas.search.cli.commands.") and m.rsplit(".", 1)[-1] in commands
        ]
        assert not siblings, f"{path.relative_to(ROOT)} imports {siblings}"


def test_help_does_not_import_heavy_libraries(tmp_path):
    code = (
        "import sys; from posenas.search.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('torch', 'optuna', 'cv2', 'pycocotools', 'plotly') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
