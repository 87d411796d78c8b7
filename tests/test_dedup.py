"""medqa_scale.data.dedup: exact and near duplicates, and leaks of held-out items into training data.

Run: python -m pytest tests/test_dedup.py -q
"""

from __future__ import annotations

from medqa_scale.data.dedup import deduplicate, fingerprint, leaks, left_out, reason_counts, shingles

BASE_ANSWER = "高血压患者应当低盐饮食，控制体重，规律测量血压，按时服用降压药物，不能自行停药，定期复查。"


def rec(q: str, a: str) -> dict:
    return {"question": q, "answer": a}


def test_fingerprint_ignores_case_width_whitespace_and_punctuation():
    assert fingerprint("ＣＴ 检查， 怎么做？") == fingerprint("ct检查怎么做") == "ct检查怎么做"
    assert fingerprint("头痛") != fingerprint("头疼")


def test_shingles_are_character_3grams_of_the_fingerprint():
    assert shingles("头痛 怎么办") == {s.encode() for s in ("头痛怎", "痛怎么", "怎么办")}
    assert shingles("头痛") == {"头痛".encode()}


def test_deduplicate_counts_exact_and_near_duplicates_and_keeps_the_first():
    records = [rec("高血压要注意什么？", BASE_ANSWER),
               rec("高血压要注意什么", BASE_ANSWER + " "),                       # exact after normalising
               rec("高血压要注意什么？", BASE_ANSWER.replace("定期复查", "定期去复查")),  # near
               rec("感冒了怎么办？", "多休息，多喝温水，注意保暖，症状加重请及时就医。")]
    kept, dropped = deduplicate(records, lambda r: r["question"] + "\n" + r["answer"], threshold=0.7, num_perm=128, seed=1)
    assert kept == [records[0], records[3]]
    assert dropped == [(records[1], "exact_duplicate", records[0]), (records[2], "near_duplicate", records[0])]


def test_a_left_out_entry_names_the_record_its_origin_and_what_it_repeats():
    r = {"id": "a-7", "source": "web", "origin": {"file": "qa.csv", "location": "line 9"}, "question": "问" * 100, "answer": "答"}
    kept = {"id": "b-1", "source": "hf", "origin": {"file": "x.jsonl", "location": "line 1"}}
    assert left_out(r, "near_duplicate", kept) == {
        "reason": "near_duplicate", "id": "a-7", "source": "web", "file": "qa.csv", "location": "line 9",
        "excerpt": "问" * 60, "repeats": {"id": "b-1", "source": "hf", "file": "x.jsonl", "location": "line 1"}}
    assert "repeats" not in left_out(r, "empty")
    assert reason_counts([left_out(r, "empty"), left_out(r, "b"), left_out(r, "empty")]) == {"b": 1, "empty": 2}


def test_leaks_compare_questions_and_answers_with_the_held_out_items():
    held_out = [rec("高血压要注意什么？", BASE_ANSWER), rec("孩子发烧39度怎么办？", "物理降温，多喝水，及时就医。")]
    candidates = [
        rec("高血压要注意什么", "另一个完全不同的回答，讲的是别的事情，和原来的没有关系。"),  # question repeats
        rec("血压高怎么调理？", BASE_ANSWER),                                             # answer repeats
        rec("血压高怎么办？", BASE_ANSWER.replace("定期复查", "定期去医院复查")),              # answer nearly repeats
        rec("胃痛怎么办？", "规律饮食，少吃辛辣，必要时做胃镜检查。"),                            # clean
    ]
    assert leaks(candidates, held_out, threshold=0.7, num_perm=128, seed=1) == [
        ("question_repeats_held_out", held_out[0]), ("answer_repeats_held_out", held_out[0]),
        ("answer_near_held_out", held_out[0]), None]


def test_signatures_are_datasketchs_affine32_minhash_with_our_3gram_hash():
    import numpy as np
    from datasketch import MinHash

    from medqa_scale.data.dedup import packed_shingles, shingle_hash, signatures

    texts = ["高血压患者应当低盐饮食，控制体重", "头痛", "ＣＴ", "", "头痛怎么办？头痛怎么办？", BASE_ANSWER]
    got = signatures(texts, num_perm=32, seed=7)
    packed, owner = packed_shingles(texts)
    for i, text in enumerate(texts):
        expected = MinHash(num_perm=32, seed=7, scheme="affine32", hashfunc=int)
        expected.update_batch(shingle_hash(packed[owner == i]).tolist())
        assert np.array_equal(got[i], expected.hashvalues), text
    # A text's 3-grams are those of its fingerprint, never spanning into the next text.
    assert (owner == 0).sum() == len(fingerprint(texts[0])) - 2 and (owner == 1).sum() == 1
