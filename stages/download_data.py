"""Stage download_data: put the raw question-answer records in data/raw/qa.jsonl.

Run:    dvc repro download_data     (or: python -m stages.download_data)
Reads:  params seed, data (source, local_path, builtin_records)
Writes: data/raw/qa.jsonl, one {"id", "question", "answer"} record per line
        metrics/download_data.json (source, revision, counts of records read and skipped)

`data.source` picks the source:
  builtin  the built-in synthetic generator (medqa_scale/builtin/corpus.py), data.builtin_records pairs
  local    a UTF-8 JSONL file of {"question": ..., "answer": ...} records (data.local_path)
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from pathlib import Path

from medqa_scale.cli import PipelineError, run
from medqa_scale.durable import remove_stale, write_json, write_jsonl
from medqa_scale.params import load_params
from medqa_scale.readers import parse_jsonl

log = logging.getLogger(__name__)

OUT = Path("data/raw/qa.jsonl")
REPORT = Path("metrics/download_data.json")


def main() -> None:
    remove_stale(OUT, REPORT)
    p = load_params()
    d = p["data"]
    if d["source"] == "builtin":
        from medqa_scale.builtin.corpus import generate_pairs

        try:
            records = generate_pairs(d["builtin_records"], seed=p["seed"])
        except ValueError as e:
            raise PipelineError(f"data.builtin_records: {e}; lower it") from e
        skipped: Counter = Counter()
        revision = {"generator": "medqa_scale/builtin/corpus.py", "seed": p["seed"]}
    else:
        path = Path(d["local_path"])
        records, skipped = parse_jsonl(path)
        revision = {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    if not records:
        raise PipelineError(f"data.source {d['source']!r} gave no usable records (skipped: {dict(skipped)})")
    write_jsonl(OUT, records)
    write_json(REPORT, {"source": d["source"], "revision": revision, "records": len(records),
                        "skipped": dict(sorted(skipped.items())), "skipped_total": sum(skipped.values())})
    log.info("wrote %d records to %s; skipped %s", len(records), OUT, dict(skipped) or "none")


if __name__ == "__main__":
    run(main)
