"""medqa_scale.preprocessing: chats with token counts; skipped records counted by reason.

Run: python -m pytest tests/test_preprocessing.py -q
"""

from __future__ import annotations

import pytest

from medqa_scale.chat import IGNORE_INDEX, encode_example, to_messages
from medqa_scale.preprocessing import preprocess_records

SYSTEM = "你是一名医学助手。"


@pytest.fixture(scope="module")
def tokenizer(tiny_base):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_base)


def record(i, question, answer):
    return {"id": str(i), "question": question, "answer": answer}


def test_kept_records_carry_their_chat_and_token_counts(tokenizer):
    kept, skipped = preprocess_records([record(1, " 头痛  怎么办？", "多休息。\n")], tokenizer, SYSTEM, 512, 512)
    assert not skipped
    [r] = kept
    assert r["question"] == "头痛 怎么办？" and r["answer"] == "多休息。"  # whitespace runs collapsed
    assert r["messages"] == to_messages("头痛 怎么办？", "多休息。", SYSTEM)
    example = encode_example(tokenizer, r["messages"])
    assert r["n_prompt_tokens"] + r["n_answer_tokens"] == len(example["input_ids"])
    assert r["n_answer_tokens"] == sum(1 for x in example["labels"] if x != IGNORE_INDEX)


def test_every_skipped_record_is_counted_by_reason(tokenizer):
    long_text = "发热" * 300
    records = [record(1, "头痛怎么办？", "多休息。"), record(2, "头痛怎么办？", "多休息。"),  # duplicate
               record(3, "  ", "多休息。"), record(4, long_text, "多休息。"), record(5, "咳嗽怎么办？", long_text),
               record(6, "腹泻怎么办？", "补液。")]
    kept, skipped = preprocess_records(records, tokenizer, SYSTEM, 64, 64)
    assert [r["id"] for r in kept] == ["1", "6"]
    assert skipped == {"duplicate": 1, "empty": 1, "source_too_long": 1, "target_too_long": 1}
    assert len(kept) + sum(skipped.values()) == len(records)
