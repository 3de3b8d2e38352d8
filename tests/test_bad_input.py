"""Bad input, as a careless or hostile user gives it, to every command: exit 2, one line naming the problem,
no traceback, and nothing written outside the output folder the command was given.

Every input is built here (no shipped files). Each case runs the real ``main`` in a fresh working folder;
afterwards no file may exist anywhere under the test's folder except the inputs made beforehand and what
lies inside the case's own output path.
"""

from __future__ import annotations

import copy
import json
import pickle
import re
import sys
from pathlib import Path

import pytest
import torch
import yaml

from posenas.posenet.nets.checkpoint import save_checkpoint
from posenas.search.cli import main
from posenas.space.baselines import get_arch
from tests.networks import random_checkpoint


class _Payload:
    """Pickled into a checkpoint: would create a file if unpickled with plain torch.load."""

    def __reduce__(self):
        return (Path("/tmp/posenas-pwned-by-test").write_text, ("pwned",))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, synth_root) -> dict[str, str]:
    """Every bad (and the few good) inputs the cases refer to, by name."""
    folder = tmp_path_factory.mktemp("inputs")
    made: dict[str, str] = {"root": str(synth_root(6, 3, 11))}

    def write(name: str, content: str | bytes) -> str:
        path = folder / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        made[name] = str(path)
        return str(path)

    made["dir"] = str(folder)
    made["afile"] = write("afile.txt", "I am a file")
    write("binary.yaml", bytes(range(256)) * 4)
    write("binary.json", b"\x00\xff" * 100)
    write("malformed.yaml", "name: [unclosed\n")
    write("malformed.json", "{not json")
    tiny = get_arch("tiny-hw").to_dict()
    write("evil-spec.yaml", yaml.safe_dump({**tiny, "name": "../../x/evil"}))
    write("semicolon-spec.yaml", yaml.safe_dump({**tiny, "name": "a; rm -rf x"}))
    device = yaml.safe_load((Path(__file__).resolve().parents[1] / "budgets" / "max78000.yaml").read_text())
    write("zero-processors.yaml", yaml.safe_dump({**device, "processors": 0}))
    write("zero-clock.yaml", yaml.safe_dump({**device, "clock_mhz": 0}))
    write("nan-limit.yaml", "device: max78000\nlimits: {max_latency_ms: .nan}\n")
    write("negative-limit.yaml", "device: max78000\nlimits: {max_macs: -5}\n")
    (folder / "dir.yaml").mkdir()
    made["dir.yaml"] = str(folder / "dir.yaml")
    write("space5.yaml", "name: s\nspace: 5\n")
    write(
        "typo-study.yaml",
        yaml.safe_dump(
            {
                **yaml.safe_load((Path(__file__).resolve().parents[1] / "studies" / "max78000.yaml").read_text()),
                "trails": 3,
            }
        ),
    )

    good = random_checkpoint(get_arch("tiny-hw"), 3)
    made["ckpt"] = str(save_checkpoint(good, folder / "good.pt"))
    nan = copy.deepcopy(good)
    next(v for k, v in nan.state_dict.items() if v.is_floating_point() and v.numel() > 1).view(-1)[0] = float("nan")
    made["nan.pt"] = str(save_checkpoint(nan, folder / "nan.pt"))
    raw = torch.load(made["ckpt"], weights_only=True)
    raw["posenas"]["spec"]["name"] = "../../../x/evil"
    torch.save(raw, folder / "evil.pt")
    made["evil.pt"] = str(folder / "evil.pt")
    import optuna

    optuna.create_study(study_name="other", storage=f"sqlite:///{folder / 'readonly.db'}")  # a database, not ours
    made["readonly.db"] = str(folder / "readonly.db")
    with open(folder / "pickle.pt", "wb") as stream:
        pickle.dump({"state_dict": _Payload()}, stream, protocol=2)
    made["pickle.pt"] = str(folder / "pickle.pt")

    # Annotation files with impossible values, each a complete COCO root around the synthetic images.
    annotations = json.loads((Path(made["root"]) / "annotations" / "person_keypoints_val2017.json").read_text())

    def root_with(name: str, change) -> None:
        data = copy.deepcopy(annotations)
        change(data)
        root = folder / name
        (root / "annotations").mkdir(parents=True)
        (root / "val2017").symlink_to(Path(made["root"]) / "val2017")
        (root / "annotations" / "person_keypoints_val2017.json").write_text(json.dumps(data))
        made[name] = str(root)

    root_with("zero-width-root", lambda d: d["images"][0].update(width=0))
    root_with("negative-height-root", lambda d: d["images"][0].update(height=-5))
    root_with("nan-keypoint-root", lambda d: d["annotations"][0]["keypoints"].__setitem__(0, float("nan")))
    root_with("empty-split-root", lambda d: (d.update(images=[]), d.update(annotations=[])))
    write("results-malformed.json", "[{]")
    write("results-not-list.json", json.dumps({"image_id": 1}))
    write(
        "results-nan.json",
        json.dumps(
            [
                {
                    "image_id": annotations["images"][0]["id"],
                    "category_id": 1,
                    "keypoints": [float("nan")] * 51,
                    "score": 1.0,
                }
            ]
        ),
    )
    write(
        "results-short.json",
        json.dumps(
            [{"image_id": annotations["images"][0]["id"], "category_id": 1, "keypoints": [1.0] * 10, "score": 0.5}]
        ),
    )
    return made


