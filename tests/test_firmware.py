"""The firmware's posenas part (posenas_app.c: the buffer for both heads, the decode, the report; pose_grid.c) on
an export's real outputs: written by posenas.posenet.export.firmware, compiled for the Cortex-M4 and run
under qemu-system-arm, it finds the people the Python grid decoder finds; and the export's performance figures.
The MSDK-dependent main.c and the izer merge are checked by test_export's ai8xize test where izer is present."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from test_c_decode import PEOPLE, target_maps

from posenas.posenet.export import m4
from posenas.posenet.export.firmware import write_posenas_sources
from posenas.posenet.export.performance import DECODER_INSTRUCTIONS, Performance, decoder_instructions
from posenas.posenet.pose.decode import DecodeConfig, decode

SCALE = 16384.0  # 128 * 2^(8 - 1)
needs_arm = pytest.mark.skipif(m4.missing_tools() is not None, reason=m4.missing_tools() or "")


def accumulators(noise: float = 0.03) -> tuple[np.ndarray, np.ndarray]:
    heatmaps, pafs = target_maps(PEOPLE["three"], noise=noise, seed=7)
    return np.rint(heatmaps * SCALE).astype(np.int64), np.rint(pafs * SCALE).astype(np.int64)


def test_posenas_sources_are_written_with_the_networks_sizes(tmp_path):
    written = write_posenas_sources(tmp_path, "tiny-hw", 128, (16, 16), SCALE, SCALE / 2)
    assert {p.name for p in written} == {
        "posenas_app.c",
        "posenas_app.h",
        "pose_grid.c",
        "pose_grid.h",
        "pose_group.h",
        "posenas_firmware.h",
    }
    header = (tmp_path / "posenas_firmware.h").read_text()
    assert "#define POSENAS_MAP_H 16" in header and "#define POSENAS_PAF_SCALE 8192.0f" in header
    assert '"nose", "neck"' in header


@needs_arm
def test_firmware_app_on_the_m4_finds_the_python_people(tmp_path):
    heat, paf = accumulators()
    sources = tmp_path / "src"
    write_posenas_sources(sources, "tiny-hw", 128, (16, 16), SCALE, SCALE)
    run = m4.run(m4.build_app(tmp_path / "qemu", sources, heat, paf))
    expected = decode(heat / SCALE, paf / SCALE, DecodeConfig.for_input(128, decoder="grid"))
    assert len(run.poses) == len(expected) == 3
    for ours, py in zip(run.poses, expected):
        np.testing.assert_array_equal(ours.keypoints, py.keypoints)
    assert "posenas tiny-hw: 3 people" in run.output and "  neck       x " in run.output
    assert 50_000 < run.instructions < 600_000


@needs_arm
def test_phase_profile_splits_the_decoders_instructions(tmp_path):
    """-DPG_PROFILE (bench_m4.py --phases): the same people, and peak search + limb scoring within the decode's
    instructions, each a real share of it (three people: peaks about 73 k, limbs 56 k, of 134 k)."""
    heat, paf = accumulators()
    sources = tmp_path / "src"
    write_posenas_sources(sources, "tiny-hw", 128, (16, 16), SCALE, SCALE)
    plain = m4.run(m4.build_app(tmp_path / "plain", sources, heat, paf))
    profiled = m4.run(m4.build_app(tmp_path / "profiled", sources, heat, paf, defines=("-DPG_PROFILE",)))
    assert m4.phase_instructions(plain) == {}
    phases = m4.phase_instructions(profiled)
    assert set(phases) == {"peaks", "limbs"}
    assert [p.keypoints.tolist() for p in profiled.poses] == [p.keypoints.tolist() for p in plain.poses]
    assert 30_000 < phases["peaks"] and 20_000 < phases["limbs"]
    assert phases["peaks"] + phases["limbs"] < profiled.instructions <= plain.instructions + 400


@needs_arm
def test_firmware_app_compiles_with_strict_warnings_for_the_m4(tmp_path):
    write_posenas_sources(tmp_path, "tiny-hw", 128, (16, 16), SCALE, SCALE)
    for source in ("posenas_app.c", "pose_grid.c"):
        subprocess.run(
            ["arm-none-eabi-gcc", *m4.M4_CFLAGS, "-pedantic", "-c", source, "-o", f"{source}.o"],
            cwd=tmp_path,
            check=True,
        )


def test_decoder_model_and_frames_per_second():
    assert [decoder_instructions(n) for n, _ in DECODER_INSTRUCTIONS] == [i for _, i in DECODER_INSTRUCTIONS]
    assert decoder_instructions(2) == (54_560 * 2 + 183_680) // 3
    assert decoder_instructions(12) > DECODER_INSTRUCTIONS[-1][1]
    perf = Performance(515_000, "ai8x-synthesis", 4, 183_680, "model")
    assert perf.cnn_ms == pytest.approx(10.3)
    assert perf.decoder_ms == pytest.approx(183_680 * 1.5 / 1e5)
    assert perf.fps == pytest.approx(1000 / (10.3 + 2.7552))
    record = perf.to_dict()
    assert "estimate" in record["energy_source"] and record["energy_per_inference_uj_estimate"] > 0
    json.dumps(record)


def test_export_reports_performance(tmp_path):
    """A random tiny-hw export: export.json holds CNN ms from posenas' cycle estimate, the decoder's time and fps."""
    from networks import random_checkpoint

    from posenas.budgets.device import load_budget
    from posenas.posenet.export.bundle import export_run
    from posenas.space.baselines import get_arch

    result = export_run(random_checkpoint(get_arch("tiny-hw"), 1), load_budget("max78000"), tmp_path, build_c=False)
    record = json.loads((tmp_path / "export.json").read_text())["performance"]
    assert record["cnn_cycles_source"] == "posenas estimate" and record["decoder_instructions_source"] == "model"
    assert record["frames_per_second"] == pytest.approx(1000 / (record["cnn_ms"] + record["decoder_ms"]), abs=0.1)
    assert result.firmware is None  # no izer: no firmware project
    assert Path(tmp_path / "export.json").is_file()
