"""The search driver: budget rejection before training, memoisation, baselines, seeds, resume, --fixed,
bad input. Trials train on a tiny synthetic root with a 2-epoch schedule."""

from __future__ import annotations

import json
import math

import optuna
import pytest
import torch

from posenas.budgets.checker import check
from posenas.budgets.device import load_budget
from posenas.events import RecordingEvents
from posenas.posenet.nets.checkpoint import load_checkpoint
from posenas.search.cli import main
from posenas.search.pipeline import StudyResult, run_study
from posenas.search.records import records_of
from posenas.search.settings import load_settings
from posenas.search.study import CONSTRAINT_RESOURCES, TrialObjective, enqueue_baselines, make_sampler
from posenas.space.baselines import get_arch
from posenas.space.sampling import fixed_params, sample_arch

SCHEDULE = ["--epochs", "2", "--qat-epochs", "1", "--batch-size", "3", "--val-images", "2", "--seed", "3"]


@pytest.fixture(scope="module")
def root(synth_root):
    return synth_root(train=6, val=2, seed=6)


def _objective(root, tmp_path, settings=None):
    settings = (settings or load_settings("max78000")).with_overrides(
        train_epochs=1, train_qat_epochs=1, train_batch_size=3, train_val_images=1
    )
    return TrialObjective(settings, load_budget(settings.budget), root, tmp_path / "trials")


def test_infeasible_specs_are_rejected_before_training_and_twins_reuse_scores(root, tmp_path):
    torch.set_num_threads(1)
    objective = _objective(root, tmp_path)
    assert objective.settings.objectives == ("fg_loss", "params")  # the default study's
    study = optuna.create_study(directions=["minimize", "minimize"])
    enqueue_baselines(study, objective.settings.space, ["student-hw", "tiny-hw"])
    study.enqueue_trial(fixed_params(get_arch("tiny-hw"), objective.settings.space))  # the same network again
    study.optimize(objective, n_trials=3)
    rejected, trained, twin = records_of(study.trials)
    # student-hw overflows kernel memory on the MAX78000: no training, violations as constraints.
    assert rejected.baseline == "student-hw" and not rejected.feasible and rejected.state == "COMPLETE"
    constraints = study.trials[0].user_attrs["constraints"]
    assert constraints[CONSTRAINT_RESOURCES.index("kernel_memory")] > 0
    assert constraints[CONSTRAINT_RESOURCES.index("layers")] == 0
    # Its loss is +inf (and its AP 0): worse than any scored network, and the constraints reject it anyway.
    assert study.trials[0].values == [math.inf, 659001.0] and "artifacts" not in study.trials[0].user_attrs
    # tiny-hw trains; the identical spec reuses its score without a second run folder.
    assert trained.baseline == "tiny-hw" and trained.trained and trained.params == 112257
    assert twin.reused_from == trained.number and twin.ap == trained.ap
    assert len(list((tmp_path / "trials").iterdir())) == 1
    metrics = json.loads((tmp_path / "trials" / next((tmp_path / "trials").iterdir()) / "metrics.json").read_text())
    assert metrics["ap"] == trained.ap
    # The stand-alone trial's quality objective is its best checkpoint's foreground loss; both losses are kept.
    assert 0 < metrics["fg_loss"] == study.trials[1].values[0] == trained.fg_loss
    assert 0 < metrics["val_loss"] == trained.val_loss < metrics["fg_loss"]


def test_same_seed_same_trials_and_every_sample_is_checked():
    settings = load_settings("max78000")
    budget = load_budget(settings.budget)

    def sampled(seed: int) -> list[dict]:
        study = optuna.create_study(
            directions=["maximize", "minimize"], sampler=make_sampler(settings.with_overrides(seed=seed))
        )

        def cheap(trial):  # the budget check alone: the sampler's decisions are what is compared
            report = check(sample_arch(trial, settings.space), budget)
            return report.latency_ms or 0.0, float(report.params)

        study.optimize(cheap, n_trials=12)
        return [t.params for t in study.trials]

    first = sampled(7)
    assert first == sampled(7) and first != sampled(8)


def test_fixed_tiny_equals_posenas_train(root, tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / "search"
    code = main(["search", "--fixed", "tiny", "--data", str(root), "--teacher", "none", "--out", str(out), *SCHEDULE])
    assert code == 0
    trial_dir = next((out / "trials").iterdir())
    assert main(["train", "--arch", "tiny", "--data", str(root), "--out", str(tmp_path / "train"), *SCHEDULE]) == 0
    fixed, trained = load_checkpoint(trial_dir / "last.pt"), load_checkpoint(tmp_path / "train" / "last.pt")
    # tiny is over the MAX78000 budget (stride-2 conv1) but --fixed trains it: the same network, the same
    # schedule and seed, so every epoch's loss and AP agree exactly.
    assert fixed.spec.spec_hash() == trained.spec.spec_hash() == get_arch("tiny").spec_hash()
    assert [(h["loss"], h["ap"]) for h in fixed.history] == [(h["loss"], h["ap"]) for h in trained.history]
    assert json.loads((trial_dir / "metrics.json").read_text())["ap"] == trained.extras["best_mAP"]


def test_search_resumes_up_to_the_requested_trials(root, tmp_path):
    torch.set_num_threads(1)
    schedule = {"train_epochs": 2, "train_qat_epochs": 1, "train_batch_size": 3, "train_val_images": 2}

    def run(trials: int) -> tuple[StudyResult, RecordingEvents]:
        settings = load_settings("max78000").with_overrides(
            scorer="train", trials=trials, seed=3, train_seed=3, **schedule
        )
        events = RecordingEvents()
        return run_study(settings, out=tmp_path / "s", events=events, data=str(root), teacher="none"), events

    first, events = run(5)
    storage = f"sqlite:///{tmp_path / 's' / 'study.db'}"
    study = optuna.load_study(study_name="max78000", storage=storage)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 5 and [t.user_attrs.get("baseline") for t in done[:4]] == [
        "student",
        "tiny",
        "student-hw",
        "tiny-hw",
    ]
    assert [t.number for t in events.trials] == [t.number for t in done] and first.networks_done == 5
    again, events = run(5)  # nothing to do: no trial lost or added
    assert events.trials == [] and again.networks_done == 5 and again.counts == first.counts
    assert any("5 of 5 networks done" in m for m in events.messages)
    run(7)
    trials = optuna.load_study(study_name="max78000", storage=storage).trials
    assert [t.number for t in trials] == list(range(len(trials))) and all(t.state.name == "COMPLETE" for t in trials)
    # The rerun's sampler (same seed) first re-draws trial 4's network: reused, and not counted as new work.
    hashes = [t.user_attrs["spec_hash"] for t in trials]
    assert len(set(hashes)) == 7 and len(trials) == 7 + sum(1 for t in trials if "reused_from" in t.user_attrs)
    assert (tmp_path / "s" / "plots" / "report.html").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["search", "--budget", "max99999"], "max99999"),
        (["search", "--study", "{tmp}/bad.yaml"], "malformed YAML"),
        (["search", "--study", "max78000", "--objectives", "params,ap"], "objectives"),
        (["search", "--storage", "postgresql://nobody@127.0.0.1:1/none", "--out", "{tmp}/o"], "storage"),
        (["plot", "--study", "nope", "--storage", "sqlite:///{tmp}/empty.db", "--out", "{tmp}/p"], "no study"),
    ],
)
def test_bad_search_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    assert main([a.format(tmp=tmp_path) for a in args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
