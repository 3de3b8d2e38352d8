"""What the switch to QAT does to a trained float network, before any QAT training: the 2-bit collapse.

    python benchmarks/bench_qat_switch.py fid/05-7042d5dba9/full/best-float.pt [more best-float.pt ...]
        --data posenas-runs/max78000/data/synth-seed0-2000-100 [--val-images 100]

For each float checkpoint (e.g. the float phase's best of a ``bench_fidelity.py`` stand-alone run), the
validation loss, foreground loss and AP of: the float network; the network folded and fake-quantized at
its spec's weight bits (what the first QAT epoch starts from); the same with every layer at 8 bits; with
each 2-bit layer alone raised to 8 bits; and with a shift quantile below 1 on the 2-bit layers (the
``shift_quantile`` that ai8x supports). Forward passes only: seconds per network.
"""

from __future__ import annotations

import argparse
import copy

import torch

from posenas.posenet.nets.checkpoint import load_checkpoint
from posenas.posenet.nets.model import build_model
from posenas.posenet.nets.train import PreloadedSamples, evaluate_model, validation_losses
from posenas.posenet.pose.coco import CocoPoseDataset
from posenas.space.spec import ArchSpec

QUANTILES = (0.99, 0.95, 0.9, 0.8)


def _layers(spec: dict) -> list[dict]:
    return [*spec["backbone"], *spec["cpm"], *(layer for head in spec["heads"] for layer in head["hidden"])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--data", required=True)
    parser.add_argument("--val-images", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    val = CocoPoseDataset(args.data, "val", input_size=128)
    val.image_ids = val.image_ids[: args.val_images]
    samples = PreloadedSamples(val).tensors

    def measure(spec: dict, state: dict, qat: bool, quantile: float = 1.0) -> str:
        model = build_model(ArchSpec.from_dict(spec))
        model.load_state_dict(state)
        if qat:
            model.start_qat()
            for module in model.modules():
                if (
                    hasattr(module, "shift_quantile")
                    and int(getattr(module, "weight_bits", torch.zeros(1)).item()) == 2
                ):
                    module.shift_quantile.fill_(quantile)
        losses = validation_losses(model, samples)
        return f"loss {losses['loss']:.5f}  fg loss {losses['fg_loss']:.4f}  AP {evaluate_model(model, val).ap:.4f}"

    for path in args.checkpoints:
        checkpoint = load_checkpoint(path)
        spec, state = checkpoint.spec.to_dict(), checkpoint.state_dict
        print(f"{path} ({checkpoint.spec.name})")
        print(f"  float                          {measure(spec, state, qat=False)}")
        print(f"  QAT at its bits                {measure(spec, state, qat=True)}")
        all8 = copy.deepcopy(spec)
        for layer in _layers(all8):
            layer["weight_bits"] = 8
        for head in all8["heads"]:
            head["out_bits"] = 8
        print(f"  QAT, every layer at 8 bits     {measure(all8, state, qat=True)}")
        for index, layer in enumerate(_layers(spec)):
            if layer["weight_bits"] == 2:
                raised = copy.deepcopy(spec)
                _layers(raised)[index]["weight_bits"] = 8
                print(f"  QAT, {layer['name']:>9s} at 8 bits      {measure(raised, state, qat=True)}")
        if any(layer["weight_bits"] == 2 for layer in _layers(spec)):
            for quantile in QUANTILES:
                print(f"  QAT, 2-bit shift quantile {quantile:<4} {measure(spec, state, qat=True, quantile=quantile)}")


if __name__ == "__main__":
    main()
