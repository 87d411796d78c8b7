"""The embedded default's multiple-choice sets (medqa_scale.builtin.exams): drawn from the seed, one
right option among distractors of the same kind, the right letter spread over A-D, a few dev items
for shots, and a retention set about what only pre-training teaches.

Run: python -m pytest tests/test_builtin_exams.py -q
"""

from __future__ import annotations

from collections import Counter

import pytest

from medqa_scale.builtin.corpus import CONDITIONS, COUNTRIES, general_dialogues, generate_pairs, pretraining_dialogues
from medqa_scale.builtin.exams import DEV_ITEMS, domain_items, retention_items


@pytest.mark.parametrize("make, n", [(domain_items, 4 * len(CONDITIONS)), (retention_items, 2 * len(COUNTRIES))])
def test_each_item_has_one_right_option_among_distinct_ones(make, n):
    items = make(42)
    assert len(items) == n and items == make(42) and items != make(43)
    assert len({i["question"] for i in items}) == n
    for item in items:
        options = list(item["options"].values())
        assert list(item["options"]) == ["A", "B", "C", "D"] and len(set(options)) == 4
        assert len(item["answer"]) == 1 and item["answer"][0] in item["options"]
    letters = Counter(i["answer"][0] for i in items)
    assert set(letters) == {"A", "B", "C", "D"} and max(letters.values()) < 0.4 * n  # no letter wins by position
    assert [i["origin"]["file"] for i in items].count("dev") == DEV_ITEMS


def test_the_domain_set_asks_what_the_corpus_teaches():
    facts = {(c.name, c.department) for c in CONDITIONS}
    asked = [i for i in domain_items(0) if i["subject"] == "department"]
    for item in asked:
        name = item["question"].removesuffix("一般在哪个科室诊治？")
        assert (name, item["options"][item["answer"][0]]) in facts


def test_the_retention_set_asks_what_only_pre_training_teaches():
    medical = " ".join(r["question"] + r["answer"] for r in generate_pairs(3000, seed=1))
    medical += " ".join(m["content"] for d in pretraining_dialogues(500, seed=1) for m in d)
    general = " ".join(m["content"] for d in general_dialogues(500, seed=1) for m in d)
    for item in retention_items(0):
        right = item["options"][item["answer"][0]]
        country = item["question"][len("关于"): item["question"].index("的")]
        assert country not in medical and right[:-1] in general  # the statement, less its full stop
