"""The search's time budget: phases get their share of the time left, hand on what they do not use, and
sizing a phase is arithmetic on a measured speed."""

from __future__ import annotations

import math

import pytest

from posenas.events import Events
from posenas.search.timeplan import Clock, PhaseShares, images_that_fit


class FakeTime:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_each_phase_gets_its_share_of_the_time_left_among_unfinished_phases() -> None:
    now = FakeTime()
    clock = Clock(10, PhaseShares(teacher=1, supernet=4, search=3, retrain=2), now=now)
    assert clock.left() == 600 and clock.seconds_for("teacher") == pytest.approx(60)
    now.t += 30  # the teacher took half its share ...
    clock.finish("teacher")
    # ... and the other 30 s go to the rest in proportion: 570 s over shares 4:3:2.
    assert clock.seconds_for("supernet") == pytest.approx(570 * 4 / 9)
    now.t += 400  # the supernet ran over its 253 s
    clock.finish("supernet")
    assert clock.seconds_for("search") == pytest.approx(170 * 3 / 5)
    clock.finish("search")
    assert clock.seconds_for("retrain") == pytest.approx(170)
    now.t += 1000
    assert clock.left() == 0.0 and clock.seconds_for("retrain") == 0.0


def test_a_skipped_phase_is_a_cut_and_hands_on_its_share() -> None:
    now = FakeTime()
    clock = Clock(1, PhaseShares(teacher=1, supernet=1, search=1, retrain=1), now=now)
    clock.skip("teacher", "the study's teacher: skipped")
    assert clock.cuts == ["the study's teacher: skipped"]
    assert clock.seconds_for("supernet") == pytest.approx(20)  # 60 s over three phases


def test_no_budget_means_every_phase_unbounded() -> None:
    clock = Clock(None)
    assert not clock.limited and clock.left() == math.inf and clock.seconds_for("search") == math.inf


@pytest.mark.parametrize("minutes", [0, -1, math.nan, math.inf])
def test_a_budget_must_be_positive_and_finite(minutes: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        Clock(minutes)


def test_unknown_phase_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown phase"):
        Clock(5).seconds_for("lunch")


def test_images_that_fit() -> None:
    # 100 s at 0.05 s per image over 4 epochs: 500 images per epoch.
    assert images_that_fit(100, 0.05, 4, 2000, 64) == 500
    assert images_that_fit(100, 0.05, 4, 300, 64) == 300  # capped by what there is
    assert images_that_fit(10, 0.05, 4, 2000, 64) is None  # 50 < 64: does not fit
    assert images_that_fit(-5, 0.05, 4, 2000, 64) is None
    assert images_that_fit(math.inf, 0.05, 4, 2000, 64) == 2000
    with pytest.raises(ValueError):
        images_that_fit(100, 0.0, 4, 2000, 64)


def test_the_next_trial_is_expected_to_take_the_mean_of_the_recent_ones() -> None:
    from posenas.search.worker import expected_seconds

    assert expected_seconds([]) == 0.0
    assert expected_seconds([0.3, 26.0, 88.0, 90.0, 79.0, 0.3]) == pytest.approx(47.27, abs=0.01)
    assert expected_seconds([100.0] + [2.0] * 8) == 2.0  # only the last 8: a slow start is forgotten


def test_a_worker_starts_no_trial_that_would_end_past_its_time() -> None:
    """Optuna's own timeout starts a trial 0.1 s before the limit; a 0.4 s trial then overruns it by 0.3 s."""
    import contextlib
    import time

    import optuna

    from posenas.search.worker import run_worker

    def slow(trial: optuna.Trial) -> float:
        time.sleep(0.4)
        return trial.suggest_float("x", 0, 1)

    study = optuna.create_study()
    report = run_worker(study, slow, 10, timeout_s=0.6, lock=contextlib.nullcontext, events=Events())
    assert report.stopped_by == "timeout" and report.started == 1  # 0.2 s were left: less than a trial
    assert len(study.trials) == 1


def test_the_study_teacher_s_map_cache_is_timed_on_the_images_it_caches(synth_root, tmp_path, monkeypatch) -> None:
    # The teacher trains on, and caches maps of, the training images with people: on COCO 2017 about half
    # of them. Timing the cache on every image took that half again out of the teacher's training time.
    import dataclasses
    import json
    import shutil
    import time

    import posenas.posenet.nets.train as train_module
    from posenas.posenet.pose.coco import annotation_path
    from posenas.search.inputs import _sized_teacher
    from posenas.search.settings import TeacherSettings, load_settings

    root = tmp_path / "root"
    shutil.copytree(synth_root(train=8, val=2, seed=3), root)
    path = annotation_path(root, "train")
    coco = json.loads(path.read_text())
    empty = {image["id"] for image in coco["images"][:5]}
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] not in empty]
    path.write_text(json.dumps(coco))

    per_image = 1.5
    monkeypatch.setattr(train_module, "seconds_per_training_image", lambda model, images: per_image)
    settings = load_settings("max78000")
    settings = dataclasses.replace(
        settings,
        teacher=TeacherSettings(kind="arch", arch="tiny-hw", epochs=1),
        train=dataclasses.replace(settings.train, batch_size=2, val_images=2),
    )
    now = FakeTime()
    clock = Clock(30, now=now)
    seconds = clock.seconds_for("teacher")
    fit, deadline = _sized_teacher(settings, root, clock, "cpu")
    assert fit == 3  # every image with people: 8 - 5
    caching = per_image * 3 / 3  # a forward pass costs a third of a training step
    assert deadline - time.monotonic() == pytest.approx(seconds - caching, abs=0.5)
