"""``posenas teacher``, ``posenas train`` and ``posenas eval --checkpoint`` end to end on a tiny synthetic root."""

from __future__ import annotations

import json

import pytest
import torch

from posenas.posenet.nets.checkpoint import load_checkpoint
from posenas.posenet.nets.layers import QuantMode
from posenas.posenet.pose import synth
from posenas.search.cli import main

SCHEDULE = ["--epochs", "2", "--qat-epochs", "1", "--batch-size", "3", "--val-images", "2"]


@pytest.fixture(scope="module")
def root(synth_root):
    return synth_root(train=6, val=2, seed=8)


@pytest.fixture(scope="module")
def run(root, tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("run") / "tiny"
    assert main(["train", "--arch", "tiny-hw", "--data", str(root), *SCHEDULE, "--out", str(out)]) == 0
    return out


def _eval(capsys, checkpoint, root, mode):
    capsys.readouterr()
    code = main(["eval", "--checkpoint", str(checkpoint), "--data", str(root), "--mode", mode, "--json"])
    return code, json.loads(capsys.readouterr().out) if code == 0 else None


def test_train_writes_float_and_qat_checkpoints_and_resumes(root, run, capsys):
    assert load_checkpoint(run / "best-float.pt").mode is QuantMode.FLOAT
    last = load_checkpoint(run / "last.pt")
    assert last.mode is QuantMode.QAT and last.epoch == 1 and [h["mode"] for h in last.history] == ["float", "qat"]
    capsys.readouterr()
    # The same command again: nothing left to do, the run is not restarted.
    assert main(["train", "--arch", "tiny-hw", "--data", str(root), *SCHEDULE, "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "resuming tiny-hw" in out and load_checkpoint(run / "last.pt").history == last.history


def test_eval_checkpoint_in_each_arithmetic(root, run, capsys):
    code, qat = _eval(capsys, run / "best.pt", root, "qat")
    assert code == 0 and qat["mode"] == "qat" and qat["images"] == 2
    code, simulate = _eval(capsys, run / "best.pt", root, "simulate")
    # The integer maps are the QAT maps exactly (x 2^14), so every metric agrees.
    assert code == 0 and simulate["ap"] == qat["ap"] and simulate["detections"] == qat["detections"]
    code, floating = _eval(capsys, run / "best-float.pt", root, "float")
    assert code == 0 and floating["mode"] == "float"
    # Float weights are gone after BN folding: a one-line refusal, exit 2.
    assert _eval(capsys, run / "best.pt", root, "float")[0] == 2
    assert "best-float.pt" in capsys.readouterr().err


def test_teacher_from_a_run_then_cached_distillation(root, run, tmp_path, capsys):
    teacher = tmp_path / "T"
    assert (
        main(["teacher", "--data", str(root), "--checkpoint", str(run / "best-float.pt"), "--out", str(teacher)]) == 0
    )
    info = json.loads((teacher / "teacher.json").read_text())
    assert info["kind"] == "posenas" and info["images"] == 6 and info["input_size"] == 128
    student = tmp_path / "distilled"
    args = ["train", "--arch", "tiny-hw", "--data", str(root), "--teacher", str(teacher), "--no-augment"]
    assert main([*args, *SCHEDULE, "--out", str(student)]) == 0
    assert "distilled from" in capsys.readouterr().out
    assert load_checkpoint(student / "last.pt").train_config["augment"] is False
    # The cache belongs to its data root: another root (same image ids) is refused, not mis-taught.
    other = tmp_path / "other"
    synth.write_coco_root(other, train=6, val=2, seed=9)
    capsys.readouterr()
    code = main(
        [
            "train",
            "--arch",
            "tiny-hw",
            "--data",
            str(other),
            "--teacher",
            str(teacher),
            "--no-augment",
            *SCHEDULE,
            "--out",
            str(tmp_path / "wrong"),
        ]
    )
    assert code == 2 and "cached on" in capsys.readouterr().err


def test_teacher_trained_from_an_architecture(root, tmp_path):
    torch.set_num_threads(1)
    teacher = tmp_path / "T"
    code = main(["teacher", "--data", str(root), "--arch", "tiny-hw", "--epochs", "1", "--out", str(teacher)])
    assert code == 0 and (teacher / "run" / "best.pt").is_file() and (teacher / "maps.npy").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["eval", "--checkpoint", "{bad}", "--data", "{root}"], "not a loadable weights-only checkpoint"),
        (["eval", "--checkpoint", "{missing}", "--data", "{root}"], "checkpoint not found"),
        (["train", "--arch", "nonet", "--data", "{root}", "--out", "{tmp}/r"], "nonet"),
        (["train", "--arch", "tiny-hw", "--data", "{tmp}/none", "--out", "{tmp}/r"], "none"),
        (
            [
                "train",
                "--arch",
                "tiny-hw",
                "--data",
                "{root}",
                "--epochs",
                "2",
                "--qat-epochs",
                "3",
                "--out",
                "{tmp}/r",
            ],
            "--qat-epochs",
        ),
        (["train", "--arch", "tiny-hw", "--data", "{root}", "--teacher", "{tmp}", "--out", "{tmp}/r"], "teacher.json"),
        (["teacher", "--data", "{root}", "--checkpoint", "{bad}", "--out", "{tmp}/T"], "not a loadable"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(root, tmp_path, capsys, args, message):
    bad = tmp_path / "bad.pth"
    bad.write_text("not a checkpoint")
    names = {"root": str(root), "tmp": str(tmp_path), "bad": str(bad), "missing": str(tmp_path / "no.pt")}
    capsys.readouterr()
    assert main([a.format(**names) for a in args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
