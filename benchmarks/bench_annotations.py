"""What one load of COCO 2017's training annotations costs: seconds and resident memory of ``load_coco``.

    python benchmarks/bench_annotations.py [--images 118287] [--people 262465]
    python benchmarks/bench_annotations.py --count-study ROOT [--minutes 2]

COCO itself is not needed: the file written is COCO 2017's person_keypoints_train2017.json in shape (its
counts of images and annotations, 17 keypoints each, a 20-point segmentation polygon), with random values.
The reference in the same run is json.load of the same file: the parse is most of a load. A study shares
one load per split across everything it trains (``CocoRoot``); this says what each avoided load saved.
``--count-study`` counts the loads of a short default search on a root (run it on an older commit to compare).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from posenas.posenet.pose.coco import load_coco


def coco_sized_file(path: Path, images: int, people: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    annotations = []
    for number in range(people):
        visibility = [rng.choice((0, 1, 2)) for _ in range(17)]
        keypoints = []
        for v in visibility:
            keypoints += [rng.randint(0, 639) if v else 0, rng.randint(0, 479) if v else 0, v]
        annotations.append(
            {
                "id": number + 1,
                "image_id": rng.randint(1, images),
                "category_id": 1,
                "iscrowd": 0,
                "area": rng.uniform(100, 50000),
                "bbox": [10.0, 10.0, 100.0, 200.0],
                "num_keypoints": sum(v > 0 for v in visibility),
                "keypoints": keypoints,
                "segmentation": [[round(rng.uniform(0, 640), 2) for _ in range(40)]],
            }
        )
    path.write_text(
        json.dumps(
            {
                "images": [
                    {"id": i, "file_name": f"{i:012d}.jpg", "width": 640, "height": 480} for i in range(1, images + 1)
                ],
                "annotations": annotations,
                "categories": [{"id": 1, "name": "person", "supercategory": "person", "keypoints": [], "skeleton": []}],
            }
        )
    )


def resident_mb() -> float:
    """This process's peak resident memory (Linux's VmHWM: getrusage's maxrss outlives exec, this does not)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # KiB
    raise OSError("no VmHWM in /proc/self/status (Linux only)")


def measure(path: Path, how: str) -> dict[str, float]:
    """Seconds and peak resident memory added by one load of ``path`` (``load_coco`` or plain ``json``), in a
    fresh process: this one's peak already holds the file it wrote."""
    child = subprocess.run(
        [sys.executable, __file__, "--measure", str(path), how], check=True, capture_output=True, text=True
    )
    return json.loads(child.stdout)


def measure_here(path: Path, how: str) -> None:
    before = resident_mb()
    started = time.perf_counter()
    if how == "load_coco":
        loaded = load_coco(path)
    else:
        with path.open("rb") as handle:
            loaded = json.load(handle)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "peak_mb": resident_mb() - before}))
    del loaded


def count_study_loads(root: Path, minutes: float) -> None:
    """The annotation files a default search on ``root`` loads, by name: ``load_coco`` wrapped to count its
    calls around ``posenas search --budget max78000 --timeout-minutes M --data ROOT`` in this process."""
    import collections

    import posenas.posenet.pose.coco as coco_module
    from posenas.search.cli import main as posenas

    real, loads = coco_module.load_coco, collections.Counter()

    def counted(path):
        loads[Path(path).name] += 1
        return real(path)

    coco_module.load_coco = counted
    with tempfile.TemporaryDirectory() as out:
        command = ["search", "--budget", "max78000", "--timeout-minutes", f"{minutes:g}", "--data", str(root)]
        code = posenas([*command, "--out", out])
    print(f"posenas {' '.join(command)}: exit {code}; annotation loads {dict(sorted(loads.items()))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=118287)
    parser.add_argument("--people", type=int, default=262465)
    parser.add_argument("--count-study", type=Path, metavar="ROOT", help="count a default search's loads on ROOT")
    parser.add_argument("--minutes", type=float, default=2.0, help="with --count-study: the search's time budget")
    parser.add_argument("--measure", nargs=2, metavar=("FILE", "HOW"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure_here(Path(args.measure[0]), args.measure[1])
        return
    if args.count_study:
        count_study_loads(args.count_study, args.minutes)
        return
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "person_keypoints_train2017.json"
        coco_sized_file(path, args.images, args.people)
        size_mb = path.stat().st_size / 1e6
        load, parse = measure(path, "load_coco"), measure(path, "json")
    print(
        f"annotations file {size_mb:.0f} MB ({args.images} images, {args.people} people): "
        f"load_coco {load['seconds']:.1f} s, peak resident memory +{load['peak_mb']:.0f} MB; "
        f"reference json.load alone {parse['seconds']:.1f} s, +{parse['peak_mb']:.0f} MB "
        f"(load_coco / json.load {load['seconds'] / parse['seconds']:.2f} x)"
    )


if __name__ == "__main__":
    main()
