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
from collections import Counter
from pathlib import Path

from tqdm.auto import tqdm

from stages.atomic import read_jsonl, write_json, write_jsonl
from stages.formatting import IGNORE_INDEX, encode_example, to_messages
from stages.params import load_params
from stages.runinfo import cli

log = logging.getLogger(__name__)

RAW = Path("data/raw/qa.jsonl")
BASE = Path("models/base")
OUT = Path("data/processed/qa.jsonl")
REPORT = Path("metrics/preprocess.json")


def main() -> None:
    p = load_params()["preprocess"]
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(BASE)
    records = read_jsonl(RAW)
    kept, skipped = preprocess_records(records, tokenizer, p["system_prompt"], p["max_source_len"], p["max_target_len"])
    write_jsonl(OUT, kept)
    write_json(REPORT, {"records_in": len(records), "kept": len(kept), "skipped": dict(sorted(skipped.items())),
                        "skipped_total": sum(skipped.values())})
    log.info("kept %d of %d records; skipped %s", len(kept), len(records), dict(skipped) or "none")


def preprocess_records(records: list[dict], tokenizer, system_prompt: str, max_source_len: int,
                       max_target_len: int) -> tuple[list[dict], Counter]:
    """Kept records with their chats and token counts, and a count of skipped ones by reason."""
    kept, skipped, seen = [], Counter(), set()
    for r in tqdm(records, desc="tokenizing", unit="rec", mininterval=5):
        question, answer = " ".join(r["question"].split()), " ".join(r["answer"].split())
        if not question or not answer:
            skipped["empty"] += 1
            continue
        if (question, answer) in seen:
            skipped["duplicate"] += 1
            continue
        seen.add((question, answer))
        messages = to_messages(question, answer, system_prompt)
        try:
            example = encode_example(tokenizer, messages)
        except ValueError:
            skipped["template_mismatch"] += 1
            continue
        n_answer = sum(1 for label in example["labels"] if label != IGNORE_INDEX)
        n_prompt = len(example["input_ids"]) - n_answer
        if n_prompt > max_source_len:
            skipped["source_too_long"] += 1
        elif n_answer > max_target_len:
            skipped["target_too_long"] += 1
        else:
            kept.append({"id": r["id"], "question": question, "answer": answer, "messages": messages,
                         "n_prompt_tokens": n_prompt, "n_answer_tokens": n_answer})
    return kept, skipped


if __name__ == "__main__":
    cli(main)
