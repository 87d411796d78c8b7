"""Benchmark: preprocess + split of N built-in records, against the 60 s budget for 130k.

Run:    python bench/preprocess_split.py [--records 130000] [--repeats 3]
Needs:  models/base (run `dvc repro download_model` first) for the tokenizer.
Prints: the median time of each step over the repeats, records/s, and the ratio of the total to
        the budget (below 1.0 is within it).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medqa_scale.core.params import read_yaml  # noqa: E402

BUDGET_S = 60.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=130_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from transformers import AutoTokenizer

    from medqa_scale.builtin.corpus import generate_pairs
    from medqa_scale.data.preprocessing import preprocess_records
    from medqa_scale.data.splitting import split_records

    p = read_yaml("params.yaml")
    tokenizer = AutoTokenizer.from_pretrained("models/base")
    raw = [{**r, "source": "builtin", "origin": {"file": "generator", "location": f"item {i}"}, "history": []}
           for i, r in enumerate(generate_pairs(args.records, seed=p["seed"]))]  # as download_data writes them
    timings = {"preprocess": [], "split": []}
    for _ in range(args.repeats):
        start = time.perf_counter()
        kept, *_ = preprocess_records(raw, tokenizer, p["preprocess"], p["seed"])
        middle = time.perf_counter()
        split_records(kept, p["split"]["test_size"], p["split"]["dev_size"], p["seed"], p["split"]["leak_threshold"],
                      p["split"]["minhash_perm"])
        timings["preprocess"].append(middle - start)
        timings["split"].append(time.perf_counter() - middle)
    pre, spl = statistics.median(timings["preprocess"]), statistics.median(timings["split"])
    total = pre + spl
    print(f"records {args.records}, median of {args.repeats}: preprocess {pre:.1f} s, split {spl:.1f} s, "
          f"total {total:.1f} s, {args.records / total:.0f} records/s")
    budget = BUDGET_S * args.records / 130_000
    print(f"ratio to the budget ({budget:.0f} s for {args.records} records): {total / budget:.2f}")


if __name__ == "__main__":
    main()
