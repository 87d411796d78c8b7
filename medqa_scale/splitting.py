"""Fixed test and dev sets shared by every scale, and nested train subsets.

The records are shuffled once with the seed; test and dev are the first records, and each train
subset is a prefix of the rest, so 1k is inside 2k and 2k inside 5k. No train record repeats a
dev or test question.
"""

from __future__ import annotations

import random


def question_key(question: str) -> str:
    return "".join(question.split())


def split_records(records: list[dict], test_size: int, dev_size: int, seed: int):
    """Shuffle once; return (test, dev, train pool, number of pool records dropped as leaks)."""
    order = list(records)
    random.Random(seed).shuffle(order)
    test, dev = order[:test_size], order[test_size:test_size + dev_size]
    held_out = {question_key(r["question"]) for r in test + dev}
    rest = order[test_size + dev_size:]
    pool = [r for r in rest if question_key(r["question"]) not in held_out]
    return test, dev, pool, len(rest) - len(pool)


def nested_subsets(pool: list, sizes: dict[str, int]) -> dict[str, list]:
    """Prefixes of one shuffled pool: every smaller subset lies inside every larger one."""
    return {label: pool[:n] for label, n in sizes.items()}
