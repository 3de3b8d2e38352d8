"""COCO keypoint evaluation: ground truth scores AP 1, the oracle's ceiling, results in original pixels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from posenas.posenet.pose.coco import CocoPoseDataset
from posenas.posenet.pose.decode import Pose
from posenas.posenet.pose.evaluate import (
    evaluate_results,
    ground_truth_results,
    oracle_results,
    poses_to_results,
    prediction_results,
)
from posenas.posenet.pose.keypoints import coco_to_body
from posenas.posenet.pose.targets import heatmap_targets, paf_targets
from posenas.posenet.pose.transforms import letterbox_matrix, transform_points


def test_ground_truth_as_predictions_scores_one(sample):
    results = ground_truth_results(sample.coco, sample.image_ids)
    assert len(results) == 12  # 14 people, 2 of them without keypoints
    metrics = evaluate_results(sample.coco, results, sample.image_ids)
    assert metrics.ap == pytest.approx(1.0) and metrics.ap50 == pytest.approx(1.0) and metrics.ar == pytest.approx(1.0)
    assert metrics.images == 4 and metrics.detections == 12


def test_no_detections_score_zero_and_shifted_ones_score_less(sample):
    assert evaluate_results(sample.coco, [], sample.image_ids).ap == 0.0
    shifted = ground_truth_results(sample.coco, sample.image_ids)
    for record in shifted:
        record["keypoints"] = [v + 8.0 if i % 3 != 2 else v for i, v in enumerate(record["keypoints"])]
    metrics = evaluate_results(sample.coco, shifted, sample.image_ids)
    assert 0.0 < metrics.ap < 0.9


def test_poses_map_back_to_original_pixels():
    matrix = letterbox_matrix(640, 480, 128)  # scale 0.2
    keypoints = np.zeros((18, 3), dtype=np.float32)
    keypoints[0] = (20.0, 10.0, 0.9)  # nose in input pixels -> (100, 50) in the image
    keypoints[2] = (30.0, 40.0, 0.8)  # r_sho -> COCO 6 at (150, 200)
    keypoints[1] = (25.0, 40.0, 0.7)  # the neck has no COCO slot
    record = poses_to_results([Pose(keypoints, score=2.4, count=3)], matrix, image_id=42)[0]
    coco = np.array(record["keypoints"]).reshape(17, 3)
    assert coco[0].tolist() == [100.0, 50.0, 1.0] and coco[6].tolist() == [150.0, 200.0, 1.0]
    assert np.count_nonzero(coco[:, 2]) == 2 and record["image_id"] == 42
    assert record["score"] == pytest.approx(2.4 * 2)  # Lightweight OpenPose: score * (count - 1)


def test_oracle_on_the_real_sample(sample):
    metrics = evaluate_results(sample.coco, oracle_results(sample), sample.image_ids)
    # At 128 input the 16x16 maps cannot resolve everyone: a ceiling clearly below 1 but far above 0.
    assert 0.3 < metrics.ap < 0.98
    assert metrics.detections >= 8
    print(f"oracle AP on coco_sample at 128: {metrics.ap:.3f}")


def test_oracle_improves_with_input_size(sample):
    small = evaluate_results(sample.coco, oracle_results(sample), sample.image_ids).ap
    large_set = CocoPoseDataset(sample.root, "val", input_size=368)
    large = evaluate_results(large_set.coco, oracle_results(large_set), large_set.image_ids).ap
    assert large > small and large > 0.8


def test_prediction_results_runs_a_predictor(sample):
    """A predictor that returns the ground-truth targets (from its letterboxed input) equals the oracle."""
    calls = []

    def predictor(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        calls.append(images.shape)
        heatmaps, pafs = [], []
        for image_id in sample.image_ids[len(calls) * 2 - 2 : len(calls) * 2]:
            info = sample.coco.imgs[image_id]
            matrix = letterbox_matrix(info["width"], info["height"], 128)
            keypoints = sample.people(image_id).keypoints.copy()
            keypoints[..., :2] = transform_points(matrix, keypoints[..., :2])
            body = coco_to_body(keypoints[[a["num_keypoints"] > 0 for a in sample.people(image_id).annotations]])
            heatmaps.append(heatmap_targets(body, 128))
            pafs.append(paf_targets(body, 128))
        return np.stack(heatmaps), np.stack(pafs)

    predicted = prediction_results(predictor, sample, batch_size=2)
    assert calls == [(2, 128, 128, 3), (2, 128, 128, 3)]
    oracle = oracle_results(sample)
    assert len(predicted) == len(oracle)
    ap = evaluate_results(sample.coco, predicted, sample.image_ids).ap
    assert math.isclose(ap, evaluate_results(sample.coco, oracle, sample.image_ids).ap, abs_tol=0.02)


# -- posenas eval --json: every setting in effect, resolved -------------------------------------------------------


def _eval_json(capsys, argv: list[str]) -> dict:
    import json

    from posenas.search.cli import main

    capsys.readouterr()
    assert main(["eval", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _nulls(record: dict) -> set[str]:
    return {key for key, value in record.items() if value is None}


def test_eval_json_records_the_teachers_resolved_input_and_decoder(mobilenet_thin_graph, coco_sample_root, capsys):
    """No --teacher-input: the teacher ran at 256 (a real teacher's default), and the record says so; --decoder
    grid reaches the teacher's maps (it was once recorded but ignored)."""
    import torch

    torch.set_num_threads(1)
    record = _eval_json(capsys, ["--data", str(coco_sample_root), "--teacher", str(mobilenet_thin_graph)])
    assert record["teacher_input"] == 256 and record["maps"] == [32, 32] and record["teacher_kind"] == "tfgraph"
    assert record["teacher"] == str(mobilenet_thin_graph.resolve())
    assert record["data"] == str(coco_sample_root.resolve())
    assert record["split"] == "val" and record["images"] == 4 and record["device"] == "cpu"
    config = record["decode_config"]
    assert record["decoder"] == config["decoder"] == "upsampled"
    assert config["nms_radius"] == pytest.approx(6 * 256 / 368) and config["paf_samples"] == 10
    assert (config["peak_threshold"], config["min_keypoints"], config["min_mean_score"]) == (0.1, 3, 0.2)
    assert _nulls(record) == {"limit", "pooled_input"}  # the two options that were off, and only those
    grid = _eval_json(
        capsys,
        [
            "--data",
            str(coco_sample_root),
            "--teacher",
            str(mobilenet_thin_graph),
            "--decoder",
            "grid",
            "--pooled-input",
            "128",
            "--limit",
            "2",
        ],
    )
    assert grid["decode_config"]["decoder"] == "grid" and grid["decode_config"]["paf_samples"] == 5
    assert grid["pooled_input"] == 128 and grid["maps"] == [16, 16] and grid["decode_config"]["stride"] == 16
    assert grid["limit"] == 2 and grid["images"] == 2 and _nulls(grid) == set()
    pooled = _eval_json(
        capsys,
        [
            "--data",
            str(coco_sample_root),
            "--teacher",
            str(mobilenet_thin_graph),
            "--pooled-input",
            "128",
            "--limit",
            "2",
        ],
    )
    assert grid["ap"] != pooled["ap"]  # the grid decoder really decoded (the upsampled one scores otherwise)


def test_eval_json_records_the_oracles_and_a_checkpoints_settings(synth_root, tmp_path, capsys):
    from networks import random_checkpoint

    from posenas.posenet.nets.checkpoint import save_checkpoint
    from posenas.space.baselines import get_arch

    root = synth_root(train=2, val=3, seed=5)
    oracle = _eval_json(capsys, ["--data", str(root), "--oracle", "--input-size", "192"])
    assert oracle["source"] == "oracle" and oracle["input_size"] == 192 and oracle["images"] == 3
    assert oracle["decode_config"]["nms_radius"] == pytest.approx(6 * 192 / 368)
    # The targets' sigma resolved (None in TargetConfig means "scaled to the input"): 7 px, the floor at stride 8.
    assert oracle["targets"]["sigma"] == pytest.approx(7.0) and _nulls(oracle) == {"limit"}
    path = tmp_path / "tiny.pt"
    save_checkpoint(random_checkpoint(get_arch("tiny-hw"), 0), path)
    network = _eval_json(capsys, ["--data", str(root), "--checkpoint", str(path), "--mode", "simulate"])
    assert network["checkpoint"] == str(path.resolve()) and network["arch"] == "tiny-hw"
    assert (network["mode"], network["device"], network["input_size"]) == ("simulate", "cpu", 128)
    assert network["decode_config"]["nms_radius"] == pytest.approx(6 * 128 / 368)
    assert _nulls(network) <= {"limit", "quantization_warning"}
    truth = _eval_json(capsys, ["--data", str(root), "--ground-truth"])
    assert truth["ap"] == pytest.approx(1.0) and truth["decoder"] is None and "decode_config" not in truth
