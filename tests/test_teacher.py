"""The Lightweight OpenPose teacher: the released checkpoint's keys and shapes, safe loading, output sizes."""

from __future__ import annotations

import collections

import pytest
import torch

from posenas.posenet.nets.teacher import LightweightOpenPose, TeacherError, load_lightweight_openpose, to_teacher_input


@pytest.mark.parametrize("stages, params, tensors", [(0, 2_483_065, 162), (1, 4_091_698, 250), (3, 7_308_964, 426)])
def test_parameter_and_key_counts_match_the_reference(stages, params, tensors):
    model = LightweightOpenPose(stages)
    assert sum(p.numel() for p in model.parameters()) == params
    assert len(model.state_dict()) == tensors


def test_key_names_and_shapes_of_the_released_layout():
    state = LightweightOpenPose(1).state_dict()
    expected = {
        "model.0.0.weight": (32, 3, 3, 3),
        "model.0.1.running_var": (32,),
        "model.1.0.weight": (32, 1, 3, 3),
        "model.1.3.weight": (64, 32, 1, 1),
        "model.11.4.bias": (512,),
        "cpm.align.0.weight": (128, 512, 1, 1),
        "cpm.align.0.bias": (128,),
        "cpm.trunk.2.0.weight": (128, 1, 3, 3),
        "cpm.trunk.2.2.weight": (128, 128, 1, 1),
        "cpm.conv.0.weight": (128, 128, 3, 3),
        "initial_stage.trunk.2.0.bias": (128,),
        "initial_stage.heatmaps.0.0.weight": (512, 128, 1, 1),
        "initial_stage.heatmaps.1.0.weight": (19, 512, 1, 1),
        "initial_stage.pafs.1.0.weight": (38, 512, 1, 1),
        "refinement_stages.0.trunk.0.initial.0.weight": (128, 185, 1, 1),
        "refinement_stages.0.trunk.4.initial.0.weight": (128, 128, 1, 1),
        "refinement_stages.0.trunk.0.trunk.1.0.weight": (128, 128, 3, 3),
        "refinement_stages.0.trunk.0.trunk.1.1.running_mean": (128,),
        "refinement_stages.0.heatmaps.1.0.weight": (19, 128, 1, 1),
        "refinement_stages.0.pafs.1.0.bias": (38,),
    }
    for key, shape in expected.items():
        assert tuple(state[key].shape) == shape, key
    assert "model.0.0.bias" not in state and "cpm.trunk.0.0.bias" not in state  # bias-free convs


def _released_like(tmp_path, stages: int = 3, prefix: str = "", drop_tracked: bool = False):
    """A file shaped like train.py's checkpoints: state_dict + optimizer + scheduler + counters."""
    torch.manual_seed(0)
    source = LightweightOpenPose(stages)
    for module in source.modules():  # non-trivial BN statistics, so a wrong copy shows
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    state = collections.OrderedDict(
        (prefix + k, v) for k, v in source.state_dict().items() if not (drop_tracked and "num_batches" in k)
    )
    checkpoint = {
        "state_dict": state,
        "optimizer": {"state": {}, "param_groups": [{"lr": 4e-5}]},
        "scheduler": {"milestones": {100: 1}},
        "iter": 370000,
        "current_epoch": 280,
    }
    path = tmp_path / "checkpoint_iter_370000.pth"
    torch.save(checkpoint, path)
    return path, source


@pytest.mark.parametrize("prefix, drop_tracked", [("", False), ("module.", True)])
def test_loads_three_stage_checkpoint_into_one_stage_teacher(tmp_path, prefix, drop_tracked):
    path, source = _released_like(tmp_path, 3, prefix, drop_tracked)
    teacher = load_lightweight_openpose(path, refinement_stages=1)
    assert not teacher.training
    for key, value in teacher.state_dict().items():
        if "num_batches" not in key:
            assert torch.equal(value, source.state_dict()[key]), key
    images = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        heatmaps, pafs = teacher.forward_rgb(images)
        assert heatmaps.shape == (2, 19, 16, 16) and pafs.shape == (2, 38, 16, 16)
        big_heatmaps, big_pafs = teacher(torch.zeros(1, 3, 368, 368))
        assert big_heatmaps.shape == (1, 19, 46, 46) and big_pafs.shape == (1, 38, 46, 46)
        # The one-stage teacher computes exactly what the source's first refinement stage computes.
        source.eval()
        features = source.cpm(source.model(to_teacher_input(images)))
        h0, p0 = source.initial_stage(features)
        h1, p1 = source.refinement_stages[0](torch.cat([features, h0, p0], dim=1))
        assert torch.allclose(heatmaps, h1, atol=1e-5) and torch.allclose(pafs, p1, atol=1e-5)


def test_teacher_input_is_bgr_centred_on_128():
    pixel = torch.tensor([1.0, 0.5, 0.0]).view(1, 3, 1, 1)  # RGB: 255, 127.5, 0
    assert to_teacher_input(pixel).flatten().tolist() == pytest.approx([-0.5, -0.001953125, 0.49609375])


def test_wrong_checkpoints_are_refused_with_one_line(tmp_path):
    path, _ = _released_like(tmp_path, 0)  # no refinement stage: a 1-stage teacher misses keys
    with pytest.raises(
        TeacherError, match=r"key\(s\) missing, first 'refinement_stages\.0\.trunk\.0\.initial\.0\.weight'"
    ):
        load_lightweight_openpose(path, refinement_stages=1)
    state = LightweightOpenPose(0).state_dict()
    state["cpm.align.0.weight"] = torch.zeros(128, 256, 1, 1)
    torch.save(state, tmp_path / "bad_shape.pth")
    with pytest.raises(
        TeacherError, match=r"'cpm\.align\.0\.weight' has shape \(128, 256, 1, 1\), expected \(128, 512, 1, 1\)"
    ):
        load_lightweight_openpose(tmp_path / "bad_shape.pth", refinement_stages=0)
    with pytest.raises(TeacherError, match="teacher checkpoint not found"):
        load_lightweight_openpose(tmp_path / "absent.pth")
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(TeacherError, match="not a loadable weights-only checkpoint"):
        load_lightweight_openpose(tmp_path / "text.pth")


class _Payload:
    """An arbitrary pickled object: a weights-only load must refuse to build it."""

    def __reduce__(self):
        return (print, ("this would run on load",))


def test_pickled_code_is_never_executed(tmp_path, capsys):
    torch.save({"state_dict": {}, "payload": _Payload()}, tmp_path / "evil.pth")
    with pytest.raises(TeacherError, match="not a loadable weights-only checkpoint"):
        load_lightweight_openpose(tmp_path / "evil.pth")
    assert "this would run" not in capsys.readouterr().out
