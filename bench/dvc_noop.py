"""Benchmark: a no-op `dvc repro` (nothing changed) with ruamel.yaml's C loader (ruamel.yaml.clib,
in requirements.txt) against the same command with it hidden, as a bare `pip install dvc` gets it.

Run:    python bench/dvc_noop.py [--repeats 5]
Needs:  a finished `dvc repro`, so that the no-op has nothing to run (the script checks).

DVC reads dvc.lock on every status check; ruamel.yaml 0.19 made its C loader optional, and the
pure-Python one takes seconds for the lock of ~70 stages. The baseline hides the C loader by
putting a module of its name that fails to import first on PYTHONPATH; everything else is equal.
Runs alternate (baseline, then ours) so that drift in the machine's speed hits both alike.
Prints the median seconds of each over --repeats runs and their ratio (baseline / ours).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed_noop(env: dict) -> float:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "dvc", "repro"], env=env, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    if "Running stage" in out.stdout:
        sys.exit("dvc repro ran a stage: finish `dvc repro` first, then benchmark the no-op")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as hide:
        (Path(hide) / "_ruamel_yaml.py").write_text("raise ImportError('hidden by bench/dvc_noop.py')\n")
        ours = {**os.environ}
        baseline = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [hide, os.environ.get("PYTHONPATH")]))}
        timed_noop(ours)  # warm the file cache and DVC's state database
        times: dict[str, list[float]] = {"pure-Python loader (baseline)": [], "C loader (ruamel.yaml.clib)": []}
        for _ in range(args.repeats):
            times["pure-Python loader (baseline)"].append(timed_noop(baseline))
            times["C loader (ruamel.yaml.clib)"].append(timed_noop(ours))
    medians = {k: statistics.median(v) for k, v in times.items()}
    for k, v in medians.items():
        print(f"{k:32s} median {v:5.2f} s over {args.repeats} no-op runs ({', '.join(f'{t:.2f}' for t in times[k])})")
    base, c = medians.values()
    print(f"ratio baseline / ours: {base / c:.2f}x")


if __name__ == "__main__":
    main()
