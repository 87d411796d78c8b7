"""Benchmark: DVC's rewrite of dvc.lock after a stage, on this repository's dvc.lock against the same
lock with stale entries added back (the 70 that an earlier dvc.lock carried: stages renamed or
removed from dvc.yaml, which DVC never drops, treeverse/dvc#5293).

Run:    python bench/lock_update.py [--repeats 5] [--stale-from d73a84e]

After each stage `dvc repro` parses the whole lock with ruamel.yaml's round-trip (pure-Python) loader
and writes it back, through dvc.utils.serialize.modify_yaml, the function timed here. The baseline
lock is the current one plus the entries of the commit given by --stale-from that dvc.yaml no
longer defines. Runs alternate (baseline, then ours) so that drift in the machine's speed hits both.
Prints the median seconds of one lock update for each and their ratio (baseline / ours).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dvc.utils.serialize import modify_yaml
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[1]


def timed_update(lock: Path) -> float:
    start = time.perf_counter()
    with modify_yaml(lock) as data:
        data["schema"] = data["schema"]  # what DVC does for one stage, less the entry it changes
    return time.perf_counter() - start


def with_stale_entries(current: str, old: str) -> str:
    yaml = YAML()
    ours, theirs = yaml.load(current), YAML(typ="safe").load(old)
    for name, entry in theirs["stages"].items():
        ours["stages"].setdefault(name, entry)
    out = tempfile.SpooledTemporaryFile(mode="w+")
    yaml.dump(ours, out)
    out.seek(0)
    return out.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--stale-from", default="d73a84e", help="a commit whose dvc.lock holds the stale entries")
    args = parser.parse_args()
    current = (ROOT / "dvc.lock").read_text(encoding="utf-8")
    old = subprocess.run(["git", "show", f"{args.stale_from}:dvc.lock"], cwd=ROOT, capture_output=True, text=True)
    if old.returncode != 0:
        sys.exit(f"git show {args.stale_from}:dvc.lock failed: {old.stderr.strip()}; pass --stale-from <commit>")
    with tempfile.TemporaryDirectory() as tmp:
        ours, baseline = Path(tmp) / "ours" / "dvc.lock", Path(tmp) / "baseline" / "dvc.lock"
        for path in (ours, baseline):
            path.parent.mkdir()
        ours.write_text(current, encoding="utf-8")
        baseline.write_text(with_stale_entries(current, old.stdout), encoding="utf-8")
        counts = {p: len(YAML(typ="safe").load(p.read_text(encoding="utf-8"))["stages"]) for p in (baseline, ours)}
        labels = {baseline: f"with stale entries ({counts[baseline]} stages, baseline)", ours: f"pruned ({counts[ours]} stages)"}
        times: dict[Path, list[float]] = {baseline: [], ours: []}
        for _ in range(args.repeats):
            for path in (baseline, ours):
                times[path].append(timed_update(path))
        shutil.rmtree(tmp, ignore_errors=True)
    medians = {p: statistics.median(v) for p, v in times.items()}
    for p, v in medians.items():
        print(f"{labels[p]:44s} median {v:5.2f} s per lock update over {args.repeats} ({', '.join(f'{t:.2f}' for t in times[p])})")
    print(f"ratio baseline / ours: {medians[baseline] / medians[ours]:.2f}x")


if __name__ == "__main__":
    main()
