"""Tests of medqa_scale.readers.parse_jsonl: usable records kept, every other line counted by
reason, a non-UTF-8 file refused with the fix, and separators that must not split a record.
Run: python -m pytest -q tests/test_readers.py
"""

from __future__ import annotations

import json

import pytest

from medqa_scale.cli import PipelineError
from medqa_scale.readers import parse_jsonl


def test_parse_jsonl_counts_skipped_lines_by_reason(tmp_path):
    lines = [
        json.dumps({"id": 7, "question": " 头痛怎么办？ ", "answer": "多休息。"}, ensure_ascii=False),
        "",
        "{not json",
        json.dumps({"question": "只有问题"}, ensure_ascii=False),
        json.dumps({"question": "  ", "answer": "空问题"}, ensure_ascii=False),
        json.dumps({"question": 1, "answer": "数字问题"}, ensure_ascii=False),
        "[1, 2]",
        "plain text",
        json.dumps({"question": "发热怎么办？", "answer": "退热。"}, ensure_ascii=False),
    ]
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    records, skipped = parse_jsonl(path)
    assert records == [
        {"id": "7", "question": "头痛怎么办？", "answer": "多休息。"},
        {"id": "line-9", "question": "发热怎么办？", "answer": "退热。"},
    ]
    assert dict(skipped) == {"not_json": 2, "missing_question_or_answer": 4}


def test_parse_jsonl_gb18030_file_raises_pipeline_error(tmp_path):
    path = tmp_path / "gbk.jsonl"
    line = json.dumps({"question": "头痛怎么办？", "answer": "多休息。"}, ensure_ascii=False) + "\n"
    path.write_bytes(line.encode("gb18030"))
    with pytest.raises(PipelineError) as info:
        parse_jsonl(path)
    msg = str(info.value)
    assert str(path) in msg
    assert "not UTF-8" in msg
    assert "re-encode" in msg
    # The message gives the command that fixes it, not just the diagnosis.
    assert "iconv" in msg


@pytest.mark.parametrize("question, encoding", [
    ("头痛\u2028怎么办", "utf-8"),  # str.splitlines() would split this record in two
    ("头痛", "utf-8-sig"),  # a byte-order mark must not spoil the first record
])
def test_parse_jsonl_keeps_records_splitlines_or_a_bom_would_break(tmp_path, question, encoding):
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"question": question, "answer": "休息"}, ensure_ascii=False) + "\n", encoding=encoding)
    records, skipped = parse_jsonl(path)
    assert len(records) == 1 and not skipped
    assert records[0]["question"] == question  # kept whole, with no BOM in front
