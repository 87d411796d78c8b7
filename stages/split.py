"""Stage split: fixed dev and test sets shared by every scale, and nested train subsets.

Run:    dvc repro split             (or: python -m stages.split)
Reads:  data/processed/qa.jsonl, params seed, split
Writes: data/split/test.jsonl, data/split/dev.jsonl, data/split/train-<scale>.jsonl per scale
        metrics/split.json (set sizes, and how many train candidates were dropped for leaking)

Each train subset is a prefix of one shuffled pool, so 1k is inside 2k and 2k inside 5k; no
train record repeats a dev or test question (medqa_scale/splitting.py).
"""

from __future__ import annotations

import logging
from pathlib import Path

from medqa_scale.cli import PipelineError, run
from medqa_scale.durable import atomic_path, read_jsonl, remove_stale, write_json, write_jsonl
from medqa_scale.params import load_params, scale_size
from medqa_scale.splitting import nested_subsets, split_records

log = logging.getLogger(__name__)

IN = Path("data/processed/qa.jsonl")
OUT = Path("data/split")
REPORT = Path("metrics/split.json")


def main() -> None:
    remove_stale(OUT, REPORT)
    p = load_params()
    s = p["split"]
    records = read_jsonl(IN)
    if len(records) <= s["test_size"] + s["dev_size"]:
        raise PipelineError(f"split: {len(records)} records cannot fill test ({s['test_size']}) and dev ({s['dev_size']}) "
                            "and leave any to train; lower split.test_size / split.dev_size or supply more data")
    sizes = {str(label): scale_size(label) for label in s["scales"]}
    test, dev, pool, leaked = split_records(records, s["test_size"], s["dev_size"], p["seed"])
    if max(sizes.values()) > len(pool):
        raise PipelineError(f"split.scales: the largest scale needs {max(sizes.values())} train records but only "
                            f"{len(pool)} remain after test, dev and leak removal; lower split.scales or supply more data")
    with atomic_path(OUT, directory=True) as tmp:
        write_jsonl(tmp / "test.jsonl", test)
        write_jsonl(tmp / "dev.jsonl", dev)
        for label, subset in nested_subsets(pool, sizes).items():
            write_jsonl(tmp / f"train-{label}.jsonl", subset)
    write_json(REPORT, {"test": len(test), "dev": len(dev), "train_pool": len(pool),
                        "dropped_as_leaks": leaked, "train": sizes})
    log.info("test %d, dev %d, train pool %d (dropped %d leaking), scales %s", len(test), len(dev), len(pool), leaked, sizes)


if __name__ == "__main__":
    run(main)
