"""Tests of medqa_scale.splitting: the question key, the seeded test/dev/pool split that drops
leaked questions, and the nested train subsets. Run: python -m pytest -q tests/test_splitting.py
"""

from __future__ import annotations

import copy

from medqa_scale.params import scale_size
from medqa_scale.splitting import nested_subsets, question_key, split_records


def _records(n: int) -> list[dict]:
    return [{"id": f"r{i:03d}", "question": f"问题{i}怎么办？", "answer": f"答{i}"} for i in range(n)]


def _ids(rs) -> list[str]:
    return [r["id"] for r in rs]


def test_question_key_ignores_whitespace_only():
    assert question_key("  头痛\t怎么办 ？\n") == "头痛怎么办？"
    assert question_key("头 痛\u3000怎么办？") == "头痛怎么办？"  # ideographic space is whitespace too
    assert question_key("头痛怎么办？") != question_key("头痛怎么办")  # punctuation is not whitespace


def test_split_records_is_deterministic_and_sized():
    records = _records(100)
    original = copy.deepcopy(records)
    a = split_records(records, 10, 15, seed=42)
    b = split_records(records, 10, 15, seed=42)
    assert [_ids(x) for x in a[:3]] == [_ids(x) for x in b[:3]] and a[3] == b[3] == 0
    assert records == original  # input is not shuffled in place
    test, dev, pool, leaked = a
    assert (len(test), len(dev), len(pool), leaked) == (10, 15, 75, 0)
    assert _ids(test) != _ids(records[:10])  # it did shuffle
    other = split_records(records, 10, 15, seed=43)
    assert _ids(other[0]) != _ids(test)  # and the seed matters


def test_split_records_sets_are_disjoint_and_cover_everything():
    records = _records(100)
    test, dev, pool, leaked = split_records(records, 10, 15, seed=1)
    t, d, p = set(_ids(test)), set(_ids(dev)), set(_ids(pool))
    assert not (t & d) and not (t & p) and not (d & p)
    assert t | d | p == set(_ids(records))


def test_split_records_drops_train_records_that_repeat_a_held_out_question():
    # Every question appears twice: once plain, once with extra whitespace.
    base = _records(60)
    twins = [{"id": f"t{i:03d}", "question": " " + r["question"].replace("怎么办", " 怎么办\t") + "\n",
              "answer": "别的答案"} for i, r in enumerate(base)]
    records = base + twins
    test, dev, pool, leaked = split_records(records, 8, 7, seed=3)

    held = {question_key(r["question"]) for r in test + dev}
    rest = [r for r in records if r["id"] not in set(_ids(test + dev))]
    expected_dropped = [r for r in rest if question_key(r["question"]) in held]

    assert len(test) == 8 and len(dev) == 7
    assert not any(question_key(r["question"]) in held for r in pool)
    assert set(_ids(pool)) == set(_ids(rest)) - set(_ids(expected_dropped))
    assert leaked == len(expected_dropped) == len(rest) - len(pool)
    # Each held-out question whose twin is not itself held out leaks exactly one record.
    assert 8 <= leaked <= 15
    assert len(test) + len(dev) + len(pool) + leaked == len(records)


def test_split_records_all_same_question_leaves_an_empty_pool():
    variants = ["头痛怎么办？", " 头痛怎么办？", "头痛 怎么办？", "头痛怎么办？\n", "\t头 痛 怎 么 办 ？"]
    records = [{"id": str(i), "question": variants[i % len(variants)], "answer": "a"} for i in range(20)]
    test, dev, pool, leaked = split_records(records, 2, 3, seed=0)
    assert (len(test), len(dev), pool, leaked) == (2, 3, [], 15)


def test_nested_subsets_are_prefixes_of_one_pool():
    pool = [{"id": i} for i in range(6000)]
    sizes = {label: scale_size(label) for label in ["1k", "2k", "5k"]}
    subsets = nested_subsets(pool, sizes)
    assert list(subsets) == ["1k", "2k", "5k"]
    assert [len(s) for s in subsets.values()] == [1000, 2000, 5000]
    assert subsets["1k"] == subsets["2k"][:1000] == pool[:1000]
    assert subsets["2k"] == subsets["5k"][:2000]
    assert subsets["5k"] == pool[:5000]