LONG = "x" * 300  # a path component longer than any file system allows

# (id, command line with {placeholders}, substring of the one-line message). {out} is the case's output
# path; everything else names an input above.
CASES = [
    # space show / budget: spec and budget files
    ("space-missing", ["space", "show", "{dir}/nope.yaml"], "does not exist"),
    ("space-directory", ["space", "show", "{dir.yaml}"], "is a directory"),
    ("space-binary", ["space", "show", "{binary.yaml}"], "not a UTF-8 text file"),
    ("space-binary-json", ["space", "show", "{binary.json}"], "not a UTF-8 text file"),
    ("space-malformed-yaml", ["space", "show", "{malformed.yaml}"], "malformed YAML"),
    ("space-malformed-json", ["space", "show", "{malformed.json}"], "malformed JSON"),
    ("space-traversal-name", ["space", "show", "{evil-spec.yaml}"], "architecture name '../../x/evil'"),
    ("space-shell-name", ["space", "show", "{semicolon-spec.yaml}"], "architecture name 'a; rm -rf x'"),
    ("budget-unknown-arch", ["budget", "--arch", "resnet50"], "unknown architecture 'resnet50'"),
    ("budget-unknown-budget", ["budget", "--arch", "tiny-hw", "--budget", "max99"], "unknown budget 'max99'"),
    ("budget-binary", ["budget", "--arch", "tiny-hw", "--budget", "{binary.yaml}"], "not a UTF-8 text file"),
    ("budget-directory", ["budget", "--arch", "tiny-hw", "--budget", "{dir.yaml}"], "is a directory"),
    (
        "budget-zero-processors",
        ["budget", "--arch", "tiny-hw", "--budget", "{zero-processors.yaml}"],
        "processors must be an integer >= 1",
    ),
    ("budget-zero-clock", ["budget", "--arch", "tiny-hw", "--budget", "{zero-clock.yaml}"], "clock_mhz"),
    ("budget-nan-limit-file", ["budget", "--arch", "tiny-hw", "--budget", "{nan-limit.yaml}"], "max_latency_ms"),
    ("budget-negative-limit-file", ["budget", "--arch", "tiny-hw", "--budget", "{negative-limit.yaml}"], "max_macs"),
    (
        "budget-negative-macs",
        ["budget", "--arch", "tiny-hw", "--max-macs", "-1"],
        "--max-macs: must be an integer in [1,",
    ),
    (
        "budget-nan-latency",
        ["budget", "--arch", "tiny-hw", "--max-latency-ms", "nan"],
        "--max-latency-ms: must be a number",
    ),
    (
        "budget-inf-latency",
        ["budget", "--arch", "tiny-hw", "--max-latency-ms", "inf"],
        "--max-latency-ms: must be a number",
    ),
    ("budget-not-a-number", ["budget", "--arch", "tiny-hw", "--max-macs", "many"], "--max-macs: must be an integer"),
    # data synth / data show: output paths, counts, annotations, results files
    ("synth-out-is-file", ["data", "synth", "--out", "{afile}", "--train", "1", "--val", "1"], "not a folder"),
    (
        "synth-out-under-file",
        ["data", "synth", "--out", "{afile}/sub", "--train", "1", "--val", "1"],
        "afile.txt is not a folder",
    ),
    ("synth-out-too-long", ["data", "synth", "--out", "{out}/" + LONG, "--train", "1", "--val", "1"], "too long"),
    ("synth-negative", ["data", "synth", "--out", "{out}", "--train", "-1"], "--train"),
    ("show-no-root", ["data", "show", "{dir}/nowhere", "--out", "{out}/a.png"], "nowhere"),
    ("show-negative-count", ["data", "show", "{root}", "--out", "{out}/a.png", "--count", "-1"], "--count"),
    ("show-zero-count", ["data", "show", "{root}", "--out", "{out}/a.png", "--count", "0"], "--count"),
    ("show-out-under-file", ["data", "show", "{root}", "--out", "{afile}/a.png"], "is not a folder"),
    ("show-out-is-dir", ["data", "show", "{root}", "--out", "{dir}"], "is a folder"),
    (
        "show-results-malformed",
        ["data", "show", "{root}", "--out", "{out}/a.png", "--results", "{results-malformed.json}"],
        "not a readable COCO results json",
    ),
    (
        "show-results-not-list",
        ["data", "show", "{root}", "--out", "{out}/a.png", "--results", "{results-not-list.json}"],
        "not a COCO keypoint results list",
    ),
    ("show-results-nan", ["data", "show", "{root}", "--out", "{out}/a.png", "--results", "{results-nan.json}"], "NaN"),
    (
        "show-results-short",
        ["data", "show", "{root}", "--out", "{out}/a.png", "--results", "{results-short.json}"],
        "51 numbers",
    ),
    ("show-zero-width-image", ["data", "show", "{zero-width-root}", "--out", "{out}/a.png"], "width"),
    ("show-negative-height", ["data", "show", "{negative-height-root}", "--out", "{out}/a.png"], "height"),
    # eval: data, sizes, checkpoints, devices
    ("eval-no-data", ["eval", "--data", "{dir}/nowhere", "--oracle"], "nowhere"),
    ("eval-data-is-file", ["eval", "--data", "{afile}", "--oracle"], "afile.txt"),
    ("eval-zero-limit", ["eval", "--data", "{root}", "--oracle", "--limit", "0"], "--limit"),
    ("eval-negative-limit", ["eval", "--data", "{root}", "--oracle", "--limit", "-3"], "--limit"),
    ("eval-zero-input", ["eval", "--data", "{root}", "--oracle", "--input-size", "0"], "--input-size"),
    ("eval-odd-input", ["eval", "--data", "{root}", "--oracle", "--input-size", "100"], "--input-size"),
    ("eval-empty-split", ["eval", "--data", "{empty-split-root}", "--oracle"], "no images"),
    ("eval-nan-keypoints", ["eval", "--data", "{nan-keypoint-root}", "--oracle"], "keypoints"),
    ("eval-missing-checkpoint", ["eval", "--data", "{root}", "--checkpoint", "{dir}/none.pt"], "not found"),
    ("eval-nan-checkpoint", ["eval", "--data", "{root}", "--checkpoint", "{nan.pt}"], "NaN or infinite"),
    ("eval-traversal-checkpoint", ["eval", "--data", "{root}", "--checkpoint", "{evil.pt}"], "architecture name"),
    ("eval-pickle-checkpoint", ["eval", "--data", "{root}", "--checkpoint", "{pickle.pt}"], "weights-only"),
    ("eval-bogus-device", ["eval", "--data", "{root}", "--checkpoint", "{ckpt}", "--device", "tpu9"], "--device"),
    ("eval-cuda-absent", ["eval", "--data", "{root}", "--checkpoint", "{ckpt}", "--device", "cuda:7"], "--device"),
    # teacher
    (
        "teacher-zero-epochs",
        ["teacher", "--data", "{root}", "--arch", "tiny-hw", "--epochs", "0", "--out", "{out}"],
        "--epochs",
    ),
    (
        "teacher-ignored-epochs",
        ["teacher", "--data", "{root}", "--checkpoint", "{ckpt}", "--epochs", "3", "--out", "{out}"],
        "--epochs",
    ),
    (
        "teacher-ignored-stages",
        ["teacher", "--data", "{root}", "--arch", "tiny-hw", "--refinement-stages", "2", "--out", "{out}"],
        "--refinement-stages",
    ),
    (
        "teacher-out-is-file",
        ["teacher", "--data", "{root}", "--checkpoint", "{ckpt}", "--out", "{afile}"],
        "not a folder",
    ),
    (
        "teacher-missing-checkpoint",
        ["teacher", "--data", "{root}", "--checkpoint", "{dir}/none.pt", "--out", "{out}"],
        "not found",
    ),
    ("teacher-no-data", ["teacher", "--data", "{dir}/nowhere", "--checkpoint", "{ckpt}", "--out", "{out}"], "nowhere"),
    (
        "teacher-nan-checkpoint",
        ["teacher", "--data", "{root}", "--checkpoint", "{nan.pt}", "--out", "{out}"],
        "NaN or infinite",
    ),
    # train
    ("train-nan-lr", ["train", "--arch", "tiny-hw", "--data", "{root}", "--lr", "nan", "--out", "{out}"], "lr"),
    ("train-negative-lr", ["train", "--arch", "tiny-hw", "--data", "{root}", "--lr", "-1", "--out", "{out}"], "lr"),
    (
        "train-zero-epochs",
        ["train", "--arch", "tiny-hw", "--data", "{root}", "--epochs", "0", "--out", "{out}"],
        "--epochs",
    ),
    (
        "train-negative-epochs",
        ["train", "--arch", "tiny-hw", "--data", "{root}", "--epochs", "-1", "--out", "{out}"],
        "--epochs: must be an integer in [1,",
    ),
    (
        "train-qat-over",
        ["train", "--arch", "tiny-hw", "--data", "{root}", "--epochs", "2", "--qat-epochs", "5", "--out", "{out}"],
        "--qat-epochs",
    ),
    (
        "train-zero-val",
        ["train", "--arch", "tiny-hw", "--data", "{root}", "--val-images", "0", "--out", "{out}"],
        "--val-images: must be an integer in [1,",
    ),
    (
        "train-zero-batch",
        ["train", "--arch", "tiny-hw", "--data", "{root}", "--batch-size", "0", "--out", "{out}"],
        "--batch-size: must be an integer in [1,",
    ),
    ("train-alpha", ["train", "--arch", "tiny-hw", "--data", "{root}", "--alpha", "2", "--out", "{out}"], "alpha"),
    ("train-out-is-file", ["train", "--arch", "tiny-hw", "--data", "{root}", "--out", "{afile}"], "not a folder"),
    (
        "train-traversal-spec",
        ["train", "--arch", "{evil-spec.yaml}", "--data", "{root}", "--out", "{out}"],
        "architecture name",
    ),
    (
        "train-bogus-device",
        ["train", "--arch", "tiny-hw", "--data", "{root}", "--device", "gpu", "--out", "{out}"],
        "--device",
    ),
    (
        "train-no-teacher",
        ["train", "--arch", "tiny-hw", "--data", "{root}", "--teacher", "{dir}/nowhere", "--out", "{out}"],
        "not a prepared teacher",
    ),
    ("train-no-data", ["train", "--arch", "tiny-hw", "--data", "{dir}/nowhere", "--out", "{out}"], "nowhere"),
    # search / plot: study files, storage, data, numbers
    ("search-no-data", ["search", "--data", "{dir}/nowhere", "--teacher", "none", "--out", "{out}"], "nowhere"),
    ("search-zero-trials", ["search", "--trials", "0", "--out", "{out}"], "trials"),
    ("search-negative-timeout", ["search", "--timeout-minutes", "-1", "--out", "{out}"], "timeout"),
    ("search-nan-timeout", ["search", "--timeout-minutes", "nan", "--out", "{out}"], "timeout"),
    ("search-zero-val", ["search", "--val-images", "0", "--out", "{out}"], "--val-images: must be"),
    (
        "spec-out-not-yaml",
        ["spec", "--trial", "0", "--study", "nope", "--out", "{out}/t.txt"],
        "must name a .yaml file",
    ),
    ("search-zero-epochs", ["search", "--epochs", "0", "--out", "{out}"], "epochs"),
    ("search-negative-retrain", ["search", "--retrain", "-1", "--out", "{out}"], "--retrain"),
    ("search-zero-timeout", ["search", "--timeout-minutes", "0", "--out", "{out}"], "timeout"),
    ("search-space-5", ["search", "--study", "{space5.yaml}", "--out", "{out}"], "needs a 'space' mapping"),
    ("search-study-typo", ["search", "--study", "{typo-study.yaml}", "--out", "{out}"], "unknown key 'trails'"),
    ("search-binary-study", ["search", "--study", "{binary.yaml}", "--out", "{out}"], "not a UTF-8 text file"),
    ("search-bad-objectives", ["search", "--objectives", "params,ap", "--out", "{out}"], "objectives"),
    ("search-bogus-storage", ["search", "--storage", "foo://x", "--out", "{out}"], "storage"),
    (
        "search-sqlite-nowhere",
        ["search", "--storage", "sqlite:////nonexistent-posenas/x.db", "--out", "{out}"],
        "storage",
    ),
    (
        "search-read-only-storage",
        ["search", "--storage", "sqlite:///file:{readonly.db}?mode=ro&uri=true", "--out", "{out}"],
        "readonly database",
    ),
    ("search-out-is-file", ["search", "--out", "{afile}"], "not a folder"),
    ("search-bogus-device", ["search", "--device", "tpu", "--out", "{out}"], "--device"),
    (
        "search-no-teacher",
        ["search", "--teacher", "{dir}/nowhere", "--data", "{root}", "--out", "{out}"],
        "not a prepared teacher",
    ),
    (
        "plot-no-database",
        ["plot", "--study", "nope", "--storage", "sqlite:///{out}/x.db", "--out", "{out}/p"],
        "no study database",
    ),
    (
        "plot-out-is-file",
        ["plot", "--study", "nope", "--storage", "sqlite:///{out}/x.db", "--out", "{afile}"],
        "not a folder",
    ),
    # export
    (
        "export-nan-checkpoint",
        ["export", "--checkpoint", "{nan.pt}", "--out", "{out}", "--no-build"],
        "NaN or infinite",
    ),
    (
        "export-traversal-checkpoint",
        ["export", "--checkpoint", "{evil.pt}", "--out", "{out}", "--no-build"],
        "architecture name '../../../x/evil'",
    ),
    ("export-pickle-checkpoint", ["export", "--checkpoint", "{pickle.pt}", "--out", "{out}"], "weights-only"),
    ("export-out-is-file", ["export", "--checkpoint", "{ckpt}", "--out", "{afile}", "--no-build"], "not a folder"),
    ("export-trial-without-study", ["export", "--trial", "3", "--out", "{out}"], "--trial needs --study"),
    (
        "export-trial-no-db",
        ["export", "--trial", "3", "--study", "nope", "--storage", "sqlite:///{dir}/none.db", "--out", "{out}"],
        "no study database",
    ),
    (
        "export-izer-nowhere",
        ["export", "--checkpoint", "{ckpt}", "--out", "{out}", "--izer", "{dir}/nowhere"],
        "ai8x-synthesis",
    ),
    (
        "export-image-missing",
        ["export", "--checkpoint", "{ckpt}", "--out", "{out}", "--image", "{dir}/none.png", "--no-build"],
        "none.png",
    ),
    (
        "export-bad-budget",
        ["export", "--checkpoint", "{ckpt}", "--out", "{out}", "--budget", "{zero-clock.yaml}"],
        "clock_mhz",
    ),
    # usage
    ("no-command", [], "required"),
    ("unknown-command", ["frobnicate"], "invalid choice"),
]


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


