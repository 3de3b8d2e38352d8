"""``posenas data synth|show`` and ``posenas eval`` end to end: files, AP tables, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from posenas.search.cli import main


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    assert main(["data", "synth", "--out", str(root), "--train", "8", "--val", "12", "--seed", "3"]) == 0
    return root


def test_synth_writes_a_coco_root(synth_root, capsys):
    assert len(list((synth_root / "train2017").glob("*.jpg"))) == 8
    assert len(list((synth_root / "val2017").glob("*.jpg"))) == 12
    val = json.loads((synth_root / "annotations" / "person_keypoints_val2017.json").read_text())
    assert len(val["images"]) == 12 and len(val["annotations"]) >= 12


def _eval_json(capsys, *argv: str) -> dict:
    assert main(["eval", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_eval_ground_truth_is_one_and_oracle_is_a_ceiling(synth_root, capsys):
    truth = _eval_json(capsys, "--data", str(synth_root), "--ground-truth")
    assert truth["ap"] == pytest.approx(1.0) and truth["images"] == 12
    oracle = _eval_json(capsys, "--data", str(synth_root), "--oracle")
    assert 0.2 < oracle["ap"] < 1.0 and oracle["detections"] > 0
    bigger = _eval_json(capsys, "--data", str(synth_root), "--oracle", "--input-size", "256")
    assert bigger["ap"] > oracle["ap"]


def test_eval_prints_a_table(coco_sample_root, capsys):
    assert main(["eval", "--data", str(coco_sample_root), "--oracle"]) == 0
    out = capsys.readouterr().out
    assert "AP50" in out and "0.724" in out  # the oracle of coco_sample at 128 (BENCHMARKS.md)


def test_show_writes_a_png(synth_root, tmp_path, capsys):
    out = tmp_path / "sheet.png"
    assert main(["data", "show", str(synth_root), "--out", str(out), "--count", "3", "--oracle"]) == 0
    sheet = cv2.imread(str(out))
    assert sheet is not None and sheet.shape[0] > 3 * 240 and sheet.shape[1] > 2 * 160
    assert "3 images" in capsys.readouterr().out
    # Results from a file: the ground truth fed back through --results.
    results = tmp_path / "results.json"
    records = json.loads((synth_root / "annotations" / "person_keypoints_val2017.json").read_text())["annotations"]
    results.write_text(
        json.dumps([{"image_id": a["image_id"], "keypoints": a["keypoints"], "score": 1} for a in records])
    )
    assert main(["data", "show", str(synth_root), "--out", str(out), "--count", "2", "--results", str(results)]) == 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["eval", "--data", "{missing}", "--oracle"], "person_keypoints_val2017.json: annotation file not found"),
        (
            ["eval", "--data", "{root}"],
            "one of the arguments --oracle --ground-truth --checkpoint --results --teacher is required",
        ),
        (
            ["data", "show", "{root}", "--out", "{tmp}/x.png", "--results", "{tmp}/none.json"],
            "none.json: not a readable",
        ),
        (
            ["data", "synth", "--out", "{tmp}/s", "--train", "-1"],
            "argument --train: must be an integer in [0, 999999], got -1",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, synth_root, tmp_path, capsys):
    argv = [a.format(root=synth_root, missing=tmp_path / "missing", tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_corrupt_image_is_named(synth_root, tmp_path, capsys):
    import shutil

    root = tmp_path / "broken"
    shutil.copytree(synth_root, root)
    victim = sorted((root / "val2017").glob("*.jpg"))[0]
    victim.write_bytes(b"garbage")
    assert main(["data", "show", str(root), "--out", str(tmp_path / "x.png"), "--count", "2"]) == 2
    err = capsys.readouterr().err
    assert f"{victim.name}: unreadable or corrupt image" in err and err.count("\n") == 1
