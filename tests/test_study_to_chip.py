"""From a search to the chip without a detour: a real, reduced ``posenas search`` (default scorer, the
supernet, and default layout, posenas-runs/<study> in the working folder) ends with a verdict and
summary.json; ``posenas export --trial`` takes the network the last stage retrained; a front member only
the supernet scored is refused with the exact command that trains it, and after that command it exports;
``posenas spec --trial`` writes a spec file every --arch takes."""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path

import optuna
import pytest

from posenas.search.cli import main
from posenas.search.records import TrialRecord, records_of
from posenas.search.verdict import recommend, verdict
from posenas.space.baselines import get_arch
from tests.test_supernet_train import SMALL_STUDY


@pytest.fixture(scope="module")
def searched(synth_root, tmp_path_factory):
    """A finished default-layout search of the small study, and the folder it ran in."""
    folder = tmp_path_factory.mktemp("to-chip")
    (folder / "small.yaml").write_text(SMALL_STUDY)
    data = synth_root(16, 4, 0)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        code = main(
            [
                "search",
                "--study",
                "small.yaml",
                "--data",
                str(data),
                "--teacher",
                "none",
                "--trials",
                "10",
                "--val-images",
                "4",
                "--seed",
                "2",
                "--retrain",
                "1",
                "--epochs",
                "2",
                "--qat-epochs",
                "1",
                "--batch-size",
                "4",
                "--objectives",
                "fg_loss,params",
            ]
        )
    assert code == 0
    return folder


def _study(folder: Path) -> optuna.Study:
    storage = optuna.storages.RDBStorage(f"sqlite:///{folder / 'posenas-runs' / 'small' / 'study.db'}")
    return optuna.load_study(study_name="small", storage=storage)


def test_the_search_ends_with_a_verdict_and_the_commands_that_follow(searched: Path) -> None:
    summary = json.loads((searched / "posenas-runs" / "small" / "summary.json").read_text())
    study = _study(searched)
    ((retrained, result),) = study.user_attrs["standalone"].items()
    assert summary["measured"] is True and summary["recommended"]["trial"] == int(retrained)
    assert summary["recommended"]["standalone_ap"] == pytest.approx(result["ap"])
    assert "best stand-alone AP" in summary["reason"]
    steps = summary["next_steps"]
    assert steps[0] == f"posenas export --trial {retrained} --study small --out export-trial{retrained}"
    assert steps[1].startswith("posenas predict --checkpoint ") and result["checkpoint"] in steps[1]
    assert steps[2].startswith("open ") and steps[2].endswith("report.html")
    front = summary["front"]
    assert len(front) >= 2 and all(row["fits"] and row["score_is_estimate"] for row in front)
    assert [row["trial"] for row in front if row["standalone_ap"] is not None] == [int(retrained)]


