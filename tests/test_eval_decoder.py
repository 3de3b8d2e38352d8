"""``posenas eval --decoder grid|upsampled``: the same evaluator, either decoder."""

from __future__ import annotations

import json

import pytest

from posenas.search.cli import main


def _oracle_ap(root, decoder: str, capsys) -> dict:
    assert main(["eval", "--data", str(root), "--oracle", "--decoder", decoder, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_grid_decoder_oracle_ap_on_the_real_sample(coco_sample_root, capsys):
    """On the 4 COCO images the grid decoder's oracle AP is not below the upsampling decoder's (0.823 vs 0.724)."""
    upsampled = _oracle_ap(coco_sample_root, "upsampled", capsys)
    grid = _oracle_ap(coco_sample_root, "grid", capsys)
    assert upsampled["decoder"] == "upsampled" and grid["decoder"] == "grid"
    assert upsampled["ap"] == pytest.approx(0.724, abs=0.002)
    assert grid["ap"] == pytest.approx(0.823, abs=0.002)


def test_unknown_decoder_is_refused(coco_sample_root, capsys):
    assert main(["eval", "--data", str(coco_sample_root), "--oracle", "--decoder", "nearest"]) == 2
    err = capsys.readouterr().err
    assert "--decoder" in err and len(err.strip().splitlines()) == 1
