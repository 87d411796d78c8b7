"""Exact and near-duplicate text, and leaks of held-out items into training data.

Exact duplicates share a normalised fingerprint (NFKC, lower case, no whitespace or
punctuation). Near duplicates are found with MinHash over character 3-grams and locality-
sensitive hashing (datasketch): two texts whose estimated Jaccard similarity reaches the
threshold count as one.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence

SHINGLE = 3


def fingerprint(text: str) -> str:
    """The text with everything that does not change its meaning taken out."""
    return "".join(c for c in unicodedata.normalize("NFKC", text).lower() if c.isalnum())


def shingles(text: str) -> set[bytes]:
    key = fingerprint(text)
    if len(key) <= SHINGLE:
        return {key.encode("utf-8")}
    return {key[i:i + SHINGLE].encode("utf-8") for i in range(len(key) - SHINGLE + 1)}


def minhashes(texts: Sequence[str], num_perm: int, seed: int) -> list:
    from datasketch import MinHash

    return MinHash.bulk([shingles(t) for t in texts], num_perm=num_perm, seed=seed)


def _lsh(threshold: float, num_perm: int):
    from datasketch import MinHashLSH

    return MinHashLSH(threshold=threshold, num_perm=num_perm)


def deduplicate(records: list[dict], text: Callable[[dict], str], threshold: float, num_perm: int,
                seed: int) -> tuple[list[dict], dict[str, int]]:
    """The records with every exact or near duplicate of an earlier one removed, and how many
    of each kind went."""
    kept, seen, counts = [], set(), {"exact_duplicate": 0, "near_duplicate": 0}
    unique = []
    for r in records:
        key = fingerprint(text(r))
        if key in seen:
            counts["exact_duplicate"] += 1
        else:
            seen.add(key)
            unique.append(r)
    lsh = _lsh(threshold, num_perm)
    for i, (r, mh) in enumerate(zip(unique, minhashes([text(r) for r in unique], num_perm, seed))):
        if lsh.query(mh):
            counts["near_duplicate"] += 1
            continue
        lsh.insert(str(i), mh)
        kept.append(r)
    return kept, counts


def leaks(candidates: list[dict], held_out: list[dict], threshold: float, num_perm: int,
          seed: int) -> list[str | None]:
    """For each candidate, why it leaks a held-out item, or None: its question repeats or nearly
    repeats a held-out question, or its answer a held-out answer."""
    reasons: list[str | None] = [None] * len(candidates)
    for field in ("question", "answer"):
        exact = {fingerprint(r[field]) for r in held_out}
        lsh = _lsh(threshold, num_perm)
        for i, mh in enumerate(minhashes([r[field] for r in held_out], num_perm, seed)):
            lsh.insert(str(i), mh)
        todo = [i for i, r in enumerate(candidates) if reasons[i] is None]
        for i in todo:
            if fingerprint(candidates[i][field]) in exact:
                reasons[i] = f"{field}_repeats_held_out"
        todo = [i for i in todo if reasons[i] is None]
        for i, mh in zip(todo, minhashes([candidates[i][field] for i in todo], num_perm, seed)):
            if lsh.query(mh):
                reasons[i] = f"{field}_near_held_out"
    return reasons
