"""Stage preprocess: records -> chats, filtered by token length and de-duplicated.

Run:    dvc repro preprocess        (or: python -m stages.preprocess)
Reads:  data/raw/qa.jsonl, the tokenizer in models/base, params seed, preprocess, model.chat_template_kwargs
Writes: data/processed/qa.jsonl, one {"id", "source", "origin", "question", "answer", "messages",
        "n_prompt_tokens", "n_answer_tokens"} record per line (plus "department" where known)
        data/processed/report.json, every record left out: reason, id, source, file, line, an
        excerpt, and for a duplicate the record it repeats
        metrics/preprocess.json (records in, kept, skipped by reason, personal data masked, and what
        was changed: control characters removed, dialogues whose oldest turns were cut)

Text is cleaned (whitespace, control characters, safe NFKC, HTML remnants; personal data masked if
preprocess.mask_pii), pairs outside the character limits are left out, exact and near
duplicates across sources removed, and token lengths counted with the model's own tokenizer
and chat template, so preprocess.max_source_len and max_target_len mean what training will see.
A dialogue whose prompt is over max_source_len keeps its most recent earlier turns that fit.
"""

from __future__ import annotations

import logging
from pathlib import Path

from medqa_scale.core.cli import run
from medqa_scale.data.dedup import reason_counts
from medqa_scale.core.durable import read_jsonl, remove_stale, write_json, write_jsonl
from medqa_scale.core.params import load_params
from medqa_scale.data.preprocessing import preprocess_records

log = logging.getLogger(__name__)

RAW = Path("data/raw/qa.jsonl")
BASE = Path("models/base")
OUT = Path("data/processed/qa.jsonl")
LEFT_OUT = Path("data/processed/report.json")
REPORT = Path("metrics/preprocess.json")
CHANGES = ("control_characters", "records_with_control_characters", "history_truncated", "history_turns_cut")


def main() -> None:
    remove_stale(OUT, LEFT_OUT, REPORT)
    params = load_params()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(BASE)
    records = read_jsonl(RAW)
    kept, dropped, masked, changed = preprocess_records(records, tokenizer, params["preprocess"], params["seed"],
                                                        params["model"]["chat_template_kwargs"])
    write_jsonl(OUT, kept)
    write_json(LEFT_OUT, {"left_out": dropped})
    skipped = reason_counts(dropped)
    write_json(REPORT, {"records_in": len(records), "kept": len(kept), "skipped": skipped,
                        "skipped_total": len(dropped), "pii_masked": dict(sorted(masked.items())),
                        "changed": {k: changed[k] for k in CHANGES}})
    log.info("kept %d of %d records; left out %s (each listed in %s)", len(kept), len(records), skipped or "none", LEFT_OUT)
    if changed:
        log.info("changed: %s", dict(changed))


if __name__ == "__main__":
    run(main)
