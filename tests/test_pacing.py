"""Training paced to a deadline from the speed it measures (``posenet.nets.pacing``): each epoch gets its
share of the time left, by cost, less the validations still to come; a run past its deadline still takes
one step per epoch, so the float phase and QAT both happen and the checkpoint is quantized."""

from __future__ import annotations

import time

import pytest

from posenas.budgets.device import load_budget
from posenas.posenet.nets.checkpoint import load_checkpoint
from posenas.posenet.nets.config import SupernetConfig
from posenas.posenet.nets.layers import QuantMode
from posenas.posenet.nets.pacing import Pacer, epoch_share
from posenas.posenet.nets.supernet_train import SupernetTrainer
from posenas.posenet.nets.train import TrainConfig, Trainer, best_aps
from posenas.search.settings import load_settings
from posenas.space.baselines import get_arch
from tests.test_supernet_train import SMALL_STUDY


def test_an_epoch_gets_its_costed_share_of_the_time_left_less_validations() -> None:
    # 100 s left, 3 epochs (float, QAT, QAT), 5 s per validation: 85 s of training, weights 1 : 1.4 : 1.4
    assert epoch_share(100.0, [False, True, True], 5.0) == pytest.approx(85.0 / 3.8)
    assert epoch_share(100.0, [True, True], 5.0) == pytest.approx(45.0)
    assert epoch_share(10.0, [False, False], 6.0) == 0.0  # the validations alone overrun: no training time
    assert epoch_share(50.0, [], 1.0) == 0.0


class _FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_the_pacer_re_measures_validations_and_ends_each_epoch_on_its_share() -> None:
    clock = _FakeClock()
    pacer = Pacer(deadline=60.0, now=clock, qat_cost=1.0)
    pacer.start_epoch([False, False, False])  # no validation measured yet: 20 s each
    assert pacer.epoch_seconds == pytest.approx(20.0)
    clock.t = 10.0
    assert not pacer.over() and pacer.fraction() == pytest.approx(0.5)
    clock.t = 20.0
    assert pacer.over() and pacer.fraction() == 1.0
    clock.t = 30.0  # the validation took 10 s: the two epochs left share 30 s less two validations
    pacer.validated(10.0)
    pacer.start_epoch([False, False])
    assert pacer.epoch_seconds == pytest.approx(5.0)
    # The machine got slower: the epoch ran long; the last one gets what is truly left.
    clock.t = 48.0
    pacer.validated(12.0)
    pacer.start_epoch([False])
    assert pacer.epoch_seconds == 0.0 and pacer.over()


@pytest.fixture(scope="module")
def root(synth_root):
    return synth_root(32, 4, 3)


def test_a_trainer_past_its_deadline_still_trains_both_phases_one_step_each(root, tmp_path) -> None:
    config = TrainConfig(epochs=3, qat_start=2, batch_size=4, val_images=4)
    Trainer(get_arch("tiny-hw"), root, tmp_path / "paced", config, deadline=time.monotonic()).run()
    checkpoint = load_checkpoint(tmp_path / "paced" / "last.pt")
    assert checkpoint.mode is QuantMode.QAT
    assert [e["images"] for e in checkpoint.history] == [4, 4, 4]  # one batch per epoch
    assert [e["mode"] for e in checkpoint.history] == ["float", "float", "qat"]
    # the last epoch of each phase is validated whatever the time; the best checkpoint is a validated one
    assert checkpoint.history[1]["ap"] == checkpoint.history[1]["ap"] and checkpoint.history[2]["ap"] >= 0.0
    best = load_checkpoint(tmp_path / "paced" / "best.pt")
    assert best.mode is QuantMode.QAT and best.history[best.epoch]["ap"] == best.history[best.epoch]["ap"]
    # Without a deadline every epoch sees the whole set (32 images, 8 batches).
    Trainer(get_arch("tiny-hw"), root, tmp_path / "full", config).run()
    assert [e["images"] for e in load_checkpoint(tmp_path / "full" / "last.pt").history] == [32, 32, 32]


