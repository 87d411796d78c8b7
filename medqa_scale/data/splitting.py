"""Fixed test and dev sets shared by every scale, nested train subsets, and no leaks between them.

The records are shuffled once with the seed; test and dev come first, and each train subset is
a prefix of the rest, so 1k is inside 2k and 2k inside 5k. Records that carry a `group` (the
built-in generator's phrasings of one answer) are held out group by group, so no test answer
reappears in training. Then every train candidate whose question or answer repeats, or nearly
repeats, a dev or test item's is dropped (medqa_scale/data/dedup.py).
"""

from __future__ import annotations

import random

from medqa_scale.data.dedup import fingerprint, leaks, left_out


def held_out_first(records: list[dict], n_held_out: int, seed: int) -> tuple[list[dict], list[dict], list[tuple[dict, dict]]]:
    """(held-out records, the rest, records dropped because their group straddled the boundary,
    each with a held-out member of its group).

    Without groups: one shuffle, the first n_held_out records. With groups: whole groups in a
    shuffled order until n_held_out records are reached.
    """
    order = list(records)
    random.Random(seed).shuffle(order)
    if not any("group" in r for r in order):
        return order[:n_held_out], order[n_held_out:], []
    groups: dict[str, list[dict]] = {}
    for r in order:
        groups.setdefault(r.get("group", r["id"]), []).append(r)
    held_out, rest, straddling = [], [], []
    for members in groups.values():
        if len(held_out) < n_held_out:
            room = n_held_out - len(held_out)
            held_out += members[:room]
            straddling += [(r, members[0]) for r in members[room:]]  # the rest of a held-out group would leak its answer
        else:
            rest += members
    return held_out, rest, straddling


def split_records(records: list[dict], test_size: int, dev_size: int, seed: int, threshold: float,
                  num_perm: int) -> tuple[list[dict], list[dict], list[dict], list[dict]]:
    """(test, dev, train pool, the report entries of pool candidates dropped as leaks, each with
    the held-out record it repeats)."""
    held_out, rest, straddling = held_out_first(records, test_size + dev_size, seed)
    test, dev = held_out[:test_size], held_out[test_size:]
    found = leaks(rest, held_out, threshold, num_perm, seed)
    pool = [r for r, leak in zip(rest, found) if leak is None]
    dropped = [left_out(r, "group_held_out", match) for r, match in straddling]
    dropped += [left_out(r, *leak) for r, leak in zip(rest, found) if leak is not None]
    return test, dev, pool, dropped


def nested_subsets(pool: list, sizes: dict[str, int]) -> dict[str, list]:
    """Prefixes of one shuffled pool: every smaller subset lies inside every larger one."""
    return {label: pool[:n] for label, n in sizes.items()}


def verbatim_overlap(train: list[dict], held_out: list[dict]) -> dict[str, int]:
    """How many train records repeat a held-out question or answer word for word (after
    normalising whitespace and punctuation): the split report's check that it is zero."""
    questions = {fingerprint(r["question"]) for r in held_out}
    answers = {fingerprint(r["answer"]) for r in held_out}
    return {"questions": sum(fingerprint(r["question"]) in questions for r in train),
            "answers": sum(fingerprint(r["answer"]) in answers for r in train)}