@pytest.mark.parametrize("argv, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing_outside_out(
    argv, message, inputs, tmp_path, monkeypatch, capsys
):
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    out.mkdir()  # outputs are created only under an existing folder (search/cli/options.py): cases name {out}/x
    monkeypatch.chdir(work)
    before = _files(Path(inputs["dir"]))
    values = {**inputs, "out": str(out)}
    args = [re.sub(r"\{([^}]+)\}", lambda m, values=values: values[m.group(1)], a) for a in argv]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, f"exit {code}: {err}"
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert message in err, err
    assert _files(Path(inputs["dir"])) == before, "an input folder was written into"
    assert not list(work.iterdir()), f"written into the working folder: {list(work.iterdir())}"
    leftovers = [p for p in _files(tmp_path) if p != out and out not in p.parents and p != work]
    assert not leftovers, f"written outside the output folder: {leftovers}"
    assert not Path("/tmp/posenas-pwned-by-test").exists(), "a pickled payload ran"


def test_the_suite_covers_every_command_and_sixty_cases():
    commands = {c[1][0] for c in CASES if c[1]}
    assert commands == {
        "space",
        "spec",
        "budget",
        "data",
        "eval",
        "teacher",
        "train",
        "search",
        "plot",
        "export",
        "frobnicate",
    }
    assert len(CASES) >= 60


