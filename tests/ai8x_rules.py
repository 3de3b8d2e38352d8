"""The rules an ai8x-synthesis network YAML and integer checkpoint must obey, written independently of
the exporter from docs/max78000.md sections 3, 4, 5, 8.2 and 8.4, so tests can check exports
against the documentation rather than against the exporter's own assumptions.

Each function returns a list of broken rules (empty = compliant).
"""

from __future__ import annotations

from typing import Any

import torch

TOP_LEVEL_KEYS = {"arch", "dataset", "layers", "output_map", "unload", "data_buffer", "bias", "weights", "snoop"}
LAYER_KEYS = {
    "processors",
    "out_offset",
    "op",
    "operation",
    "kernel_size",
    "pad",
    "activate",
    "activation",
    "max_pool",
    "avg_pool",
    "pool_stride",
    "data_format",
    "output_width",
    "flatten",
    "output_processors",
    "in_offset",
    "in_sequences",
    "in_dim",
    "in_crop",
    "in_channels",
    "out_channels",
    "name",
    "output",
    "write_gap",
    "eltwise",
    "operands",
    "pool_first",
    "quantization",
    "output_shift",
    "streaming",
    "bias_group",
    "weight_source",
    "groups",
    "dilation",
    "pool_dilation",
    "next_sequence",
}
OPS = {"conv2d", "conv1d", "convtranspose2d", "linear", "mlp", "fc", "passthrough", "none", "add", "sub", "xor", "or"}
MEMORY_BYTES = {"MAX78000": 32768, "MAX78002": 81920}


def _memories(processors: int) -> set[int]:
    return {m for m in range(16) if processors >> (4 * m) & 0xF}