def test_export_train_and_spec_work_for_every_trial_of_the_search(searched: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(searched)
    study = _study(searched)
    retrained = int(next(iter(study.user_attrs["standalone"])))
    assert main(["export", "--trial", str(retrained), "--study", "small", "--out", "e1", "--no-build"]) == 0
    assert (searched / "e1" / f"trial{retrained}-q.pth.tar").is_file()

    records = records_of(study.get_trials(deepcopy=False), study.user_attrs["standalone"])
    summary = json.loads((searched / "posenas-runs" / "small" / "summary.json").read_text())
    untrained = next(row["trial"] for row in summary["front"] if row["standalone_ap"] is None)
    capsys.readouterr()
    assert main(["export", "--trial", str(untrained), "--study", "small", "--out", "e2", "--no-build"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and not (searched / "e2").exists()
    command = err.split("train it with the study's schedule: ", 1)[1]
    assert command == f"posenas train --trial {untrained} --study small"
    assert main(shlex.split(command)[1:]) == 0  # the exact command the error named
    assert f"export it: posenas export --trial {untrained} --study small" in capsys.readouterr().out
    assert main(["export", "--trial", str(untrained), "--study", "small", "--out", "e2", "--no-build"]) == 0
    ran = _study(searched).user_attrs["standalone"][str(untrained)]
    assert (
        Path(ran["checkpoint"]).parent
        == searched.resolve() / "posenas-runs" / "small" / "retrain" / f"trial-{untrained:04d}"
    )
    assert ran["epochs"] == 2 and 0.0 <= ran["ap"] <= 1.0

    # The spec file of any trial is an --arch: the same network, hash for hash.
    assert main(["spec", "--trial", str(untrained), "--study", "small", "--out", "specs/t.yaml"]) == 2  # no specs/
    assert "its folder specs does not exist" in capsys.readouterr().err
    (searched / "specs").mkdir()
    assert main(["spec", "--trial", str(untrained), "--study", "small", "--out", "specs/t.yaml"]) == 0
    record = next(r for r in records if r.number == untrained)
    assert get_arch(str(searched / "specs" / "t.yaml")).spec_hash() == record.spec_hash
    assert main(["budget", "--arch", "specs/t.yaml"]) == 0


def test_trial_commands_refuse_bad_input_in_one_line(searched: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(searched)
    cases = [
        (["export", "--trial", "99", "--study", "small", "--out", "x"], "has no trial 99"),
        (["export", "--trial", "1", "--study", "nope", "--out", "x"], "no study database"),
        (["train", "--trial", "1", "--study", "small", "--epochs", "3"], "--epochs goes with --arch"),
        (["train", "--arch", "tiny-hw"], "--data is required with --arch"),
        (["spec", "--trial", "1", "--study", "small", "--out", "t.txt"], "must name a .yaml file"),
        (["spec", "--trial", "1", "--study", "small", "--out", "a-folder"], "a-folder: exists and is a folder"),
    ]
    (searched / "a-folder").mkdir(exist_ok=True)
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, (argv, err)
    assert not (searched / "x").exists() and not (searched / "t.txt").exists()


def _record(
    number: int,
    *,
    standalone: float = math.nan,
    latency: float = 5.0,
    fg: float = 1.0,
    params: int = 10_000,
    feasible: bool = True,
) -> TrialRecord:
    return TrialRecord(
        number=number,
        state="COMPLETE",
        spec_hash=f"h{number}",
        name=f"trial{number}",
        ap=math.nan,
        params=params,
        latency_ms=latency,
        feasible=feasible,
        scorer="supernet",
        fg_loss=fg,
        val_loss=fg,
        standalone_ap=standalone,
    )


def test_the_recommendation_is_the_best_stand_alone_ap_that_fits_ties_by_latency() -> None:
    records = [
        _record(0, standalone=0.05, latency=9.0),
        _record(1, standalone=0.05, latency=4.0),
        _record(2, standalone=0.04, latency=1.0),
        _record(3, standalone=0.09, feasible=False),
        _record(4, fg=0.5),
    ]
    best, reason, measured = recommend(records, "fg_loss")
    assert best.number == 1 and measured and "tied with trial0" in reason
    # Nobody trained stand-alone: the front's best estimate, and training comes first.
    unmeasured = [_record(5, fg=0.7, params=20_000), _record(6, fg=0.9, params=5_000)]
    chosen = verdict(
        unmeasured,
        study="s",
        storage_url=None,
        data="/d",
        report="/r.html",
        objective="fg_loss",
        checkpoint=lambda n: f"/runs/trial-{n}/best.pt",
    )
    assert chosen.record.number == 5 and not chosen.measured and "estimated" in chosen.reason
    assert chosen.next_steps[0] == "posenas train --trial 5 --study s"
    assert chosen.next_steps[1] == "posenas export --trial 5 --study s --out export-trial5"
    assert chosen.next_steps[2] == "posenas predict --checkpoint /runs/trial-5/best.pt --data /d --out predict-trial5"
    assert verdict([], study="s", storage_url=None, data=None, report=None).record is None
