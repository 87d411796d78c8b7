"""Stage split: fixed dev and test sets shared by every scale, and nested train subsets.

Run:    dvc repro split             (or: python -m stages.split)
Reads:  data/processed/qa.jsonl, params seed, split
Writes: data/split/test.jsonl, data/split/dev.jsonl, data/split/train-<scale>.jsonl per scale
        data/split/report.json, every train candidate dropped as a leak: reason, id, source,
        file, line, an excerpt, and the dev or test record it repeats
        metrics/split.json (set sizes; train candidates dropped as leaks, by reason; and the
        check that no train subset repeats a test or dev question or answer word for word)

Each train subset is a prefix of one shuffled pool, so 1k is inside 2k and 2k inside 5k; no
train record repeats or nearly repeats (split.leak_threshold) a dev or test question or answer
(medqa_scale/data/splitting.py).
"""

from __future__ import annotations

import logging
from pathlib import Path

from medqa_scale.core.cli import PipelineError, run
from medqa_scale.data.dedup import reason_counts
from medqa_scale.core.durable import atomic_path, read_jsonl, remove_stale, write_json, write_jsonl
from medqa_scale.core.params import load_params, scale_size
from medqa_scale.data.splitting import nested_subsets, split_records, verbatim_overlap

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
    test, dev, pool, dropped = split_records(records, s["test_size"], s["dev_size"], p["seed"], s["leak_threshold"],
                                             s["minhash_perm"])
    if max(sizes.values()) > len(pool):
        raise PipelineError(f"split.scales: the largest scale needs {max(sizes.values())} train records but only "
                            f"{len(pool)} remain after test, dev and leak removal; lower split.scales or supply more data")
    subsets = nested_subsets(pool, sizes)
    with atomic_path(OUT, directory=True) as tmp:
        write_jsonl(tmp / "test.jsonl", test)
        write_jsonl(tmp / "dev.jsonl", dev)
        for label, subset in subsets.items():
            write_jsonl(tmp / f"train-{label}.jsonl", subset)
        write_json(tmp / "report.json", {"left_out": dropped})
    verbatim = {label: verbatim_overlap(subset, test + dev) for label, subset in subsets.items()}
    write_json(REPORT, {"test": len(test), "dev": len(dev), "train_pool": len(pool), "train": sizes,
                        "dropped_as_leaks": len(dropped), "dropped_by_reason": reason_counts(dropped),
                        "verbatim_held_out_in_train": verbatim})
    log.info("test %d, dev %d, train pool %d (dropped %s, each listed in %s), scales %s", len(test), len(dev), len(pool),
             reason_counts(dropped), OUT / "report.json", sizes)


if __name__ == "__main__":
    run(main)
