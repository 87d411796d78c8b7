"""Tests of medqa_scale.data.splitting: the seeded test/dev/pool split that holds out whole groups
and drops leaked questions and answers, and the nested train subsets. Run: python -m pytest -q tests/test_splitting.py
"""

from __future__ import annotations

import copy

from medqa_scale.data.dedup import fingerprint, reason_counts
from medqa_scale.core.params import scale_size
from medqa_scale.data.splitting import held_out_first, nested_subsets, split_records, verbatim_overlap


def _records(n: int) -> list[dict]:
    return [{"id": f"r{i:03d}", "question": f"问题{i}怎么办？", "answer": f"这是第{i}个问题的回答。"} for i in range(n)]


def _ids(rs) -> list[str]:
    return [r["id"] for r in rs]


def split(records, test=10, dev=15, seed=42, threshold=0.9):
    return split_records(records, test, dev, seed=seed, threshold=threshold, num_perm=64)


def test_split_records_is_deterministic_and_sized():
    records = _records(100)
    original = copy.deepcopy(records)
    a, b = split(records), split(records)
    assert [_ids(x) for x in a[:3]] == [_ids(x) for x in b[:3]] and a[3] == b[3] == []
    assert records == original  # input is not shuffled in place
    test, dev, pool, dropped = a
    assert (len(test), len(dev), len(pool)) == (10, 15, 75)
    assert _ids(test) != _ids(records[:10])  # it did shuffle
    assert _ids(split(records, seed=43)[0]) != _ids(test)  # and the seed matters


def test_split_records_sets_are_disjoint_and_cover_everything():
    records = _records(100)
    test, dev, pool, _ = split(records, seed=1)
    t, d, p = set(_ids(test)), set(_ids(dev)), set(_ids(pool))
    assert not (t & d) and not (t & p) and not (d & p)
    assert t | d | p == set(_ids(records))


def test_split_records_drops_train_records_that_repeat_a_held_out_question_or_answer():
    base = _records(60)
    # Each record has a twin: the same question with other whitespace, or the same answer.
    twins = [{"id": f"t{i:03d}", "question": " " + r["question"].replace("怎么办", " 怎么办\t"), "answer": f"另一个回答{i}"}
             if i % 2 else {"id": f"t{i:03d}", "question": f"完全不同的提问{i}号", "answer": r["answer"]}
             for i, r in enumerate(base)]
    records = base + twins
    test, dev, pool, dropped = split(records, 8, 7, seed=3)
    held = test + dev
    assert len(test) == 8 and len(dev) == 7
    assert verbatim_overlap(pool, held) == {"questions": 0, "answers": 0}
    assert set(reason_counts(dropped)) <= {"question_repeats_held_out", "answer_repeats_held_out"} and dropped
    assert len(test) + len(dev) + len(pool) + len(dropped) == len(records)
    # Each entry names the dropped record and the held-out record it repeats.
    by_id = {r["id"]: r for r in records}
    held_ids = set(_ids(held))
    for entry in dropped:
        twin, match = by_id[entry["id"]], by_id[entry["repeats"]["id"]]
        assert entry["id"][1:] == match["id"][1:] and match["id"] in held_ids  # a record and its twin
        field = entry["reason"].split("_")[0]
        assert fingerprint(twin[field]) == fingerprint(match[field])


def test_records_with_groups_are_held_out_whole_groups():
    # Five phrasings per answer, as the built-in generator makes them.
    records = [{"id": f"{g}-{k}", "question": f"第{g}组的第{k}种问法是什么样的", "answer": f"第{g}组的回答内容各不相同{g * 7}",
                "group": f"g{g}"} for g in range(40) for k in range(5)]
    test, dev, pool, dropped = split(records, 12, 8, seed=0)
    held_groups = {r["group"] for r in test + dev}
    assert len(test) == 12 and len(dev) == 8
    assert not {r["group"] for r in pool} & held_groups
    assert set(reason_counts(dropped)) <= {"group_held_out", "question_near_held_out"}  # these questions are alike
    assert len(test) + len(dev) + len(pool) + len(dropped) == len(records)
    by_id = {r["id"]: r for r in records}
    for entry in (e for e in dropped if e["reason"] == "group_held_out"):
        assert by_id[entry["id"]]["group"] == by_id[entry["repeats"]["id"]]["group"] in held_groups


def test_held_out_first_without_groups_is_one_shuffle():
    records = _records(30)
    held, rest, straddling = held_out_first(records, 5, seed=9)
    assert len(held) == 5 and len(rest) == 25 and straddling == []
    assert sorted(_ids(held + rest)) == _ids(records)


def test_nested_subsets_are_prefixes_of_one_pool():
    pool = [{"id": i} for i in range(6000)]
    sizes = {label: scale_size(label) for label in ["1k", "2k", "5k"]}
    subsets = nested_subsets(pool, sizes)
    assert list(subsets) == ["1k", "2k", "5k"]
    assert [len(s) for s in subsets.values()] == [1000, 2000, 5000]
    assert subsets["1k"] == subsets["2k"][:1000] == pool[:1000]
    assert subsets["2k"] == subsets["5k"][:2000]
    assert subsets["5k"] == pool[:5000]
