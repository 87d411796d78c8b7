"""Raw question-answer records from files. Every line that is not a usable record is counted by
reason, never dropped silently."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from medqa_scale.cli import PipelineError


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