def test_validations_give_way_to_training_when_time_is_short_except_at_phase_ends() -> None:
    clock = _FakeClock()
    pacer = Pacer(deadline=100.0, now=clock)
    assert pacer.worth_validating(5, last_of_phase=False)  # nothing measured yet: validate, and learn its cost
    pacer.validated(8.0)
    assert pacer.worth_validating(5, last_of_phase=False)  # 5 x 8 s = 40 s <= half of 100 s
    clock.t = 30.0
    assert not pacer.worth_validating(5, last_of_phase=False)  # 40 s > half of 70 s
    assert pacer.worth_validating(5, last_of_phase=True)  # the float and the QAT network are always scored


def test_unvalidated_epochs_are_not_scores() -> None:
    nan = float("nan")
    history = [
        {"mode": "float", "ap": 0.02},
        {"mode": "float", "ap": nan},
        {"mode": "qat", "ap": nan},
        {"mode": "qat", "ap": 0.01},
    ]
    assert best_aps(history) == (0.01, 0.02)
    ap, float_ap = best_aps([{"mode": "qat", "ap": nan}])
    assert ap != ap and float_ap != float_ap


def test_a_roomy_deadline_cuts_nothing_and_changes_no_learning_rate(root, tmp_path) -> None:
    """A deadline that cuts nothing trains as no deadline, step for step: the clock bends the learning rate
    only where it cuts an epoch. (It once raised each epoch's first step by the microseconds since the epoch
    began; too little to see in a small run, enough to make two runs of one seed part after QAT.)"""
    rates = {}
    for name, deadline in (("free", None), ("paced", time.monotonic() + 3600)):
        config = TrainConfig(epochs=2, qat_start=1, batch_size=8, val_images=4)
        trainer = _Recording(get_arch("tiny-hw"), root, tmp_path / name, config, deadline=deadline)
        trainer.run()
        rates[name] = trainer.progress
    assert [e["images"] for e in load_checkpoint(tmp_path / "paced" / "last.pt").history] == [32, 32]
    assert (
        rates["paced"]
        == rates["free"]
        == [(0, 0.0), (0, 0.25), (0, 0.5), (0, 0.75)]
        + [
            (1, 0.0),
            (1, 0.25),
            (1, 0.5),
            (1, 0.75),
        ]
    )


def test_a_supernet_with_a_roomy_deadline_trains_as_without_one(root, tmp_path) -> None:
    study = tmp_path / "small.yaml"
    study.write_text(SMALL_STUDY)
    space, budget = load_settings(study).space, load_budget("max78000")
    config = SupernetConfig(epochs=2, qat_epochs=1, batch_size=8, random_subnets=1)
    rates = {}
    for name, deadline in (("free", None), ("paced", time.monotonic() + 3600)):
        trainer = _RecordingSupernet(space, budget, root, tmp_path / name, config, deadline=deadline)
        trainer.run()
        rates[name] = trainer.progress
    assert rates["paced"] == rates["free"] and rates["free"][0] == (0, 0.0) and len(rates["free"]) == 8


class _Recording(Trainer):
    """A trainer that keeps the (epoch, progress) of every step's learning rate."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.progress: list[tuple[int, float]] = []

    def _lr_at(self, epoch: int, step: float) -> float:
        self.progress.append((epoch, step))
        return super()._lr_at(epoch, step)


class _RecordingSupernet(SupernetTrainer):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.progress: list[tuple[int, float]] = []

    def _lr_at(self, epoch: int, progress_in_epoch: float) -> float:
        self.progress.append((epoch, progress_in_epoch))
        return super()._lr_at(epoch, progress_in_epoch)


def test_a_supernet_past_its_deadline_takes_one_sandwich_step_per_epoch(root, tmp_path) -> None:
    study = tmp_path / "small.yaml"
    study.write_text(SMALL_STUDY)
    config = SupernetConfig(epochs=2, qat_epochs=1, batch_size=8, random_subnets=1)
    trainer = SupernetTrainer(
        load_settings(study).space, load_budget("max78000"), root, tmp_path / "sn", config, deadline=time.monotonic()
    )
    epochs = []
    trainer.on_epoch = epochs.append
    trainer.run()
    assert [e.images for e in epochs] == [8, 8] and [e.mode for e in epochs] == ["float", "qat"]
