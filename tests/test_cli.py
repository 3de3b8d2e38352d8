"""The posenas command line: exit codes 0/1/2, one-line errors, JSON report."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from posenas.search.cli import main


@pytest.mark.parametrize("arch, code", [("tiny-hw", 0), ("tiny", 1), ("student-hw", 1), ("student", 1)])
def test_budget_exit_codes(arch, code, capsys):
    assert main(["budget", "--arch", arch, "--budget", "max78000"]) == code
    verdict = capsys.readouterr().out.splitlines()[0]
    assert verdict == f"{arch} on MAX78000: " + ("does not fit" if code else "fits")


def test_budget_text_names_the_violations(capsys):
    main(["budget", "--arch", "tiny"])
    assert "conv1: convolution stride 2 is not supported" in capsys.readouterr().out
    main(["budget", "--arch", "student-hw"])
    assert "kernel memory exhausted at processor 0; offset 580, needed 192 words" in capsys.readouterr().out


def test_budget_json_has_verdict_usage_latency_and_plan(capsys):
    assert main(["budget", "--arch", "student", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["fits"] is False
    assert {v["resource"] for v in report["violations"]} == {"operation", "kernel_memory"}
    assert main(["budget", "--arch", "tiny-hw", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["latency_cycles"] == 513697 and report["usage"]["kernel_memory"]["used"] == 337
    assert report["layers"][0]["in_processors"] == "0x0000000000000111"
    assert set(report["usage"]) >= {"layers", "kernel_memory", "bias_memory", "data_memory", "macs", "latency"}


def test_flags_add_user_limits(capsys):
    assert main(["budget", "--arch", "tiny-hw", "--max-latency-ms", "5"]) == 1
    assert "exceeds the limit of 5.0 ms" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["budget", "--arch", "resnet50"], "unknown architecture 'resnet50'"),
        (["budget", "--arch", "tiny-hw", "--budget", "max99"], "unknown budget 'max99'"),
        (["budget"], "required: --arch"),
        (["space", "show", "nope.yaml"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_width_out_of_range_in_a_file(tmp_path, capsys):
    from posenas.space.baselines import BASELINES

    path = tmp_path / "wide.yaml"
    path.write_text(BASELINES["tiny-hw"].to_yaml().replace("out_channels: 24", "out_channels: 4096", 1))
    assert main(["budget", "--arch", str(path)]) == 2
    assert "out_channels 4096 is out of range" in capsys.readouterr().err


def test_space_show_prints_the_layer_table(capsys):
    assert main(["space", "show", "student"]) == 0
    out = capsys.readouterr().out
    assert "659,001" in out and "348,143,616" in out and "cpm3" in out


def test_console_script_is_installed():
    script = shutil.which("posenas") or str(Path(sys.executable).parent / "posenas")
    result = subprocess.run([script, "budget", "--arch", "tiny"], capture_output=True, text=True)
    assert result.returncode == 1 and "stride 2" in result.stdout
    result = subprocess.run([script, "budget", "--arch", "nope"], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.startswith("posenas: error: unknown architecture")
