"""Tests of medqa_scale.builtin.corpus, the embedded default's synthetic QA generator: determinism
per seed, the records' shape, and the size of its space of distinct pairs.
Run: python -m pytest -q tests/test_builtin_corpus.py
"""

from __future__ import annotations

import pytest

from medqa_scale.builtin import corpus
from medqa_scale.builtin.corpus import SYNTHETIC_MARK, generate_pairs, space_size, tokenizer_text


def test_generate_pairs_is_deterministic_per_seed():
    a, b = generate_pairs(300, seed=5), generate_pairs(300, seed=5)
    assert a == b
    assert a != generate_pairs(300, seed=6)


def test_generate_pairs_records():
    records = generate_pairs(2000, seed=11)
    assert len(records) == 2000
    assert [r["id"] for r in records[:2]] == ["synth-000000", "synth-000001"]
    assert len({r["id"] for r in records}) == 2000
    assert len({r["question"] for r in records}) == 2000
    assert all(r["answer"].endswith(SYNTHETIC_MARK) for r in records)
    assert all(set(r) == {"id", "question", "answer", "intent", "group"} for r in records)
    assert {r["intent"] for r in records} == set(corpus.INTENTS)


def test_space_size_and_every_index_gives_a_distinct_question():
    m = corpus
    n = space_size()
    assert n >= 120000
    assert n == len(m.CONDITIONS) * len(m.PEOPLE) * len(m.DURATIONS) * 6 * (len(m.SYMPTOM_PAIRS) + len(m.INTENTS) - 1)
    assert n == 195840
    questions = {m._pair_at(i)[1] for i in range(n)}
    assert len(questions) == n  # distinct questions, not just distinct (question, answer) pairs


def test_generate_pairs_rejects_more_than_the_space():
    with pytest.raises(ValueError, match=str(space_size())):
        generate_pairs(space_size() + 1, seed=0)


def test_a_group_is_exactly_the_records_that_share_an_answer():
    records = generate_pairs(20000, seed=3)
    by_group, by_answer = {}, {}
    for r in records:
        by_group.setdefault(r["group"], set()).add(r["answer"])
        by_answer.setdefault(r["answer"], set()).add(r["group"])
    assert all(len(answers) == 1 for answers in by_group.values())
    assert all(len(groups) == 1 for groups in by_answer.values())
    assert len(by_group) < len(records)  # phrasings do share answers: that is why groups exist


def test_the_tokenizer_text_holds_no_whole_question_or_answer():
    text = "\n".join(tokenizer_text())
    records = generate_pairs(3000, seed=42)
    assert not any(r["question"] in text or r["answer"] in text for r in records)
    assert "呼吸内科" in text and "（合成示例数据" in text  # the building blocks are there
