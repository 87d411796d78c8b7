"""Stage download_data: put the raw question-answer records in data/raw/qa.jsonl.

Run:    dvc repro download_data     (or: python -m stages.download_data)
Reads:  params seed, data
Writes: data/raw/qa.jsonl, one {"id", "question", "answer"} record per line
        metrics/download_data.json (source, revision, counts of records read and skipped)

`data.source` picks the source:
  builtin  the built-in synthetic generator (stages/medqa_synth.py), data.builtin_records pairs
  local    a UTF-8 JSONL file of {"question": ..., "answer": ...} records (data.local_path)
Hub datasets arrive with the data issue; data.intended_source names the study's dataset.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from pathlib import Path

from stages.atomic import write_json, write_jsonl
from stages.params import PipelineError, load_params
from stages.runinfo import cli

log = logging.getLogger(__name__)

OUT = Path("data/raw/qa.jsonl")
REPORT = Path("metrics/download_data.json")


def main() -> None:
    p = load_params()
    if p["data"]["source"] == "builtin":
        from stages.medqa_synth import generate_pairs

        try:
            records = generate_pairs(p["data"]["builtin_records"], seed=p["seed"])
        except ValueError as e:
            raise PipelineError(f"data.builtin_records: {e}; lower it") from e
        skipped: Counter = Counter()
        revision = {"generator": "stages/medqa_synth.py", "seed": p["seed"]}
    else:
        path = Path(p["data"]["local_path"])
        records, skipped = parse_jsonl(path)
        revision = {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    if not records:
        raise PipelineError(f"data.source {p['data']['source']!r} gave no usable records (skipped: {dict(skipped)})")
    write_jsonl(OUT, records)
    report = {"source": p["data"]["source"], "revision": revision, "records": len(records),
              "skipped": dict(sorted(skipped.items())), "skipped_total": sum(skipped.values())}
    write_json(REPORT, report)
    log.info("wrote %d records to %s; skipped %s", len(records), OUT, dict(skipped) or "none")


def parse_jsonl(path: Path) -> tuple[list[dict], Counter]:
    """Records with non-empty string `question` and `answer`; every other line is counted by reason."""
    try:
        # utf-8-sig drops a byte-order mark; split on \n only, since str.splitlines() also splits
        # on U+2028 and other separators that JSON strings may carry raw.
        lines = path.read_text(encoding="utf-8-sig").split("\n")
    except UnicodeDecodeError as e:
        raise PipelineError(f"{path} is not UTF-8 ({e.reason} at byte {e.start}); re-encode it, e.g. iconv -f GB18030 -t UTF-8") from e
    records, skipped = [], Counter()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            skipped["not_json"] += 1
            continue
        q, a = (obj.get("question"), obj.get("answer")) if isinstance(obj, dict) else (None, None)
        if not (isinstance(q, str) and q.strip() and isinstance(a, str) and a.strip()):
            skipped["missing_question_or_answer"] += 1
            continue
        records.append({"id": str(obj.get("id", f"line-{n}")), "question": q.strip(), "answer": a.strip()})
    return records, skipped


if __name__ == "__main__":
    cli(main)
