"""Does a fixed seed give the same results? Run one fixed-seed script of commands, twice (or on two trees),
and compare the outputs bit for bit.

    python benchmarks/bench_repeat.py run --out A        # the script, with the installed posenas
    python benchmarks/bench_repeat.py run --out B        # again (or after checking out another commit)
    python benchmarks/bench_repeat.py compare A B        # every difference, then their count

The script (about 70 s on 2 cores): 40 + 8 built-in synthetic images (seed 3); a small study (the test
suite's ``SMALL_STUDY``) searched with the supernet scorer (10 trials, the best retrained, foreground loss
first) and with the train scorer; the recommended trial exported; tiny-hw trained 2 epochs; that run
evaluated (``--json``). Every command runs as a user runs it (``python -m posenas.search.cli``).

``compare`` holds the two folders' studies (trial parameters, objective values, user attributes but times
and paths), every tensor of every ``.pt``/``.pth.tar`` (``torch.equal``), every export file but logs and
binaries, and the eval record but its paths side by side, and prints each difference. Used to show that a
restructure changes no result (BENCHMARKS.md, issue 27), and that a run repeats.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.test_supernet_train import SMALL_STUDY

POSENAS = [sys.executable, "-m", "posenas.search.cli"]
SCHEDULE = ["--epochs", "2", "--qat-epochs", "1", "--batch-size", "4", "--val-images", "8"]
SEARCH = ["--study", "small.yaml", "--data", "root", "--teacher", "none", "--trials", "10", *SCHEDULE]
SEARCH += ["--seed", "2", "--timeout-minutes", "600"]
VOLATILE = {"seconds", "worker", "artifacts", "checkpoint", "data", "train_s", "images_per_s", "what"}  # times, paths


def _posenas(args: list[str], cwd: Path, log: Path | None = None) -> str:
    done = subprocess.run([*POSENAS, *args], cwd=cwd, capture_output=True, text=True)
    if log is not None:
        log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"posenas {' '.join(args)}: exit {done.returncode}\n{done.stderr[-2000:]}")
    return done.stdout


def run(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=False)
    (out / "small.yaml").write_text(SMALL_STUDY)
    _posenas(["data", "synth", "--out", "root", "--train", "40", "--val", "8", "--seed", "3"], out)
    _posenas(
        ["search", *SEARCH, "--retrain", "1", "--objectives", "fg_loss,params", "--out", "sup"], out, out / "sup.log"
    )
    _posenas(["search", *SEARCH, "--scorer", "train", "--out", "trn"], out, out / "trn.log")
    trial = json.loads((out / "sup" / "summary.json").read_text())["recommended"]["trial"]
    storage = f"sqlite:///{(out / 'sup' / 'study.db').resolve()}"
    export = ["export", "--trial", str(trial), "--study", "small", "--storage", storage, "--out", "exp"]
    _posenas(export, out, out / "exp.log")
    _posenas(
        ["train", "--arch", "tiny-hw", "--data", "root", *SCHEDULE, "--seed", "1", "--out", "tr"], out, out / "tr.log"
    )
    (out / "eval.json").write_text(_posenas(["eval", "--checkpoint", "tr/best.pt", "--data", "root", "--json"], out))
    print(f"{out}: done")


def _stripped(value):
    if isinstance(value, dict):
        return {k: _stripped(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_stripped(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value


def _tensors(a, b, where: str) -> list[str]:
    import torch

    if isinstance(a, torch.Tensor):
        return [] if torch.equal(a, b) else [where]
    if isinstance(a, dict):
        return [d for k in a if k not in VOLATILE for d in _tensors(a[k], b.get(k), f"{where}/{k}")]
    if isinstance(a, (list, tuple)):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _tensors(x, y, f"{where}[{i}]")]
    return []


def compare(a: Path, b: Path) -> int:
    import optuna
    import torch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    found: list[str] = []
    for name in ("sup", "trn"):
        studies = [
            optuna.load_study(study_name="small", storage=f"sqlite:///{root / name / 'study.db'}") for root in (a, b)
        ]
        trials = [s.get_trials() for s in studies]
        if len(trials[0]) != len(trials[1]):
            found.append(f"{name}: {len(trials[0])} against {len(trials[1])} trials")
        for x, y in zip(*trials):
            if (x.params, x.values, x.state, _stripped(x.user_attrs)) != (
                y.params,
                y.values,
                y.state,
                _stripped(y.user_attrs),
            ):
                found.append(f"{name} trial {x.number}: values {x.values} against {y.values}")
        attrs = [{k: v for k, v in _stripped(s.user_attrs).items() if k != "run"} for s in studies]
        if attrs[0] != attrs[1]:
            found.append(f"{name}: study attributes differ")
    weights = sorted(a.rglob("*.pt")) + sorted(a.rglob("*.pth.tar"))
    for path in weights:
        other = b / path.relative_to(a)
        loaded = [torch.load(p, map_location="cpu", weights_only=False) for p in (path, other)]
        found += [f"tensor {path.relative_to(a)}{d}" for d in _tensors(*loaded, "")]
    files = [p for p in (a / "exp").rglob("*") if p.is_file() and p.suffix not in (".log", ".json", ".elf", ".o")]
    files = [p for p in files if not {"build", "qemu"} & set(p.parts) and p.name != "posenas_host"]
    for path in files:
        digests = {hashlib.sha256(p.read_bytes()).hexdigest() for p in (path, b / path.relative_to(a))}
        if len(digests) > 1:
            found.append(f"file {path.relative_to(a)}")
    records = [_stripped(json.loads((root / "eval.json").read_text())) for root in (a, b)]
    if records[0] != records[1]:
        found.append("eval.json")
    print("\n".join(found))
    print(f"{len(weights)} checkpoints, {len(files)} export files, 2 studies, eval: {len(found)} differences")
    return len(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run").add_argument("--out", type=Path, required=True)
    both = sub.add_parser("compare")
    both.add_argument("a", type=Path)
    both.add_argument("b", type=Path)
    args = parser.parse_args()
    if args.command == "run":
        run(args.out.resolve())
    else:
        sys.exit(1 if compare(args.a, args.b) else 0)


if __name__ == "__main__":
    main()
