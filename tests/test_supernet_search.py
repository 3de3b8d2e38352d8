"""``posenas search --scorer supernet``: trials are scored by a trained supernet (budget check first, memoised,
same seed same trials), and a supernet folder of another space is refused in one line with exit 2."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import optuna
import pytest

from posenas.budgets.device import load_budget
from posenas.events import Events, RecordingEvents
from posenas.posenet.nets.config import SupernetConfig
from posenas.posenet.nets.supernet_train import SupernetTrainer
from posenas.search.cli import main
from posenas.search.pipeline import run_study
from posenas.search.records import records_of
from posenas.search.settings import load_settings
from tests.test_supernet_train import SMALL_STUDY


@pytest.fixture(scope="module")
def setup(synth_root, tmp_path_factory) -> tuple[Path, Path, Path]:
    folder = tmp_path_factory.mktemp("supernet-search")
    study = folder / "small.yaml"
    study.write_text(SMALL_STUDY)
    data = synth_root(16, 4, 0)
    config = SupernetConfig(epochs=1, qat_epochs=1, batch_size=8, random_subnets=1)
    SupernetTrainer(load_settings(study).space, load_budget("max78000"), data, folder / "sn", config).run()
    return study, data, folder / "sn"


def _search(study: Path, data: Path, supernet: Path, out: Path, *extra: str) -> int:
    return main(
        [
            "search",
            "--study",
            str(study),
            "--scorer",
            "supernet",
            "--supernet",
            str(supernet),
            "--data",
            str(data),
            "--teacher",
            "none",
            "--trials",
            "8",
            "--val-images",
            "4",
            "--no-baselines",
            "--seed",
            "2",
            "--retrain",
            "0",
            "--out",
            str(out),
            *extra,
        ]
    )


def _study(study: Path, data: Path, supernet: Path | None, out: Path, *, retrain: int = 0, **overrides) -> tuple:
    """``_search`` as the library call (``run_study``), its events recorded: (StudyResult, RecordingEvents)."""
    settings = load_settings(str(study)).with_overrides(
        **{"scorer": "supernet", "trials": 8, "train_val_images": 4, "seed": 2, "train_seed": 2, **overrides}
    )
    events = RecordingEvents()
    result = run_study(
        settings,
        out=out,
        events=events,
        data=str(data),
        teacher="none",
        supernet=None if supernet is None else str(supernet),
        retrain=retrain,
        baselines=False,
    )
    return result, events


def _trials(out: Path) -> list:
    storage = optuna.storages.RDBStorage(f"sqlite:///{out / 'study.db'}")
    return optuna.load_study(study_name="small", storage=storage).get_trials(deepcopy=False)


def test_search_scores_trials_with_the_supernet(setup, tmp_path: Path) -> None:
    study, data, supernet = setup
    assert _search(study, data, supernet, tmp_path / "a") == 0
    trials = _trials(tmp_path / "a")
    records = records_of(trials)
    assert len(records) == 8
    scored = [t for t in trials if t.user_attrs.get("metrics", {}).get("scorer") == "supernet"]
    assert scored and all(0.0 <= t.user_attrs["metrics"]["ap"] <= 1.0 for t in scored)
    assert all(t.user_attrs["metrics"]["val_loss"] > 0 for t in scored)
    assert not (tmp_path / "a" / "trials").exists()  # nothing trained stand-alone
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'a' / 'study.db'}")
    assert optuna.load_study(study_name="small", storage=storage).metric_names == ["AP (QAT)", "parameters"]
    # The same seed samples the same networks.
    assert _search(study, data, supernet, tmp_path / "b") == 0
    assert [r.spec_hash for r in records] == [r.spec_hash for r in records_of(_trials(tmp_path / "b"))]


def test_supernet_of_another_study_is_one_line_exit_2(setup, tmp_path: Path, capsys) -> None:
    study, data, supernet = setup
    code = main(
        [
            "search",
            "--study",
            "max78000",
            "--scorer",
            "supernet",
            "--supernet",
            str(supernet),
            "--data",
            str(data),
            "--teacher",
            "none",
            "--trials",
            "2",
            "--out",
            str(tmp_path / "c"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "another search space" in err


def test_the_last_stage_retrains_the_fronts_best_from_inherited_weights(setup, tmp_path: Path) -> None:
    study, data, supernet = setup
    out = tmp_path / "r"
    schedule = {"train_epochs": 2, "train_qat_epochs": 1, "train_batch_size": 4}
    result, events = _study(study, data, supernet, out, retrain=1, **schedule)
    storage = optuna.storages.RDBStorage(f"sqlite:///{out / 'study.db'}")
    standalone = optuna.load_study(study_name="small", storage=storage).user_attrs["standalone"]
    assert len(standalone) == 1
    ((number, stored),) = standalone.items()
    assert 0.0 <= stored["ap"] <= 1.0 and stored["epochs"] == 2 and Path(stored["checkpoint"]).is_file()
    (retrained,) = result.retrained
    assert retrained.trial == int(number) and retrained.standalone_ap == pytest.approx(stored["ap"])
    # The retrained network is the front's best by the study's first objective (AP here).
    assert retrained.ap == max(r.ap for r in result.front)
    assert any(m.startswith(f"retraining trial {number} ") for m in events.messages)
    assert [e.record.epoch for e in events.epochs if e.run.startswith(f"trial {number} ")] == [0, 1]
    # A rerun finds it done and trains nothing again.
    again, events = _study(study, data, supernet, out, retrain=1)
    assert not any("retraining" in m for m in events.messages) and again.retrained == result.retrained


@pytest.mark.parametrize(
    ("objective", "metric", "label"),
    [("loss", "val_loss", "validation loss"), ("fg_loss", "fg_loss", "foreground loss")],
)
def test_a_study_ranked_by_a_loss_skips_decoding_and_plots_that_loss(
    setup, tmp_path: Path, objective: str, metric: str, label: str
) -> None:
    study, data, supernet = setup
    out = tmp_path / "l"
    assert _search(study, data, supernet, out, "--objectives", f"{objective},params") == 0
    storage = optuna.storages.RDBStorage(f"sqlite:///{out / 'study.db'}")
    assert optuna.load_study(study_name="small", storage=storage).metric_names == [label, "parameters"]
    scored = [t for t in _trials(out) if t.user_attrs.get("metrics", {}).get("scorer") == "supernet"]
    assert scored and all(t.user_attrs["metrics"][m] > 0 for t in scored for m in ("val_loss", "fg_loss"))
    assert all(t.user_attrs["metrics"]["fg_loss"] != t.user_attrs["metrics"]["val_loss"] for t in scored)
    assert all(t.user_attrs["metrics"]["ap"] != t.user_attrs["metrics"]["ap"] for t in scored)  # NaN: not decoded
    assert all(t.values[0] == t.user_attrs["metrics"][metric] for t in scored)
    assert all(t.user_attrs["metrics"]["arithmetic"] == "qat" for t in scored)  # the study's default
    assert f"{label} (lower is better)" in (out / "plots" / "report.html").read_text()
    # posenas plot finds the objective from the study's names
    assert (
        main(["plot", "--study", "small", "--storage", f"sqlite:///{out / 'study.db'}", "--out", str(tmp_path / "p")])
        == 0
    )
    assert f"{label} (lower is better)" in (tmp_path / "p" / "report.html").read_text()


def test_float_arithmetic_and_finetuning_are_the_scorers(setup, tmp_path: Path) -> None:
    study, data, supernet = setup
    for arithmetic in ("qat", "float"):
        assert (
            _search(
                study,
                data,
                supernet,
                tmp_path / arithmetic,
                "--objectives",
                "fg_loss,params",
                "--score-arithmetic",
                arithmetic,
                *(["--finetune-steps", "2"] if arithmetic == "float" else []),
            )
            == 0
        )
    qat, floating = (
        {
            t.user_attrs["spec_hash"]: t.user_attrs["metrics"]
            for t in _trials(tmp_path / a)
            if t.user_attrs.get("metrics", {}).get("scorer") == "supernet"
        }
        for a in ("qat", "float")
    )
    assert qat.keys() == floating.keys() and qat  # the same seed, the same networks
    assert all(floating[h]["arithmetic"] == "float" and floating[h]["finetune_steps"] == 2 for h in floating)
    assert all(qat[h]["finetune_steps"] == 0 for h in qat)
    assert all(floating[h]["fg_loss"] != qat[h]["fg_loss"] for h in qat)  # the weight bits now play no part


def test_a_time_budget_stops_the_search_and_says_what_it_cut(setup, tmp_path: Path) -> None:
    study, data, supernet = setup
    # 0.05 min = 3 s for the whole call: the search phase gets under 2 s, far less than 200 scores.
    result, events = _study(study, data, supernet, tmp_path / "t", trials=200, timeout_minutes=0.05)
    done = [t for t in _trials(tmp_path / "t") if t.state.name == "COMPLETE"]
    assert 0 < len(done) < 200 and result.stopped_by == "timeout" and result.budget_minutes == 0.05
    (cut,) = [c for c in result.cuts if c.startswith("search: its")]
    assert "ran out at" in cut and cut in events.cuts  # told as it happened, and listed in the result


def test_a_time_budget_paces_the_supernet_and_says_what_it_cut(synth_root, tmp_path: Path) -> None:
    """No supernet given: the search trains its own, paced to its share of the budget (not sized beforehand)."""
    study = tmp_path / "small.yaml"
    study.write_text(SMALL_STUDY)
    data = synth_root(512, 2, 5)
    out = tmp_path / "paced"
    # 0.1 min = 6 s for everything: the supernet's share is ~2.7 s. A warm fast CPU trains 4 epochs of 64
    # images in that (CI did), never 4 of 512 (~750 images/s).
    result, events = _study(study, data, None, out, trials=3, train_val_images=2, timeout_minutes=0.1)
    history = json.loads((out / "supernet" / "supernet.json").read_text())["history"]
    assert len(history) == 4 and history[-1]["mode"] == "qat"  # the schedule's shape holds
    assert all(16 <= e["images"] < 512 for e in history), [e["images"] for e in history]  # >= a batch, < the set
    assert [e.record.images for e in events.epochs if e.run == "supernet"] == [e["images"] for e in history]
    (cut,) = [c for c in result.cuts if c.startswith("supernet: 4 of 4 epochs paced to its")]
    assert cut in events.cuts and any("paced to end in" in m for m in events.messages)


def test_a_retraining_claim_left_by_a_killed_worker_is_taken_over(tmp_path: Path) -> None:
    """The last stage claims a network before training it; a claim whose process is gone (SIGKILL leaves no
    chance to release it) must not block the network forever."""
    import contextlib
    import socket
    import subprocess
    import sys

    from posenas.search.records import TrialRecord
    from posenas.search.retrain import _claim

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    study = optuna.create_study()
    study.set_user_attr(
        "standalone",
        {
            "1": {"worker": {"host": socket.gethostname(), "pid": int(dead.stdout)}},  # killed mid-training
            "2": {"worker": {"host": socket.gethostname(), "pid": os.getpid()}},  # alive: another worker's
            "3": {"ap": 0.1, "checkpoint": "x"},  # done
        },
    )
    records = [TrialRecord(n, "COMPLETE", f"h{n}", f"t{n}", 0.1, 1000, 1.0, True) for n in (1, 2, 3, 4)]
    mine = _claim(study, records, contextlib.nullcontext)
    assert [r.number for r in mine] == [1, 4]
    assert study.user_attrs["standalone"]["1"]["worker"]["pid"] == os.getpid()


def test_a_short_retraining_leaves_out_the_lowest_ranked_so_that_the_best_fits(tmp_path: Path, monkeypatch) -> None:
    """The busy run's case: 165 s left for 3 networks that each need 105 s. Equal shares (55 s) fit none of
    them; the best network takes the shares of the lower-ranked two instead of all three being cut."""
    import torch

    from posenas.search import retrain
    from posenas.search.records import ATTR_SPEC, TrialRecord
    from posenas.search.settings import load_settings
    from posenas.search.timeplan import Clock
    from posenas.space.baselines import get_arch

    settings = load_settings("max78000")
    study = optuna.create_study()
    spec = get_arch("tiny-hw").to_dict()
    for _ in range(3):
        study.add_trial(optuna.trial.create_trial(value=0.0, user_attrs={ATTR_SPEC: spec}))
    # all three on the front: the larger, the better and the slower
    records = [
        TrialRecord(
            n,
            "COMPLETE",
            f"h{n}",
            f"t{n}",
            0.1 * (n + 1),
            1000 * (n + 1),
            1.0 + n,
            True,
            val_loss=0.1,
            fg_loss=1.0 - 0.1 * n,
        )
        for n in range(3)
    ]
    now = [0.0]
    clock = Clock((165 + retrain.MARGIN_S) / 60, now=lambda: now[0])
    offered: list[tuple[str, float]] = []

    def sized(base, spec, scorer, folder: Path, seconds: float):
        offered.append((folder.name, round(seconds)))
        if seconds < 105:
            raise retrain._DoesNotFit(105, seconds)
        return base

    def trained(study, number, spec, config, data, folder, **_):
        now[0] += 160
        return {"ap": 0.1, "seconds": 160, "images_per_epoch": 100, "full_epoch_images": 100}

    monkeypatch.setattr(retrain, "_config", sized)
    monkeypatch.setattr(retrain, "train_standalone", trained)
    scorer = type("Scorer", (), {"inherited": lambda self, spec: torch.nn.Linear(1, 1)})()
    done = retrain.retrain_front(
        study,
        settings,
        records,
        scorer,
        tmp_path,
        tmp_path,
        clock,
        lock=contextlib.nullcontext,
        teacher_cache=None,
        device=None,
        events=Events(),
    )
    assert offered == [("trial-0002", 55)] and done == [2]  # the best, then given all 165 s
    assert [c.split(":")[0] for c in clock.cuts] == ["retraining trial 1 (t1)", "retraining trial 0 (t0)"]
    assert all("left out, so that the better-ranked trial 2 (t2) fits" in c for c in clock.cuts)
    assert set(study.user_attrs["standalone"]) == {"2"}  # the claims of the two left out are released