def _passes(channels: int) -> tuple[int, int]:
    passes = -(-channels // 64)
    per_pass = -(-channels // passes)
    return passes, min(64, -(-per_pass // 4) * 4) if channels > 64 else per_pass


def yaml_violations(doc: dict[str, Any], nodes: list, arch: str, device: str = "MAX78000") -> list[str]:
    """Rules of section 8.2 (keys, values), 4 (layer limits), 5 (two heads) and 3 (data memory) for a
    YAML ``doc`` describing the layer ``nodes`` (space.graph.LayerNode) of a network."""
    broken: list[str] = []
    limit = MEMORY_BYTES[device]
    if set(doc) - TOP_LEVEL_KEYS:
        broken.append(f"unknown top-level keys {sorted(set(doc) - TOP_LEVEL_KEYS)}")
    if str(doc.get("arch", "")).lower() != arch.lower():
        broken.append(f"arch {doc.get('arch')!r} is not the checkpoint's {arch!r}")
    layers = doc.get("layers") or []
    if not 1 <= len(layers) <= 32:
        broken.append(f"{len(layers)} layers: 1..32 allowed")
    if len(layers) != len(nodes):
        broken.append(f"{len(layers)} YAML layers for {len(nodes)} weight layers")
        return broken
    names = [layer.get("name") for layer in layers]
    regions: list[tuple[int, set[int], int, int]] = []  # (layer, memories, start, end) of output: true results
    for i, (layer, node) in enumerate(zip(layers, nodes)):
        where = f"layer {i} ({layer.get('name')})"
        if set(layer) - LAYER_KEYS:
            broken.append(f"{where}: unknown keys {sorted(set(layer) - LAYER_KEYS)}")
        procs = layer.get("processors")
        if not isinstance(procs, int) or not 0 < procs < 2**64:
            broken.append(f"{where}: processors must be a 64-bit mask, got {procs!r}")
            continue
        if layer.get("op") not in OPS:
            broken.append(f"{where}: op {layer.get('op')!r}")
        k = node.kernel_size
        if layer.get("kernel_size") != f"{k}x{k}" or k not in (1, 3):
            broken.append(f"{where}: kernel_size {layer.get('kernel_size')!r}")
        pad = layer.get("pad", 0)
        if pad not in (0, 1, 2) or pad >= k:
            broken.append(f"{where}: pad {pad} (0..2 and < kernel)")
        act = layer.get("activate", "None")
        if act not in ("ReLU", "Abs", "None"):
            broken.append(f"{where}: activate {act!r}")
        pool = layer.get("max_pool") or layer.get("avg_pool")
        if pool and (layer.get("pool_stride") != pool or not 1 <= pool <= 16):
            broken.append(f"{where}: pooling {pool} with stride {layer.get('pool_stride')} (equal, 1..16)")
        if (pool or 0) != node.pool:
            broken.append(f"{where}: pooling {pool} but the network pools {node.pool}")
        if ("data_format" in layer) != (i == 0) or layer.get("data_format", "HWC") not in ("HWC", "CHW"):
            broken.append(f"{where}: data_format belongs to the first layer only (HWC or CHW)")
        if layer.get("output_width", 8) == 32:
            if act != "None":
                broken.append(f"{where}: a 32-bit output allows no activation")
        elif node.wide:
            broken.append(f"{where}: a wide output layer needs output_width: 32")
        if node.is_output and layer.get("output") is not True:
            broken.append(f"{where}: a head's output layer must be marked output: true")
        bits = layer.get("quantization", 8)
        if bits not in (1, 2, 4, 8) or bits != node.weight_bits:
            broken.append(f"{where}: quantization {bits} but the layer has {node.weight_bits}-bit weights")
        # Which tensor this layer reads, and where it lives.
        source = i - 1
        if "in_sequences" in layer:
            seq = layer["in_sequences"]
            ref = seq[0] if isinstance(seq, list) and len(seq) == 1 else None
            source = names.index(ref) if ref in names[:i] else (ref if isinstance(ref, int) and 0 <= ref < i else None)
            if source is None:
                broken.append(f"{where}: in_sequences {seq!r} must name one earlier layer")
                continue
        if source != node.source:
            broken.append(f"{where}: reads layer {source} but the network reads {node.source}")
        if source >= 0:
            producer = layers[source]
            if layer.get("in_offset", producer.get("out_offset", 0)) != producer.get("out_offset", 0):
                broken.append(f"{where}: in_offset differs from layer {source}'s out_offset")
            if procs != producer.get("output_processors", procs):
                broken.append(f"{where}: processors differ from layer {source}'s output processors")
        if i == 0 and layer.get("data_format") == "CHW":
            if procs != sum(1 << (4 * c) for c in range(node.in_channels)):
                broken.append(f"{where}: a CHW input puts one channel per memory (processors 0, 4, 8, ...)")
        elif node.in_channels <= 64 and bin(procs).count("1") != node.in_channels:
            broken.append(f"{where}: {bin(procs).count('1')} processors for {node.in_channels} input channels")
        # Data memory: each tensor within one memory instance, outputs not overwriting inputs or results.
        h, w = node.in_size
        in_bytes = h * w if i == 0 and layer.get("data_format") == "CHW" else h * w * _passes(node.in_channels)[0] * 4
        if layer.get("in_offset", 0) + in_bytes > limit:
            broken.append(f"{where}: input ends at {layer.get('in_offset', 0) + in_bytes} > {limit} bytes")
        oh, ow = node.out_size
        out_bytes = oh * ow * _passes(node.out_channels)[0] * 4 * (4 if node.wide else 1)
        out_start = layer.get("out_offset", 0)
        out_procs = layer.get("output_processors", procs)
        if out_start + out_bytes > limit:
            broken.append(f"{where}: output ends at {out_start + out_bytes} > {limit} bytes")
        out_mem = _memories(out_procs)
        in_start = layer.get("in_offset", 0)
        if out_mem & _memories(procs) and out_start < in_start + in_bytes and in_start < out_start + out_bytes:
            broken.append(f"{where}: output overlaps its own input")
        for j, mems, start, end in regions:
            if out_mem & mems and out_start < end and start < out_start + out_bytes:
                broken.append(f"{where}: output overwrites the result of output layer {j}")
        if layer.get("output") is True:
            regions.append((i, out_mem, out_start, out_start + out_bytes))
    # A tensor read later through in_sequences must survive every layer in between (izer does not check).
    for i, node in enumerate(nodes):
        if node.source >= 0 and node.source != i - 1:
            src = layers[node.source]
            h, w = nodes[node.source].out_size
            s_start = src["out_offset"]
            s_end = s_start + h * w * _passes(nodes[node.source].out_channels)[0] * 4
            s_mem = _memories(src.get("output_processors", src["processors"]))
            for j in range(node.source + 1, i):
                o = layers[j]
                oh, ow = nodes[j].out_size
                o_end = o["out_offset"] + oh * ow * _passes(nodes[j].out_channels)[0] * 4 * (4 if nodes[j].wide else 1)
                if (
                    _memories(o.get("output_processors", o["processors"])) & s_mem
                    and o["out_offset"] < s_end
                    and s_start < o_end
                ):
                    broken.append(f"layer {j} overwrites layer {node.source}'s output, which layer {i} still reads")
    return broken


def checkpoint_violations(checkpoint: dict[str, Any], arch: str, yaml_layers: int) -> list[str]:
    """Rules of section 8.4 (and 4's value ranges) for an integer checkpoint dict."""
    broken: list[str] = []
    for key in ("state_dict", "epoch"):
        if key not in checkpoint:
            broken.append(f"missing {key}")
    if str(checkpoint.get("arch", "")).lower() != arch.lower():
        broken.append(f"arch {checkpoint.get('arch')!r} is not {arch!r}")
    if not isinstance(checkpoint.get("epoch"), int):
        broken.append("epoch must be an int")
    state = checkpoint.get("state_dict", {})
    weights = [k for k in state if k.endswith(".weight")]
    if len(weights) != yaml_layers:
        broken.append(f"{len(weights)} weight keys for {yaml_layers} YAML layers")
    for key in weights:
        prefix = key[: -len("op.weight")]
        if not key.endswith(".op.weight"):
            broken.append(f"{key}: not a layer's op.weight (batch-norm not folded?)")
            continue
        w = state[key]
        bits = int(state[prefix + "weight_bits"].item())
        if bits not in (1, 2, 4, 8):
            broken.append(f"{prefix}weight_bits {bits}")
            continue
        lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        if w.dim() != 4 or not torch.equal(w, w.round()) or w.min() < lo or w.max() > hi:
            broken.append(f"{key}: must be 4-D integers in [{lo}, {hi}]")
        if prefix + "op.bias" in state:
            b = state[prefix + "op.bias"] / 2 ** (bits - 1)
            if not torch.equal(b, b.round()) or b.min() < -128 or b.max() > 127:
                broken.append(f"{prefix}op.bias: must be integers in [-128, 127] times 2^(bits-1)")
            # ai8x v1 writes the weights' bits, posenas's low-bit recipe 8 (izer reads neither: its bias is
            # always 8 bits, the stored value divided by 2^(weight_bits-1))
            if int(state[prefix + "bias_bits"].item()) not in (bits, 8):
                broken.append(f"{prefix}bias_bits is neither weight_bits nor 8")
        shift = float(state[prefix + "output_shift"].item())
        if shift != round(shift) or not -15 <= shift + 8 - bits <= 15:
            broken.append(f"{prefix}output_shift {shift}: total shift {shift + 8 - bits} outside [-15, 15]")
        if float(state[prefix + "quantize_activation"].item()) != 1.0:
            broken.append(f"{prefix}quantize_activation must be 1")
        if float(state[prefix + "adjust_output_shift"].item()) != 0.0:
            broken.append(f"{prefix}adjust_output_shift must be 0")
    if any(".bn." in k for k in state):
        broken.append("batch-norm keys present (must be folded)")
    return broken
