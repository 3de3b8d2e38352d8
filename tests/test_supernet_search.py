"""``posenas search --scorer supernet``: trials are scored by a trained supernet (budget check first, memoised,
same seed same trials), and a supernet folder of another space is refused in one line with exit 2."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from posenas.budgets.device import load_budget
from posenas.posenet.nets.config import SupernetConfig
from posenas.posenet.nets.supernet_train import SupernetTrainer
from posenas.search.cli import main
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
    return main(["search", "--study", str(study), "--scorer", "supernet", "--supernet", str(supernet), "--data",
                 str(data), "--teacher", "none", "--trials", "8", "--val-images", "4", "--no-baselines", "--seed", "2",
                 "--out", str(out), *extra])  # fmt: skip


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
    code = main(["search", "--study", "max78000", "--scorer", "supernet", "--supernet", str(supernet), "--data",
                 str(data), "--teacher", "none", "--trials", "2", "--out", str(tmp_path / "c")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "another search space" in err
