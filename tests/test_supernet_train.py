"""Supernet training: sandwich sampling draws only networks the budget accepts, the same seed gives the same
networks, a killed run resumes to exactly the weights of an uninterrupted one, and the command line runs end
to end (and refuses a folder of another space in one line, exit 2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from posenas.budgets.checker import check
from posenas.budgets.device import load_budget
from posenas.errors import CheckpointError
from posenas.posenet.nets.config import SupernetConfig
from posenas.posenet.nets.supernet_train import SupernetTrainer, load_supernet, sandwich
from posenas.search.settings import load_settings
from posenas.space.subnets import smallest_arch

# A narrow space of the default study's shape, so that a supernet trains in seconds on a CPU.
SMALL_STUDY = """\
name: small
budget: max78000
space:
  input_size: 128
  stems: [pool, fold]
  width_step: 8
  bits: [8, 4, 2]
  backbone:
    - {name: conv1, width: [8, 16]}
    - {name: conv2, width: [8, 16], kernels: [1, 3]}
    - {name: conv3, width: [8, 16], kernels: [1, 3], optional: true}
    - {name: conv4, width: [8, 24], pool: 2}
    - {name: conv5, width: [8, 24], kernels: [1, 3], optional: true}
    - {name: conv6, width: [8, 24], pool: 2}
  cpm: {depth: [1, 2], width: [8, 24], kernels: [1, 3]}
  head: {width: [8, 16]}
teacher: none
"""


@pytest.fixture()
def small_study(tmp_path: Path) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL_STUDY)
    return path


@pytest.fixture(scope="module")
def data(synth_root) -> Path:
    return synth_root(16, 4, 0)


def test_sandwich_draws_only_feasible_random_networks() -> None:
    space = load_settings("max78000").space
    budget = load_budget("max78000")
    config = SupernetConfig(random_subnets=3, seed=5)
    seen = set()
    for step in range(40):
        nets = sandwich(space, budget, config, epoch=1, step=step, qat=True)
        assert not check(nets.largest, budget).fits  # the largest is the teacher, not a chip network
        for spec in nets.others[1:]:
            assert check(spec, budget).fits, spec.name
            seen.add(spec.spec_hash())
        # In QAT every subnet but the teacher has weight bits drawn per layer.
        assert {layer.weight_bits for layer in nets.largest.layers()} == {8}
    assert len(seen) > 100  # 120 draws, nearly all different networks
    again = sandwich(space, budget, config, epoch=1, step=7, qat=True)
    assert again == sandwich(space, budget, config, epoch=1, step=7, qat=True)
    assert again != sandwich(space, budget, config, epoch=2, step=7, qat=True)


def _train(study: Path, data: Path, out: Path, **callbacks) -> torch.nn.Module:
    config = SupernetConfig(epochs=2, qat_epochs=1, batch_size=8, random_subnets=1, seed=3)
    return SupernetTrainer(
        load_settings(study).space, load_budget("max78000"), data, out, config, study="small", **callbacks
    ).run()


def test_killed_run_resumes_to_the_same_weights(small_study: Path, data: Path, tmp_path: Path) -> None:
    whole = _train(small_study, data, tmp_path / "whole")

    def kill(record) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _train(small_study, data, tmp_path / "killed", on_epoch=kill)
    saved = torch.load(tmp_path / "killed" / "supernet.pt", weights_only=True)
    assert saved["posenas_supernet"]["epoch"] == 0 and saved["posenas_supernet"]["mode"] == "float"
    resumed = _train(small_study, data, tmp_path / "killed")
    for key, tensor in whole.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[key]), key
    net, info = load_supernet(tmp_path / "killed", load_settings(small_study).space)
    assert info["mode"] == "qat" and len(info["history"]) == 2
    assert all(h["loss_largest"] > 0 for h in info["history"])


def test_supernet_of_another_space_is_refused(small_study: Path, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    config = SupernetConfig(epochs=1, qat_epochs=0, batch_size=8, random_subnets=0)
    SupernetTrainer(load_settings(small_study).space, load_budget("max78000"), data, out, config).run()
    with pytest.raises(CheckpointError, match="another search space"):
        load_supernet(out, load_settings("max78000").space)
    with pytest.raises(CheckpointError, match="another search space"):
        SupernetTrainer(load_settings("max78000").space, load_budget("max78000"), data, out, config).run()


def _posenas(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "posenas.search.cli", *args], capture_output=True, text=True, timeout=600
    )


def test_cli_trains_resumes_and_refuses_bad_input(small_study: Path, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "sn"
    args = [
        "supernet",
        "--study",
        str(small_study),
        "--data",
        str(data),
        "--teacher",
        "none",
        "--epochs",
        "1",
        "--qat-epochs",
        "0",
        "--batch-size",
        "8",
        "--random-subnets",
        "1",
        "--out",
        str(out),
    ]
    first = _posenas(*args)
    assert first.returncode == 0, first.stderr
    assert "supernet epoch 1/1" in first.stdout
    assert torch.load(out / "supernet.pt", weights_only=True)["posenas_supernet"]["epoch"] == 0
    again = _posenas(*args)
    assert again.returncode == 0 and "resuming" in again.stdout
    other = _posenas(*args[:2], "max78000", *args[3:])  # the same folder, another study's space
    assert other.returncode == 2
    assert len(other.stderr.strip().splitlines()) == 1 and "another search space" in other.stderr
    bad = _posenas(*args[:-1], str(tmp_path / "x"), "--epochs", "0")
    assert bad.returncode == 2 and "--epochs" in bad.stderr
    # Scoring: a network of the space gets a row; one outside it (tiny-hw is wider) one line and exit 2.
    spec_file = tmp_path / "smallest.yaml"
    spec_file.write_text(smallest_arch(load_settings(small_study).space, "fold").renamed("smallest").to_yaml())
    scored = _posenas(*args, "--score", str(spec_file), "--val-images", "2")
    assert scored.returncode == 0, scored.stderr
    assert "smallest" in scored.stdout and "supernet scores (2 validation images)" in scored.stdout
    outside = _posenas(*args, "--score", "tiny-hw")
    assert outside.returncode == 2 and len(outside.stderr.strip().splitlines()) == 1
    assert "outside the supernet's search space: tiny-hw" in outside.stderr
