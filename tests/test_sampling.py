"""The search space: Optuna trials to specs, bounds from the study file, baselines as fixed trials."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import FixedTrial

from posenas.budgets.checker import check
from posenas.budgets.device import load_budget
from posenas.search.settings import load_settings
from posenas.space.baselines import BASELINES
from posenas.space.graph import layer_graph
from posenas.space.sampling import SpecOutsideSpace, fixed_params, sample_arch
from posenas.space.spec import ArchSpec

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = load_settings("max78000").space


@pytest.mark.parametrize("name", list(BASELINES))
def test_every_baseline_is_a_fixed_point_of_the_space(name):
    spec = BASELINES[name]
    params = fixed_params(spec, SPACE)
    assert sample_arch(FixedTrial(params), SPACE, name=name) == spec


SPECS = Path(__file__).parent.parent / "benchmarks" / "specs"
BENCHMARK_SPECS = sorted(SPECS.glob("wide-*.yaml"))  # made by hand to widen tiny-hw within its latency


def test_the_benchmark_specs_are_found():
    # without this, an emptied or moved folder would turn the test below into no test at all
    assert len(BENCHMARK_SPECS) >= 2


@pytest.mark.parametrize("path", BENCHMARK_SPECS, ids=lambda p: p.stem)
def test_benchmark_specs_are_points_of_the_space_that_fit_within_tiny_hw_latency(path):
    """BENCHMARKS.md trains these as networks the default search could have found at tiny-hw's latency."""
    spec = ArchSpec.from_file(path)
    assert sample_arch(FixedTrial(fixed_params(spec, SPACE)), SPACE, name=spec.name) == spec
    budget = load_budget("max78000")
    report, tiny = check(spec, budget), check(BASELINES["tiny-hw"], budget)
    assert report.fits and report.latency_ms <= tiny.latency_ms and report.params > 2.5 * tiny.params


def test_the_search_pick_of_the_schedule_benchmark_is_a_point_of_the_space_that_fits():
    """benchmarks/bench_schedule.py trains it as the default search's pick."""
    spec = ArchSpec.from_file(SPECS / "pick-trial98.yaml")
    assert sample_arch(FixedTrial(fixed_params(spec, SPACE)), SPACE, name=spec.name) == spec
    assert check(spec, load_budget("max78000")).fits and spec.name == "trial98"


def test_tiny_drops_conv8_and_student_keeps_it():
    assert fixed_params(BASELINES["tiny"], SPACE)["conv8.keep"] is False
    student = fixed_params(BASELINES["student"], SPACE)
    assert student["conv8.keep"] is True and student["cpm.depth"] == 3 and student["stem"] == "stride2"


def test_enqueued_baseline_comes_back_through_a_real_study():
    study = optuna.create_study(sampler=optuna.samplers.NSGAIISampler(seed=1))
    study.enqueue_trial(fixed_params(BASELINES["tiny-hw"], SPACE))
    trial = study.ask()
    assert sample_arch(trial, SPACE).spec_hash() == BASELINES["tiny-hw"].spec_hash()


def test_sampled_specs_respect_the_study_bounds():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    slots = {s.name: s for s in SPACE.backbone}
    stems = set()
    for _ in range(200):
        trial = study.ask()
        spec = sample_arch(trial, SPACE)
        study.tell(trial, 0.0)
        stems.add(trial.params["stem"])
        for layer in spec.backbone:
            low, high = slots[layer.name].width
            assert low <= layer.out_channels <= high and (layer.out_channels - low) % SPACE.width_step == 0
            assert layer.kernel_size in slots[layer.name].kernels and layer.weight_bits in SPACE.bits
        assert 1 <= len(spec.cpm) <= 3 and layer_graph(spec)[-1].out_size == (16, 16)
        assert {s.name for s in SPACE.backbone if not s.optional} <= {layer.name for layer in spec.backbone}
    assert stems == {"pool", "fold", "stride2"}


def test_same_seed_same_architectures():
    def run(seed: int) -> list[str]:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        hashes = []
        for _ in range(10):
            trial = study.ask()
            hashes.append(sample_arch(trial, SPACE).spec_hash())
            study.tell(trial, 0.0)
        return hashes

    assert run(7) == run(7) and run(7) != run(8)


def test_specs_outside_the_space_are_refused():
    data = BASELINES["student-hw"].to_dict()
    data["backbone"][7]["out_channels"] = 256
    from posenas.space.spec import ArchSpec

    with pytest.raises(SpecOutsideSpace, match="conv8.width = 256"):
        fixed_params(ArchSpec.from_dict(data), SPACE)


def _all_bits(spec) -> list[int]:
    heads = [b for h in spec.heads for b in (*(layer.weight_bits for layer in h.hidden), h.out_bits)]
    return [layer.weight_bits for layer in (*spec.backbone, *spec.cpm)] + heads


def test_the_lowest_bits_are_a_floor_so_a_search_sees_networks_without_2_bit_layers():
    """Per-layer draws alone give a 2-bit layer to ~99 % of 13-layer networks; the floor drawn first leaves
    about 1/3 all-8-bit and 2/3 without 2-bit layers (binomial bounds at n = 300)."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=5))
    all_eight = no_two = 0
    for _ in range(300):
        trial = study.ask()
        spec = sample_arch(trial, SPACE)
        study.tell(trial, 0.0)
        bits = _all_bits(spec)
        assert min(bits) >= trial.params["lowest.bits"]
        all_eight += min(bits) == 8
        no_two += min(bits) > 2
        assert sample_arch(FixedTrial(fixed_params(spec, SPACE)), SPACE, name=spec.name) == spec
    assert 0.25 < all_eight / 300 < 0.42 and 0.58 < no_two / 300 < 0.76


def test_random_arch_with_the_floor_fixed_draws_every_layer_alone():
    import numpy as np

    from posenas.space.subnets import random_arch

    top = [random_arch(SPACE, np.random.default_rng(i), lowest_bits=8) for i in range(20)]
    assert all(set(_all_bits(s)) == {8} for s in top)
    uniform = [random_arch(SPACE, np.random.default_rng(i), lowest_bits=2) for i in range(100)]
    assert sum(min(_all_bits(s)) > 2 for s in uniform) <= 8  # (2/3)^10 or less each: ~1 expected
    floored = [random_arch(SPACE, np.random.default_rng(i)) for i in range(100)]
    assert sum(min(_all_bits(s)) > 2 for s in floored) >= 50


def test_lowest_bits_of_a_spec_counts_the_head_outputs():
    assert BASELINES["tiny-hw"].lowest_bits == 8 and BASELINES["student-hw-mixed"].lowest_bits == 2
    assert min(_all_bits(BASELINES["student-hw-mixed"])) == 2
