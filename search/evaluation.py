"""COCO keypoint AP of one source, as one library call: ``evaluate(EvalRequest(...), events=...)``.

The sources: a run checkpoint in float, QAT or simulate arithmetic, a teacher at its input (its maps
optionally pooled onto a student's grid), a results file, the oracle (targets from the truth, decoded)
and the ground truth itself. ``Evaluation.settings`` records every setting that was in effect, resolved
(paths, input sizes, the decoder and its thresholds); ``posenas eval`` renders the result.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from posenas.errors import UsageError
from posenas.events import CountedProgress, Events
from posenas.posenet.nets.config import QuantMode

__all__ = ["EvalRequest", "Evaluation", "evaluate"]

Source = Literal["checkpoint", "teacher", "results", "oracle", "ground-truth"]


@dataclass(frozen=True)
class EvalRequest:
    """What to evaluate on which data. ``path`` is the checkpoint, teacher or results file of those
    sources; ``mode`` and ``device`` apply to a checkpoint; ``input_size`` to the oracle;
    ``teacher_input`` (None: the teacher's own, else 256 for a real teacher) and ``pooled_input`` to a
    teacher; ``limit`` keeps the split's first images; ``quantization`` adds a checkpoint's per-layer
    quantization diagnostics."""

    data: str
    source: Source
    path: str | None = None
    split: str = "val"
    mode: QuantMode = QuantMode.QAT
    device: str | None = None
    input_size: int = 128
    teacher_input: int | None = None
    pooled_input: int | None = None
    limit: int | None = None
    decoder: str = "upsampled"
    quantization: bool = False


@dataclass(frozen=True)
class Evaluation:
    """The metrics (``KeypointMetrics``), what was evaluated in words, and the settings in effect."""

    what: str
    metrics: Any
    settings: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {**self.settings, **self.metrics.to_dict()}


def evaluate(request: EvalRequest, events: Events | None = None) -> Evaluation:
    """Evaluate ``request``'s source on its data and split; inference is reported to ``events``."""
    from posenas.posenet.pose.evaluate import evaluate_results

    events = events or Events()
    if request.source == "checkpoint":
        dataset, results, what, settings = _network_results(request, events)
    elif request.source == "teacher":
        dataset, results, what, settings = _teacher_results(request, events)
    elif request.source == "results":
        dataset, results, what, settings = _file_results(request)
    else:
        dataset, results, what, settings = _reference_results(request, events)
    metrics = evaluate_results(dataset.coco, results, dataset.image_ids)
    record = {
        "data": _resolved(request.data),
        "split": request.split,
        "limit": request.limit,
        "what": what,
        **settings,
    }
    return Evaluation(what, metrics, record)


def _reference_results(request: EvalRequest, events: Events):
    """The ground truth as detections, or the oracle: targets rendered from the truth and decoded."""
    from posenas.posenet.pose.coco import CocoPoseDataset
    from posenas.posenet.pose.decode import DecodeConfig
    from posenas.posenet.pose.evaluate import ground_truth_results, oracle_results

    dataset = CocoPoseDataset(request.data, request.split, input_size=request.input_size, limit=request.limit)
    if request.source == "ground-truth":  # no network, no targets, no decoder: the annotations themselves
        settings = {"source": "ground-truth", "decoder": None}
        return dataset, ground_truth_results(dataset.coco, dataset.image_ids), "ground truth as detections", settings
    config = DecodeConfig.for_input(request.input_size, decoder=request.decoder)
    with CountedProgress(events, "oracle", len(dataset)) as advance:
        results = oracle_results(dataset, config, progress=advance)
    what = f"oracle (targets from the ground truth at input {request.input_size}, {request.decoder} decoder)"
    targets = {
        **dataclasses.asdict(dataset.targets),
        "sigma": dataset.targets.sigma_for(request.input_size),
    }  # resolved
    settings = {"source": "oracle", "input_size": request.input_size, "targets": targets, **_decoder_settings(config)}
    return dataset, results, what, settings


def _decoder_settings(config) -> dict:
    """The decoder and every threshold it ran with."""
    return {"decoder": config.decoder, "decode_config": dataclasses.asdict(config)}


def _resolved(path: str) -> str:
    return str(Path(path).resolve())


def _network_results(request: EvalRequest, events: Events):
    """A run checkpoint's predictions in float, QAT or simulate (the chip's integers) arithmetic."""

    import torch

    from posenas.posenet.nets.checkpoint import load_checkpoint, model_in_mode
    from posenas.posenet.nets.train import predictor_for
    from posenas.posenet.pose.coco import CocoPoseDataset
    from posenas.posenet.pose.decode import DecodeConfig
    from posenas.posenet.pose.evaluate import prediction_results

    checkpoint = load_checkpoint(request.path)
    mode = request.mode
    model = model_in_mode(checkpoint, mode, request.path)
    dataset = CocoPoseDataset(request.data, request.split, input_size=checkpoint.spec.input_size, limit=request.limit)
    device = torch.device(request.device or "cpu")
    model.to(device).eval()
    config = DecodeConfig.for_input(checkpoint.spec.input_size, decoder=request.decoder)
    with CountedProgress(events, f"{mode.value} inference", len(dataset)) as advance:
        results = prediction_results(
            predictor_for(model, device),
            dataset,
            config,
            progress=advance,
        )
    what = f"{request.path} ({checkpoint.spec.name}, {mode.value}, {request.decoder} decoder)"
    settings = {
        "source": "checkpoint",
        "checkpoint": _resolved(request.path),
        "arch": checkpoint.spec.name,
        "mode": mode.value,
        "device": str(device),
        "input_size": checkpoint.spec.input_size,
        **_decoder_settings(config),
    }
    if request.quantization:
        settings.update(_quantization(request, checkpoint, dataset))
    return dataset, results, what, settings


def _quantization(request: EvalRequest, checkpoint: Any, dataset: Any) -> dict:
    """Per-layer quantization diagnostics of the checkpoint in QAT arithmetic (a float checkpoint quantized
    post-training) on the split's first images, and the collapse warning (None when no layer collapses)."""
    import torch

    from posenas.posenet.nets.checkpoint import model_in_mode
    from posenas.posenet.nets.diagnostics import collapse_warning
    from posenas.posenet.nets.train import quantization_diagnostics

    model = model_in_mode(checkpoint, QuantMode.QAT, request.path).to(torch.device(request.device or "cpu"))
    rows = quantization_diagnostics(model, dataset, request.device or "cpu")
    return {"quantization": [row.to_dict() for row in rows], "quantization_warning": collapse_warning(rows)}


def _teacher_results(request: EvalRequest, events: Events):
    """A teacher's predictions at its input (optionally pooled onto a student's grid), decoded."""
    import torch

    from posenas.posenet.nets.distill import DEFAULT_REAL_TEACHER_INPUT, open_teacher, teacher_predictor
    from posenas.posenet.pose.coco import CocoPoseDataset
    from posenas.posenet.pose.decode import DecodeConfig
    from posenas.posenet.pose.evaluate import prediction_results

    teacher, kind, own_input = open_teacher(request.path)
    size = request.teacher_input or own_input or DEFAULT_REAL_TEACHER_INPUT
    if size < 8 or size % 8:
        raise UsageError(f"the teacher's input must be a positive multiple of 8, got {size}")
    if kind == "posenas" and size != own_input:
        raise UsageError(f"teacher input {size}: a posenas teacher runs at its own input ({own_input})")
    pooled_side = None
    # The decoder applies to a teacher's maps as to a network's (it was once ignored here, always upsampled).
    config = DecodeConfig.for_input(size, decoder=request.decoder)
    if request.pooled_input:
        if request.pooled_input % 8 or size % request.pooled_input:
            raise UsageError(
                f"the pooled input must be a multiple of 8 that divides the teacher's input {size}, "
                f"got {request.pooled_input}"
            )
        pooled_side = request.pooled_input // 8
        config = DecodeConfig.for_input(size, stride=size // pooled_side, decoder=request.decoder)
    dataset = CocoPoseDataset(request.data, request.split, input_size=size, limit=request.limit)
    device = torch.device(request.device or "cpu")
    with CountedProgress(events, f"{kind} at {size}", len(dataset)) as advance:
        results = prediction_results(
            teacher_predictor(teacher, device, pooled_side),
            dataset,
            config,
            batch_size=8,
            progress=advance,
        )
    pooled = f", maps pooled onto the {request.pooled_input}-input grid" if request.pooled_input else ""
    side = pooled_side or size // 8
    settings = {
        "source": "teacher",
        "teacher": _resolved(request.path),
        "teacher_kind": kind,
        "teacher_input": size,
        "pooled_input": request.pooled_input,
        "maps": [side, side],
        "device": str(device),
        **_decoder_settings(config),
    }
    what = f"teacher {request.path} ({kind}) at input {size}{pooled}, {request.decoder} decoder"
    return dataset, results, what, settings


def _file_results(request: EvalRequest):
    """A results json scored against the data; records for images outside the split are refused."""
    from posenas.errors import DataError
    from posenas.posenet.pose.coco import CocoPoseDataset
    from posenas.posenet.pose.evaluate import load_results

    records = load_results(request.path)  # 51 finite keypoint numbers and a finite score each
    dataset = CocoPoseDataset(request.data, request.split, limit=request.limit)
    known = set(dataset.coco.imgs)
    stray = sorted({r.get("image_id") for r in records} - known, key=str)
    if stray:
        raise DataError(f"{request.path}: image ids not in {request.data} {request.split}: {stray[:5]}")
    wanted = set(dataset.image_ids)
    records = [dict(r, category_id=1) for r in records if r["image_id"] in wanted]
    # Decoded elsewhere: no decoder or input size of this command was in effect.
    settings = {"source": "results", "results": _resolved(request.path), "decoder": None}
    return dataset, records, f"results {request.path}", settings
