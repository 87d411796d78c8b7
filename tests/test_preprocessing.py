"""medqa_scale.data.preprocessing: cleaned chats with token counts; every record left out counted by reason.

Run: python -m pytest tests/test_preprocessing.py -q
"""

from __future__ import annotations

import copy

import pytest

from medqa_scale.data.dedup import reason_counts
from medqa_scale.model.chat_format import IGNORE_INDEX, encode_example, to_messages
from medqa_scale.data.preprocessing import clean_records, preprocess_records

SYSTEM = "你是一名医学助手。"
P = {"system_prompt": SYSTEM, "max_source_len": 512, "max_target_len": 512, "min_question_chars": 2,
     "max_question_chars": 200, "min_answer_chars": 2, "max_answer_chars": 400, "history": "keep",
     "mask_pii": False, "near_duplicate_threshold": 0.9, "minhash_perm": 64}


@pytest.fixture(scope="module")
def tokenizer(tiny_base):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_base)


def record(i, question, answer, history=()):
    return {"id": str(i), "source": "test", "question": question, "answer": answer, "history": [list(t) for t in history]}


def params(**changes) -> dict:
    return {**copy.deepcopy(P), **changes}


def test_kept_records_carry_their_chat_and_token_counts(tokenizer):
    raw = record(1, "\u3000头痛  怎么办？<br>", "多休息。\n", history=[("你好", "请讲。")])
    kept, dropped, masked, changed = preprocess_records([raw], tokenizer, P, seed=0)
    assert not dropped and not masked and not changed
    [r] = kept
    assert r["question"] == "头痛 怎么办？" and r["answer"] == "多休息。"  # cleaned
    assert r["messages"] == to_messages("头痛 怎么办？", "多休息。", SYSTEM, history=[["你好", "请讲。"]])
    example = encode_example(tokenizer, r["messages"])
    assert r["n_prompt_tokens"] + r["n_answer_tokens"] == len(example["input_ids"])
    assert r["n_answer_tokens"] == sum(1 for x in example["labels"] if x != IGNORE_INDEX)
    assert r["source"] == "test"


def test_every_record_left_out_is_counted_by_reason(tokenizer):
    long_text = "发热" * 300
    answer = "多休息，多喝温水，注意保暖，必要时就医。"
    records = [record(1, "头痛怎么办？", answer), record(2, "头痛怎么办？", answer),          # exact duplicate
               record(3, "头痛怎么办", answer + " "),                                         # still exact after cleaning
               record(4, "  ", answer), record(5, "痛", answer),                              # empty, too short
               record(6, long_text, answer), record(7, "咳嗽怎么办？", long_text),              # too long (chars)
               record(8, "腹泻怎么办？", "补液。"), record(9, "胃痛怎么办？" * 20, "少吃辛辣。")]    # tokens: source too long
    for i, r in enumerate(records):
        r["origin"] = {"file": "qa.jsonl", "location": f"line {i + 1}"}
    kept, dropped, *_ = preprocess_records(records, tokenizer, params(max_source_len=64), seed=0)
    assert [r["id"] for r in kept] == ["1", "8"]
    assert kept[0]["origin"] == {"file": "qa.jsonl", "location": "line 1"}
    assert reason_counts(dropped) == {"exact_duplicate": 2, "empty": 1, "question_too_short": 1, "question_too_long": 1,
                                      "answer_too_long": 1, "source_too_long": 1}
    assert len(kept) + len(dropped) == len(records)
    # Every record left out is listed with its line; a duplicate also with the line it repeats.
    assert sorted((d["location"], d["reason"]) for d in dropped) == [
        ("line 2", "exact_duplicate"), ("line 3", "exact_duplicate"), ("line 4", "empty"), ("line 5", "question_too_short"),
        ("line 6", "question_too_long"), ("line 7", "answer_too_long"), ("line 9", "source_too_long")]
    assert {d["repeats"]["location"] for d in dropped if "repeats" in d} == {"line 1"}


def test_near_duplicates_across_sources_are_removed(tokenizer):
    answer = "高血压患者应当低盐饮食，控制体重，规律测量血压，按时服用降压药物，不能自行停药，定期复查。"
    records = [record(1, "高血压平时要注意什么？", answer),
               {**record(2, "高血压平时要注意什么？", answer.replace("定期复查", "定期去复查")), "source": "other"}]
    kept, dropped, *_ = preprocess_records(records, tokenizer, params(near_duplicate_threshold=0.8), seed=0)
    assert [r["id"] for r in kept] == ["1"]
    assert [(d["reason"], d["id"], d["source"], d["repeats"]["id"]) for d in dropped] == [("near_duplicate", "2", "other", "1")]