# One case of each error family, and the family it must raise (caught once, in the CLI).
FAMILIES = {
    "UsageError": "train-nan-lr",
    "SpecError": "space-traversal-name",
    "BudgetError": "budget-zero-clock",
    "StudyError": "search-study-typo",
    "DataError": "eval-nan-keypoints",
    "CheckpointError": "eval-nan-checkpoint",
    "TeacherError": "train-no-teacher",
    "WeightsError": "export-pickle-checkpoint",
    "OutputError": "spec-out-not-yaml",
    "ToolError": "export-izer-nowhere",
}


def test_every_error_family_reaches_the_user_as_one_line(inputs, tmp_path, monkeypatch, capsys):
    import posenas.errors
    import posenas.search.cli as cli

    raised: list[type] = []
    real_fail = cli._fail

    def recording_fail(message, code):
        raised.append(sys.exc_info()[0])  # the exception being handled
        return real_fail(message, code)

    monkeypatch.setattr(cli, "_fail", recording_fail)
    by_id = {c[0]: c[1] for c in CASES}
    for family, case in FAMILIES.items():
        out = tmp_path / case
        out.mkdir()
        values = {**inputs, "out": str(out)}
        args = [re.sub(r"\{([^}]+)\}", lambda m, values=values: values[m.group(1)], a) for a in by_id[case]]
        assert cli.main(args) == 2
        assert issubclass(raised[-1], getattr(posenas.errors, family)), (case, raised[-1])
        assert capsys.readouterr().err.count("\n") == 1
    assert len({c.__name__ for c in raised}) >= len(FAMILIES) - 1  # WeightsError's case raises its CheckpointError


