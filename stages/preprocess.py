"""Stage preprocess: records -> chats, filtered by token length and de-duplicated.

Run:    dvc repro preprocess        (or: python -m stages.preprocess)
Reads:  data/raw/qa.jsonl, the tokenizer in models/base, params preprocess
Writes: data/processed/qa.jsonl, one {"id", "question", "answer", "messages", "n_prompt_tokens",
        "n_answer_tokens"} record per line
        metrics/preprocess.json (records in, kept, and skipped by reason)

Lengths are counted with the model's own tokenizer and chat template, so the limits
preprocess.max_source_len and max_target_len mean what training will see.
"""

from __future__ import annotations

import logging
from pathlib import Path

from medqa_scale.cli import run
from medqa_scale.durable import read_jsonl, remove_stale, write_json, write_jsonl
from medqa_scale.params import load_params
from medqa_scale.preprocessing import preprocess_records

log = logging.getLogger(__name__)

RAW = Path("data/raw/qa.jsonl")
BASE = Path("models/base")
OUT = Path("data/processed/qa.jsonl")
REPORT = Path("metrics/preprocess.json")


def main() -> None:
    remove_stale(OUT, REPORT)
    p = load_params()["preprocess"]
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(BASE)
    records = read_jsonl(RAW)
    kept, skipped = preprocess_records(records, tokenizer, p["system_prompt"], p["max_source_len"], p["max_target_len"])
    write_jsonl(OUT, kept)
    write_json(REPORT, {"records_in": len(records), "kept": len(kept), "skipped": dict(sorted(skipped.items())),
                        "skipped_total": sum(skipped.values())})
    log.info("kept %d of %d records; skipped %s", len(kept), len(records), dict(skipped) or "none")


if __name__ == "__main__":
    run(main)