def test_history_can_be_dropped_and_personal_data_masked():
    raw = [record(1, "我电话13812345678，头痛怎么办？", "请发邮件到 a@b.com 预约。", history=[("你好", "请讲。")])]
    [r], dropped, masked, _ = clean_records(raw, params(history="drop", mask_pii=True))
    assert r["history"] == [] and not dropped
    assert r["question"] == "我电话[手机号]，头痛怎么办？" and r["answer"] == "请发邮件到 [邮箱] 预约。"
    assert masked == {"mobile": 1, "email": 1}


def test_control_characters_are_removed_and_counted():
    raw = [record(1, "头\x00痛\x1b怎么办？", "多\x7f休息。", history=[("你\x00好", "请讲。")]), record(2, "发热？", "多喝水。")]
    kept, dropped, _, changed = clean_records(raw, P)
    assert [(r["question"], r["answer"], r["history"]) for r in kept] == [
        ("头痛怎么办？", "多休息。", [["你好", "请讲。"]]), ("发热？", "多喝水。", [])]
    assert changed == {"control_characters": 4, "records_with_control_characters": 1}


def test_a_long_dialogue_keeps_its_latest_turns_that_fit(tokenizer):
    # 30 dialogues of 0-9 earlier turns, most of them far over a 96-token prompt limit, as real
    # multi-turn consultation files are against the study's 512: each keeps its newest turns.
    turn = ("我最近一直头痛，晚上睡不好，白天也没有精神，需要做什么检查吗？", "建议先测量血压，并到神经内科就诊做相关检查。")
    import random

    pool = "头痛发热咳嗽腹泻胃痛失眠乏力心悸胸闷气短恶心呕吐皮疹关节肿痛口干尿频"

    def text(i, n):  # distinct per record, so that no dialogue is a near duplicate of another
        return "".join(random.Random(i).choices(pool, k=n))

    records = [record(i, f"{text(i, 12)}，要吃药吗？", f"{text(1000 + i, 16)}，加重请及时就医。",
                      history=[(f"{turn[0]}（{i}-{k}）", turn[1]) for k in range(i % 10)]) for i in range(30)]
    limit = 96
    kept, dropped, _, changed = preprocess_records(records, tokenizer, params(max_source_len=limit), seed=0)
    assert len(kept) >= 0.9 * len(records) and not dropped
    assert all(r["n_prompt_tokens"] <= limit for r in kept)
    by_id = {r["id"]: r for r in kept}
    truncated = 0
    for r in records:
        messages = by_id[r["id"]]["messages"]
        assert messages[-2:] == [{"role": "user", "content": r["question"]}, {"role": "assistant", "content": r["answer"]}]
        earlier = [(messages[k]["content"], messages[k + 1]["content"]) for k in range(1, len(messages) - 2, 2)]
        history = [tuple(t) for t in r["history"]]
        assert earlier == history[len(history) - len(earlier):]  # the newest whole turns, in order
        if len(earlier) < len(history):
            truncated += 1
            # one more (older) turn would not have fitted
            more = to_messages(r["question"], r["answer"], SYSTEM, history=history[len(history) - len(earlier) - 1:])
            example = encode_example(tokenizer, more)
            assert len(example["input_ids"]) - sum(1 for x in example["labels"] if x != IGNORE_INDEX) > limit
    assert truncated >= 10 and changed["history_truncated"] == truncated  # without truncation each would be dropped
    assert changed["history_turns_cut"] == sum(len(r["history"]) for r in records) - sum(
        (len(by_id[r["id"]]["messages"]) - 3) // 2 for r in records)


def test_a_dialogue_whose_last_question_alone_is_too_long_is_left_out(tokenizer):
    records = [record(1, "头痛" * 80 + "怎么办？", "多休息。", history=[("你好", "请讲。")])]
    kept, dropped, _, changed = preprocess_records(records, tokenizer, params(max_source_len=64), seed=0)
    assert not kept and [d["reason"] for d in dropped] == ["source_too_long"] and not changed
