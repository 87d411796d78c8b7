"""Stage split: fixed dev and test sets shared by every scale, and nested train subsets.

Run:    dvc repro split             (or: python -m stages.split)
Reads:  data/processed/qa.jsonl, params seed, split
Writes: data/split/test.jsonl, data/split/dev.jsonl, data/split/train-<scale>.jsonl per scale
        metrics/split.json (set sizes, and how many train candidates were dropped for leaking)

The records are shuffled once with the seed; test and dev are the first records, and each train
subset is a prefix of the rest, so 1k is inside 2k and 2k inside 5k. No train record repeats a
dev or test question.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

from stages.atomic import atomic_path, read_jsonl, write_json, write_jsonl
from stages.params import PipelineError, load_params, scale_size
from stages.runinfo import cli

log = logging.getLogger(__name__)

IN = Path("data/processed/qa.jsonl")
OUT = Path("data/split")
REPORT = Path("metrics/split.json")


def main() -> None:
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


def question_key(question: str) -> str:
    return "".join(question.split())


def split_records(records: list[dict], test_size: int, dev_size: int, seed: int):
    """Shuffle once; return (test, dev, train pool, number of pool records dropped as leaks)."""
    order = list(records)
    random.Random(seed).shuffle(order)
    test, dev = order[:test_size], order[test_size:test_size + dev_size]
    held_out = {question_key(r["question"]) for r in test + dev}
    rest = order[test_size + dev_size:]
    pool = [r for r in rest if question_key(r["question"]) not in held_out]
    return test, dev, pool, len(rest) - len(pool)


def nested_subsets(pool: list, sizes: dict[str, int]) -> dict[str, list]:
    """Prefixes of one shuffled pool: every smaller subset lies inside every larger one."""
    return {label: pool[:n] for label, n in sizes.items()}


if __name__ == "__main__":
    cli(main)
