"""The pipeline as a library: ``run_study``, ``train_network`` and ``evaluate`` called in-process with a
recording ``Events``; the tests assert on the events and the returned results, not on printed text."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

import posenas.posenet.pose.coco as coco_module
from posenas.events import Events, RecordingEvents, TrainingProgress
from posenas.posenet.nets.config import QuantMode, TrainConfig
from posenas.search.evaluation import EvalRequest, evaluate
from posenas.search.pipeline import SUMMARY, StudyResult, run_study
from posenas.search.runs import train_network
from posenas.search.settings import load_settings
from posenas.space.baselines import get_arch
from tests.test_supernet_train import SMALL_STUDY


def _settings(folder: Path, **train: int):
    (folder / "small.yaml").write_text(SMALL_STUDY)
    settings = load_settings(str(folder / "small.yaml"))
    schedule = {"epochs": 2, "qat_epochs": 1, "batch_size": 4, "val_images": 4, **train}
    return settings.with_overrides(
        trials=8,
        seed=2,
        objectives=("fg_loss", "params"),
        **{f"train_{k}": v for k, v in schedule.items()},
    )


@pytest.fixture(scope="module")
def annotation_loads():
    """The annotation files ``load_coco`` reads while this module's study runs, by name, in order."""
    loads: list[str] = []
    real = coco_module.load_coco

    def counted(path):
        loads.append(Path(path).name)
        return real(path)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(coco_module, "load_coco", counted)
        yield loads


@pytest.fixture(scope="module")
def studied(synth_root, tmp_path_factory, annotation_loads) -> tuple[StudyResult, RecordingEvents, Path]:
    folder = tmp_path_factory.mktemp("pipeline")
    events = RecordingEvents()
    result = run_study(
        _settings(folder), out=folder / "run", events=events, data=str(synth_root(16, 4, 0)), teacher="none", retrain=1
    )
    return result, events, folder


def test_run_study_reports_every_trial_and_each_supernet_epoch(studied) -> None:
    result, events, _ = studied
    trials = events.trials
    assert [t.number for t in trials] == sorted(t.number for t in trials)  # one worker: in order
    assert len({t.number for t in trials}) == len(trials) == result.counts.trials == 8
    outcomes = {t.outcome for t in trials}
    assert outcomes <= {"scored", "rejected", "reused"} and "scored" in outcomes
    scored = [t for t in trials if t.outcome == "scored"]
    assert all(t.values["fg_loss"] > 0 and t.values["params"] > 0 for t in scored)
    assert result.counts.scored == len(scored)
    supernet = [e for e in events.epochs if e.run == "supernet"]
    assert [e.record.epoch for e in supernet] == list(range(supernet[0].epochs))
    retrained = [e for e in events.epochs if e.run.startswith("trial ")]
    assert [e.record.epoch for e in retrained] == [0, 1]  # the one network retrained, its 2 epochs
    # every progress task that started ended
    started = [args[0] for args in events.of("progress_start")]
    ended = [args[0] for args in events.of("progress_end")]
    assert started and sorted(started) == sorted(ended)
    assert not events.cuts and result.cuts == ()  # no time budget was short


def test_a_study_loads_each_split_s_annotations_once(studied, annotation_loads) -> None:
    # The input check, the supernet, its scorer and the retrained network share one load per split (COCO
    # 2017's training annotations take 7 s and 1.2 GB each time; a study used to load them 8 times).
    retrained = [e for e in studied[1].epochs if e.run.startswith("trial ")]
    assert retrained  # a stand-alone Trainer ran too, so every kind of dataset the study makes was made
    assert sorted(annotation_loads) == ["person_keypoints_train2017.json", "person_keypoints_val2017.json"]


def test_run_study_result_uses_none_for_absent_values_and_matches_the_summary(studied) -> None:
    result, _, folder = studied
    assert result.summary == (folder / "run").resolve() / SUMMARY
    summary = json.loads(result.summary.read_text())
    assert summary == json.loads(json.dumps(result.to_dict()))  # what the file holds is the result
    assert len(result.front) >= 2 and all(r.fits and r.score_is_estimate for r in result.front)
    scores = [r.score for r in result.front]
    assert scores == sorted(scores)  # a loss: best (lowest) first
    untrained = [r for r in result.front if r.standalone_ap is None]
    assert untrained and all(r.ap is None for r in untrained)  # a loss-ranked study measured no AP: None, never NaN
    (retrained,) = result.retrained
    assert result.recommended is not None and result.recommended.trial == retrained.trial and result.measured
    assert 0.0 <= retrained.standalone_ap <= 1.0
    assert result.next_steps[0].startswith(f"posenas export --trial {retrained.trial} --study small")
    assert result.stopped_by == "trials" and result.networks_done == 8


def test_rerunning_a_finished_study_scores_nothing_new(studied, synth_root) -> None:
    result, _, folder = studied
    events = RecordingEvents()
    again = run_study(
        _settings(folder), out=folder / "run", events=events, data=str(synth_root(16, 4, 0)), teacher="none", retrain=1
    )
    assert events.trials == [] and again.counts == result.counts
    assert [r.trial for r in again.front] == [r.trial for r in result.front]
    assert not [e for e in events.epochs if e.run == "supernet"]  # the supernet is loaded, not trained again


def test_train_network_and_evaluate_report_to_events(synth_root, tmp_path) -> None:
    data = synth_root(16, 4, 0)
    events = RecordingEvents()
    config = TrainConfig(epochs=2, qat_start=1, batch_size=4, val_images=4)
    run = train_network(get_arch("tiny-hw"), data, tmp_path / "run", config, events=events)
    assert [e.record.epoch for e in events.epochs] == [0, 1] and {e.run for e in events.epochs} == {"tiny-hw"}
    assert [h["mode"] for h in run.history] == ["float", "qat"]
    assert run.checkpoint == tmp_path / "run" / "best.pt" and run.checkpoint.is_file()
    assert run.best_ap is None or 0.0 <= run.best_ap <= 1.0
    assert run.quantization_end is None  # an 8-bit network: no low-bit diagnostics

    events = RecordingEvents()
    request = EvalRequest(data=str(data), source="checkpoint", path=str(run.checkpoint), mode=QuantMode.QAT)
    found = evaluate(request, events)
    assert events.of("progress_start") == [("qat inference", 4)] and events.of("progress_end") == [("qat inference",)]
    assert events.of("progress_step")[-1][1:3] == (4, 4)
    assert found.settings["arch"] == "tiny-hw" and found.metrics.images == 4
    oracle = evaluate(replace(request, source="oracle", path=None), Events())
    assert oracle.metrics.ap > found.metrics.ap  # the ceiling is above a 2-epoch network


def test_training_progress_ends_every_task_it_starts() -> None:
    events = RecordingEvents()
    record = type("Epoch", (), {"epoch": 0})
    with TrainingProgress(events, "net", 2, 4) as (on_batch, on_epoch):
        for step in range(1, 11):
            on_batch(step, 10, 0.5)
        on_epoch(record)
        on_batch(10, 10, 0.25)
    kinds = [e.kind for e in events.events]
    assert kinds == ["progress_start", "progress_step", "progress_end", "epoch", "progress_start"] + [
        "progress_step",
        "progress_end",
    ]
    assert events.of("progress_step")[0][1:3] == (10, 10) and "loss 0.50000" in events.of("progress_step")[0][3]