def test_a_missing_split_suggests_the_one_the_root_has(synth_root, tmp_path, capsys):
    """A train-only root (like coco_mini_train) read as val: eval and predict name the split it has and the flag
    that picks it; train, which has no --split, gets the loader's line without the flag."""
    import shutil

    source = synth_root(6, 3, 11)
    root = tmp_path / "train-only"
    (root / "annotations").mkdir(parents=True)
    shutil.copy(source / "annotations" / "person_keypoints_train2017.json", root / "annotations")
    shutil.copytree(source / "train2017", root / "train2017")
    expected = f"posenas: error: {root}: no val split (annotations/person_keypoints_val2017.json); this root has: train"
    for argv in (
        ["eval", "--data", str(root), "--oracle"],
        ["predict", "--checkpoint", str(tmp_path / "none.pt"), "--data", str(root), "--out", str(tmp_path / "p")],
        ["eval", "--data", str(root), "--teacher", str(tmp_path / "none.pb")],
    ):
        assert main(argv) == 2, argv
        assert capsys.readouterr().err == expected + "; pass --split train\n", argv
    assert not (tmp_path / "p").exists()  # refused before anything was written
    assert main(["train", "--arch", "tiny-hw", "--data", str(root), "--out", str(tmp_path / "t")]) == 2
    assert capsys.readouterr().err == expected + "\n"
    assert main(["eval", "--data", str(root), "--split", "train", "--ground-truth"]) == 0  # the suggestion works
