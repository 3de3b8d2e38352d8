"""Untrusted weight files: one-line errors for wrong keys and shapes in run checkpoints."""

from __future__ import annotations

import pytest
import torch

from posenas.posenet.nets.checkpoint import CheckpointError, RunCheckpoint, load_checkpoint, save_checkpoint
from posenas.posenet.nets.layers import QuantMode
from posenas.posenet.nets.model import build_model
from posenas.space.baselines import get_arch


def _saved(tmp_path, state):
    spec = get_arch("tiny-hw")
    return save_checkpoint(RunCheckpoint(spec=spec, mode=QuantMode.FLOAT, epoch=0, state_dict=state), tmp_path / "c.pt")


def test_run_checkpoint_round_trip_and_refusals(tmp_path):
    state = build_model(get_arch("tiny-hw")).state_dict()
    assert load_checkpoint(_saved(tmp_path, state)).epoch == 0
    with pytest.raises(CheckpointError, match=r"1 unexpected key\(s\), first 'extra.weight'"):
        load_checkpoint(_saved(tmp_path, {**state, "extra.weight": torch.zeros(1)}))
    wrong = dict(state, **{"conv1.op.weight": torch.zeros(16, 3, 1, 1)})
    with pytest.raises(CheckpointError, match=r"'conv1.op.weight' has shape \(16, 3, 1, 1\), expected \(16, 3, 3, 3\)"):
        load_checkpoint(_saved(tmp_path, wrong))
    missing = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    with pytest.raises(CheckpointError, match=r"key\(s\) missing, first 'conv1.bn.num_batches_tracked'"):
        load_checkpoint(_saved(tmp_path, missing))
    torch.save({"state_dict": state}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a posenas run checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="absent.pt: checkpoint not found"):
        load_checkpoint(tmp_path / "absent.pt")
